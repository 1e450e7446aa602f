package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

var (
	_ Switch = (*vswitch.Switch)(nil)
	_ Uplink = (*uplink.Uplink)(nil)
)

type fakeSwitch struct {
	st  vswitch.Status
	fdb map[uint32][]vswitch.FDBEntry
}

func (f *fakeSwitch) Status() vswitch.Status { return f.st }

// FDBPage pages f.fdb[fence] (sorted by MAC) as the switch does.
func (f *fakeSwitch) FDBPage(fence uint32, after *vswitch.MAC, limit int) ([]vswitch.FDBEntry, bool, bool) {
	found := false
	for _, fs := range f.st.Fences {
		found = found || fs.ID == fence
	}
	if !found {
		return nil, false, false
	}
	var out []vswitch.FDBEntry
	for _, e := range f.fdb[fence] {
		if after == nil || e.MAC > after.String() {
			out = append(out, e)
		}
	}
	if len(out) > limit {
		return out[:limit], true, true
	}
	return out, false, true
}
func (f *fakeSwitch) Capture(vswitch.CaptureSelector, int) (*vswitch.Capture, error) {
	return nil, errors.New("fakeSwitch: no capture")
}

func newFake() *fakeSwitch {
	return &fakeSwitch{
		st: vswitch.Status{
			Fences: []vswitch.FenceStatus{{ID: 1, Name: "a", Ports: 1, MACs: 1}, {ID: 0x20, Name: "b"}},
			Ports:  []vswitch.PortStatus{{ID: 7, Name: "unix:/x#1", Fence: 1, MACs: 1, RxFrames: 3}},
		},
		fdb: map[uint32][]vswitch.FDBEntry{
			1: {{MAC: "00:00:5e:00:53:01", Port: 7, PortName: "unix:/x#1", Age: 1.5}},
		},
	}
}

// serveUnix starts s on a unix socket made by Listen and returns an HTTP
// client that dials it.
func serveUnix(t *testing.T, s *Server) (*http.Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "admin.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
	return c, path
}

func get(t *testing.T, c *http.Client, path string, wantCode int, v any) {
	t.Helper()
	resp, err := c.Get("http://corral" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: got status %d, want %d", path, resp.StatusCode, wantCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: got Content-Type %q, want application/json", path, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
}

func TestServerRoutes(t *testing.T) {
	fk := newFake()
	s, err := New(Config{Switch: fk, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	c, path := serveUnix(t, s)

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode: got %v, want 0600", got)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		t.Errorf("socket mode: got %v, want a socket", st.Mode())
	}

	// The fake's status in the API's types.
	wantFences := []FenceStatus{{ID: 1, Name: "a", Ports: 1, MACs: 1}, {ID: 0x20, Name: "b"}}
	wantPorts := []PortStatus{{ID: 7, Name: "unix:/x#1", Fence: 1, FenceName: "a", MACs: 1, RxFrames: 3}}
	wantFDB := []FDBEntry{{MAC: "00:00:5e:00:53:01", Port: 7, PortName: "unix:/x#1", Age: 1.5}}

	var sr StatusResponse
	get(t, c, "/v1/status", 200, &sr)
	if sr.Version != "v1.2.3" || !reflect.DeepEqual(sr.Fences, wantFences) || !reflect.DeepEqual(sr.Ports, wantPorts) || sr.Trunk != nil {
		t.Errorf("status: got %+v, want fences %+v ports %+v version v1.2.3", sr, wantFences, wantPorts)
	}
	var fences []FenceStatus
	get(t, c, "/v1/fences", 200, &fences)
	if !reflect.DeepEqual(fences, wantFences) {
		t.Errorf("fences: got %+v, want %+v", fences, wantFences)
	}
	var ports []PortStatus
	get(t, c, "/v1/ports", 200, &ports)
	if !reflect.DeepEqual(ports, wantPorts) {
		t.Errorf("ports: got %+v, want %+v", ports, wantPorts)
	}

	for _, tc := range []struct {
		name, query string
		code        int
		want        []FenceFDB
	}{
		{"all", "", 200, []FenceFDB{{1, "a", wantFDB}, {0x20, "b", []FDBEntry{}}}},
		{"by id", "?fence=1", 200, []FenceFDB{{1, "a", wantFDB}}},
		{"by hex id", "?fence=0x20", 200, []FenceFDB{{0x20, "b", []FDBEntry{}}}},
		{"by name", "?fence=b", 200, []FenceFDB{{0x20, "b", []FDBEntry{}}}},
		{"unknown", "?fence=9", 404, nil},
	} {
		t.Run("fdb "+tc.name, func(t *testing.T) {
			if tc.code != 200 {
				var e ErrorResponse
				get(t, c, "/v1/fdb"+tc.query, tc.code, &e)
				if e.Error == "" {
					t.Errorf("got empty error message")
				}
				return
			}
			var got FDBPage
			get(t, c, "/v1/fdb"+tc.query, tc.code, &got)
			if !reflect.DeepEqual(got.Fences, tc.want) || got.Next != "" {
				t.Errorf("got %+v, want %+v and no next", got, tc.want)
			}
		})
	}

	resp, err := c.Post("http://corral/v1/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/status: got %d, want 405", resp.StatusCode)
	}
}

// TestRoutes: New registers every route of the API, each with its
// methods only.
func TestRoutes(t *testing.T) {
	s, err := New(Config{Switch: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/v1/status", 200},
		{"GET", "/v1/fences", 200},
		{"GET", "/v1/ports", 200},
		{"GET", "/v1/fdb", 200},
		{"GET", "/v1/capture", 400}, // neither fence= nor port=
		{"GET", "/v1/peers", 404},   // no uplink
		{"GET", "/v1/gateways", 200},
		{"GET", "/v1/forwards", 200},
		{"POST", "/v1/forwards", 400},   // no fence
		{"DELETE", "/v1/forwards", 400}, // no fence
		{"PUT", "/v1/forwards", 405},
		{"POST", "/v1/status", 405},
		{"GET", "/v1/nothing", 404},
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s: got %d, want %d (%s)", tc.method, tc.path, rec.Code, tc.code, rec.Body)
		}
	}
}

func TestNewNoSwitch(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoSwitch) {
		t.Fatalf("got %v, want ErrNoSwitch", err)
	}
}

func TestListenStaleAndInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// A stale socket file: bound, then the fd closed without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatalf("stale socket: got %v, want it replaced", err)
	}
	if _, err := Listen(path, 0); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("live socket: got %v, want ErrSocketInUse", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Close: socket file still there (%v)", err)
	}
}

func TestServeShutdownRemovesSocket(t *testing.T) {
	s, err := New(Config{Switch: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait until it answers, then shut down.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown: got %v, want nil", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Shutdown: socket file still there (%v)", err)
	}
}
