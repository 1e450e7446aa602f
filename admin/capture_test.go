package admin

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corralnet/corral/pcap"
	"github.com/corralnet/corral/pcap/pcaptest"
	vswitch "github.com/corralnet/corral/switch"
)

var update = flag.Bool("update", false, "rewrite the golden files: testdata/ here and the shared capture files in the repository's testdata/")

var _ captureSource = (*vswitch.Capture)(nil)

// chanPort is a Port fed by a channel; what the switch writes is discarded.
type chanPort struct {
	in        chan []byte
	closeOnce sync.Once
	closed    chan struct{}
}

func newChanPort() *chanPort {
	return &chanPort{in: make(chan []byte, 16), closed: make(chan struct{})}
}

func (p *chanPort) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	select {
	case f := <-p.in:
		sizes[0] = copy(bufs[0][off:], f)
		return 1, nil
	case <-p.closed:
		return 0, io.EOF
	}
}
func (p *chanPort) Write(bufs [][]byte, off int) (int, error) { return len(bufs), nil }
func (p *chanPort) BatchSize() int                            { return 1 }
func (p *chanPort) Close() error                              { p.closeOnce.Do(func() { close(p.closed) }); return nil }

func testFrame(dst, src byte) []byte {
	f := make([]byte, 60)
	f[0], f[1], f[2], f[3], f[4], f[5] = 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	if dst != 0xff {
		copy(f[0:6], []byte{0, 0, 0x5e, 0, 0x53, dst})
	}
	copy(f[6:12], []byte{0, 0, 0x5e, 0, 0x53, src})
	f[12], f[13] = 0x88, 0xb5
	return f
}

func captureLab(t *testing.T) (*Server, map[string]*chanPort, map[string]uint64, *httptest.Server) {
	t.Helper()
	sw, err := vswitch.New(vswitch.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	for _, fc := range []vswitch.FenceConfig{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}} {
		if err := sw.AddFence(fc); err != nil {
			t.Fatal(err)
		}
	}
	ports, ids := map[string]*chanPort{}, map[string]uint64{}
	for name, fence := range map[string]uint32{"a1": 1, "a2": 1, "b1": 2} {
		p := newChanPort()
		h, err := sw.Attach(p, vswitch.PortConfig{Name: name, Fence: fence})
		if err != nil {
			t.Fatal(err)
		}
		ports[name], ids[name] = p, h.ID()
	}
	s, err := New(Config{Switch: sw})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { // first: it ends the captures ts.Close waits for
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, ports, ids, ts
}

func TestCaptureStream(t *testing.T) {
	_, ports, _, ts := captureLab(t)
	resp, err := http.Get(ts.URL + "/v1/capture?fence=a&count=3")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	pr, err := pcap.NewReader(resp.Body) // the header arrives before any frame
	if err != nil {
		t.Fatal(err)
	}
	if h := pr.Header(); h.LinkType != pcap.LinkTypeEthernet || h.Snaplen != vswitch.DefaultSnaplen || h.Nanoseconds {
		t.Fatalf("header %+v, want Ethernet, µs, snaplen %d", h, vswitch.DefaultSnaplen)
	}
	ports["b1"].in <- testFrame(0xff, 0x21) // fence b: not captured
	ports["a1"].in <- testFrame(0xff, 0x01)
	ports["b1"].in <- testFrame(0xff, 0x22)
	ports["a2"].in <- testFrame(0x01, 0x02)
	ports["a1"].in <- testFrame(0x02, 0x01)
	srcs := map[byte]int{}
	for i := 0; i < 3; i++ {
		p, err := pr.Next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Len != 60 || len(p.Data) != 60 || time.Since(p.Time) > time.Minute {
			t.Errorf("packet %d: %d of %d bytes at %v", i, len(p.Data), p.Len, p.Time)
		}
		srcs[p.Data[11]]++
	}
	if srcs[1] != 2 || srcs[2] != 1 {
		t.Fatalf("sources %v, want 0x01 twice and 0x02 once", srcs)
	}
	if _, err := pr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after count=3: %v, want EOF", err)
	}
	if got := resp.Trailer.Get(TrailerFrames); got != "3" {
		t.Errorf("trailer %s = %q, want 3", TrailerFrames, got)
	}
	if got := resp.Trailer.Get(TrailerDropped); got != "0" {
		t.Errorf("trailer %s = %q, want 0", TrailerDropped, got)
	}
}

func TestCaptureSecondsAndPort(t *testing.T) {
	_, ports, ids, ts := captureLab(t)
	start := time.Now()
	resp, err := http.Get(ts.URL + "/v1/capture?port=" + strconv.FormatUint(ids["a2"], 10) + "&seconds=1&snaplen=20")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stream bytes.Buffer
	pr, err := pcap.NewReader(io.TeeReader(resp.Body, &stream))
	if err != nil {
		t.Fatal(err)
	}
	if h := pr.Header(); h.Snaplen != 20 {
		t.Errorf("snaplen %d, want 20", h.Snaplen)
	}
	ports["a1"].in <- testFrame(0xff, 0x01) // flooded to a2: captured
	p, err := pr.Next()
	if err != nil || len(p.Data) != 20 || p.Len != 60 || p.Data[11] != 1 {
		t.Fatalf("packet: %d of %d bytes, %v", len(p.Data), p.Len, err)
	}
	if _, err := pr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after seconds=1: %v, want EOF", err)
	}
	if d := time.Since(start); d < time.Second || d > 20*time.Second {
		t.Errorf("stream lasted %v, want about 1s", d)
	}
	pcaptest.Golden(t, stream.Bytes(), "capture/port-snaplen-20.pcap", *update)
}

// TestCaptureEndsAtShutdown: an unbounded capture ends, with its
// trailers, when the server shuts down.
func TestCaptureEndsAtShutdown(t *testing.T) {
	s, ports, _, ts := captureLab(t)
	resp, err := http.Get(ts.URL + "/v1/capture?fence=b")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pr, err := pcap.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ports["b1"].in <- testFrame(0xff, 0x21)
	if _, err := pr.Next(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	if _, err := pr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Shutdown: %v, want EOF", err)
	}
	if got := resp.Trailer.Get(TrailerFrames); got != "1" {
		t.Errorf("trailer %s = %q, want 1", TrailerFrames, got)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestCaptureErrors(t *testing.T) {
	_, _, _, ts := captureLab(t)
	for _, tc := range []struct {
		query string
		code  int
	}{
		{"", http.StatusBadRequest},
		{"fence=a&port=1", http.StatusBadRequest},
		{"fence=nope", http.StatusNotFound},
		{"fence=99", http.StatusNotFound},
		{"port=999", http.StatusNotFound},
		{"fence=a&count=-1", http.StatusBadRequest},
		{"fence=a&seconds=0", http.StatusBadRequest},
		{"fence=a&snaplen=99999999", http.StatusBadRequest},
	} {
		resp, err := http.Get(ts.URL + "/v1/capture?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%q: status %d %s, want %d JSON", tc.query, resp.StatusCode, resp.Header.Get("Content-Type"), tc.code)
		}
	}
}
