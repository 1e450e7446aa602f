package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/pcap"
	vswitch "github.com/corralnet/corral/switch"
)

// serveClient serves s on a unix socket and returns a Client of it.
func serveClient(t *testing.T, s *Server) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-admin-") // short: a unix socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "admin.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return NewClient(path)
}

// TestClient: every method of the client decodes what its route answers.
func TestClient(t *testing.T) {
	c := serveClient(t, richServer(t))
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.Version != "v1.2.3" || !st.Started.Equal(t0) || len(st.Fences) != 2 || len(st.Ports) != 2 || st.Trunk == nil || st.Trunk.Drops["no_fence"] != 9 {
		t.Errorf("Status: %+v, %v", st, err)
	}
	fs, err := c.Fences(ctx)
	if err != nil || !reflect.DeepEqual(fs, st.Fences) {
		t.Errorf("Fences: %+v, %v; want %+v", fs, err, st.Fences)
	}
	ps, err := c.Ports(ctx)
	if err != nil || !reflect.DeepEqual(ps, st.Ports) || ps[0].PinMAC != "00:00:5e:00:53:01" {
		t.Errorf("Ports: %+v, %v", ps, err)
	}
	fdb, err := c.FDB(ctx, "blue")
	if err != nil || len(fdb) != 1 || len(fdb[0].Entries) != 2 || fdb[0].Entries[1].Host != "02:fe:0c:01:00:02" {
		t.Errorf("FDB: %+v, %v", fdb, err)
	}
	if fdb, err := c.FDB(ctx, ""); err != nil || len(fdb) != 2 {
		t.Errorf("FDB all: %+v, %v", fdb, err)
	}
	peers, err := c.Peers(ctx)
	if err != nil || peers.Transport != "udp" || len(peers.Peers) != 1 || !peers.Peers[0].LastHello.Equal(t0) || peers.Reassembly.Invalid != 12 ||
		peers.RxByFence[1] != 4 || len(peers.GatewayConflicts) != 1 || peers.GatewayConflicts[0].Fence != 1 || len(peers.GatewayYields) != 1 {
		t.Errorf("Peers: %+v, %v", peers, err)
	}
	gs, err := c.Gateways(ctx, "")
	if err != nil || len(gs) != 2 || gs[0].Leases[0].IP.String() != "10.0.2.15" || gs[0].Stats.DNSQueries != 15 || len(gs[1].Leases) != 0 || gs[1].Leases == nil {
		t.Errorf("Gateways: %+v, %v", gs, err)
	}
	added, err := c.AddForward(ctx, Forward{Fence: "red", Proto: "udp", Listen: "127.0.0.1:0", Target: "10.0.3.15:53"})
	if want := (Forward{Fence: "red", Proto: "udp", Listen: "127.0.0.1:40000", Target: "10.0.3.15:53"}); err != nil || added != want {
		t.Errorf("AddForward: %+v, %v; want %+v", added, err, want)
	}
	ffs, err := c.Forwards(ctx, "red")
	if err != nil || len(ffs) != 1 || ffs[0].Fence != 0x20 || len(ffs[0].Forwards) != 1 || ffs[0].Forwards[0].Listen != "127.0.0.1:40000" {
		t.Errorf("Forwards: %+v, %v", ffs, err)
	}
	removed, err := c.RemoveForward(ctx, Forward{Fence: "red", Proto: "udp", Listen: "127.0.0.1:40000"})
	if want := (Forward{Fence: "red", Proto: "udp", Listen: "127.0.0.1:40000"}); err != nil || removed != want {
		t.Errorf("RemoveForward: %+v, %v; want %+v", removed, err, want)
	}
	if _, err := c.RemoveForward(ctx, Forward{Fence: "red", Proto: "udp", Listen: "127.0.0.1:40000"}); err == nil || err.Error() != `admin: fence "red" has no forward on udp 127.0.0.1:40000` {
		t.Errorf("RemoveForward again: %v", err)
	}
	if _, err := c.FDB(ctx, "nope"); err == nil || err.Error() != `admin: no fence "nope"` {
		t.Errorf("FDB nope: %v", err)
	}
	if _, err := c.Capture(ctx, CaptureRequest{Fence: "nope"}); err == nil || err.Error() != `admin: not found: no fence "nope"` {
		t.Errorf("Capture nope: %v", err)
	}
}

func TestClientNoServer(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Status(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "no corral running at unix://") {
		t.Errorf("got %v, want no corral running", err)
	}
	if _, err := c.Capture(context.Background(), CaptureRequest{Fence: "a"}); err == nil || !strings.HasPrefix(err.Error(), "no corral running at unix://") {
		t.Errorf("Capture: got %v, want no corral running", err)
	}
}

// TestClientNotTheAPI: an answer that is not the API's is an error naming
// the route and status.
func TestClientNotTheAPI(t *testing.T) {
	dir, err := os.MkdirTemp("", "corral-admin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "x.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot", http.StatusTeapot)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	_, err = NewClient(path).Ports(context.Background())
	if err == nil || err.Error() != "admin /v1/ports: 418 I'm a teapot: teapot" {
		t.Errorf("got %v", err)
	}
}

// TestClientCapture: a capture through the client, with its summary.
func TestClientCapture(t *testing.T) {
	s, ports, _, _ := captureLab(t)
	c := serveClient(t, s)
	st, err := c.Capture(context.Background(), CaptureRequest{Fence: "a", Count: 2, Snaplen: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pr, err := pcap.NewReader(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := st.Summary(); ok {
		t.Errorf("summary before the end")
	}
	ports["a1"].in <- testFrame(0xff, 0x01)
	ports["a1"].in <- testFrame(0xff, 0x01)
	for i := range 2 {
		if p, err := pr.Next(); err != nil || len(p.Data) != 30 || p.Len != 60 {
			t.Fatalf("packet %d: %d of %d bytes, %v", i, len(p.Data), p.Len, err)
		}
	}
	if _, err := pr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after count=2: %v", err)
	}
	if fr, dr, ok := st.Summary(); !ok || fr != 2 || dr != 0 {
		t.Errorf("summary: %d frames %d dropped %v, want 2 0 true", fr, dr, ok)
	}
}

func TestCaptureRequestQuery(t *testing.T) {
	for _, tc := range []struct {
		req  CaptureRequest
		want string
	}{
		{CaptureRequest{Fence: "a b"}, "fence=a+b"},
		{CaptureRequest{Port: "7", Count: 3, Seconds: 0.5, Snaplen: 96}, "count=3&port=7&seconds=0.5&snaplen=96"},
		{CaptureRequest{Fence: "1", Seconds: 1e6, Snaplen: vswitch.MaxFrameSize}, "fence=1&seconds=1000000&snaplen=65536"},
	} {
		if got := tc.req.Query(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.req, got, tc.want)
		}
	}
}
