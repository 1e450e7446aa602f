package attach

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

var (
	_ vswitch.Port = (*streamPort)(nil)
	_ vswitch.Port = (*packetPort)(nil)
	_ vswitch.Port = (*peerPort)(nil)
	_ Listener     = (*streamListener)(nil)
	_ Listener     = (*dgramListener)(nil)
	_ Listener     = (*stdioListener)(nil)
)

const testTimeout = 20 * time.Second

// gotPort is one port handed to onPort.
type gotPort struct {
	p    vswitch.Port
	name string
	done chan struct{}
}

// collector is an OnPort that hands ports to the test.
type collector struct {
	ch     chan gotPort
	mu     sync.Mutex
	refuse error
	calls  atomic.Int32
}

func newCollector() *collector { return &collector{ch: make(chan gotPort, 64)} }

func (c *collector) onPort(p vswitch.Port, name string) (<-chan struct{}, error) {
	c.calls.Add(1)
	c.mu.Lock()
	refuse := c.refuse
	c.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	g := gotPort{p: p, name: name, done: make(chan struct{})}
	c.ch <- g
	return g.done, nil
}

func (c *collector) next(t testing.TB) gotPort {
	t.Helper()
	select {
	case g := <-c.ch:
		return g
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a port")
	}
	panic("unreachable")
}

func (c *collector) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case g := <-c.ch:
		t.Fatalf("unexpected port %s", g.name)
	case <-time.After(d):
	}
}

func testOpts(t testing.TB) Options {
	return Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// waitUntil polls cond every millisecond until it holds, and fails the
// test with msg() if it still does not at deadline.
func waitUntil(t testing.TB, deadline time.Time, cond func() bool, msg func() string) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitParked waits until a goroutine with fn (e.g. "(*streamPort).Read(")
// on its stack is parked: blocked on a channel, a select, the network
// poller or a lock, not running. A test that checks that Close unblocks a
// call waits for the call to block first instead of sleeping.
func waitParked(t testing.TB, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	parked := func() bool {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			head, _, _ := strings.Cut(g, "\n") // "goroutine 7 [select]:"
			if strings.Contains(head, "[running]") || strings.Contains(head, "[runnable]") || strings.Contains(head, "[syscall") {
				continue
			}
			if strings.Contains(g, fn) {
				return true
			}
		}
		return false
	}
	waitUntil(t, time.Now().Add(testTimeout), parked, func() string { return fn + " never blocked" })
}

// msgCounter is a slog.Handler that counts the records whose message is
// msg and passes every record on: a test polls the count instead of
// sleeping while something it cannot see happens a few times.
type msgCounter struct {
	slog.Handler
	msg string
	n   *atomic.Int64
}

// countMsgs returns opts with a logger that counts records of message msg
// into n.
func countMsgs(opts Options, msg string, n *atomic.Int64) Options {
	opts.Logger = slog.New(&msgCounter{Handler: opts.Logger.Handler(), msg: msg, n: n})
	return opts
}

func (h *msgCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *msgCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &msgCounter{Handler: h.Handler.WithAttrs(as), msg: h.msg, n: h.n}
}

func (h *msgCounter) WithGroup(name string) slog.Handler {
	return &msgCounter{Handler: h.Handler.WithGroup(name), msg: h.msg, n: h.n}
}

// shortDir returns a temporary directory whose paths fit a sockaddr_un.
func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "att")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func sockPath(t testing.TB, name string) string { return filepath.Join(shortDir(t), name) }

// frame returns a test Ethernet frame of size n whose payload encodes i.
func frame(i, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x88, 0xb5})
	for j := 14; j < n; j++ {
		f[j] = byte(i + j)
	}
	if n >= 18 {
		binary.BigEndian.PutUint32(f[14:], uint32(i))
	}
	return f
}

// encode frames with the stream framing.
func encode(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// readFramed reads one length-prefixed frame from r.
func readFramed(t testing.TB, r io.Reader) []byte {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("read length: %v", err)
	}
	f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// batch makes switch-style buffers.
func batch(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	return bufs, make([]int, n)
}

// outBufs puts frames into headroom-prefixed buffers for Write.
func outBufs(frames ...[]byte) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		b := make([]byte, vswitch.Headroom+len(f))
		copy(b[vswitch.Headroom:], f)
		out[i] = b
	}
	return out
}

// readFrames reads from p until want frames arrived, with a deadline
// enforced by closing p.
func readFrames(t testing.TB, p vswitch.Port, want int) [][]byte {
	t.Helper()
	bufs, sizes := batch(p.BatchSize())
	var got [][]byte
	timer := time.AfterFunc(testTimeout, func() { p.Close() })
	defer timer.Stop()
	for len(got) < want {
		n, err := p.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			t.Fatalf("after %d of %d frames: Read: %v", len(got), want, err)
		}
		for i := 0; i < n; i++ {
			got = append(got, bytes.Clone(bufs[i][vswitch.Headroom:vswitch.Headroom+sizes[i]]))
		}
	}
	return got
}

// readErr reads from p until it fails, returning the error.
func readErr(t testing.TB, p vswitch.Port) error {
	t.Helper()
	bufs, sizes := batch(p.BatchSize())
	timer := time.AfterFunc(testTimeout, func() { p.Close() })
	defer timer.Stop()
	for {
		if _, err := p.Read(bufs, sizes, vswitch.Headroom); err != nil {
			if errors.Is(err, errTimeoutClosed) {
				t.Fatal("timed out")
			}
			return err
		}
	}
}

var errTimeoutClosed = errors.New("timeout")

func sameFrames(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got % x…, want % x…", i, head(got[i]), head(want[i]))
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

// countHandler counts "dial failed" log records.
type countHandler struct {
	mu sync.Mutex
	n  int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "dial failed") {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }
func (h *countHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }
