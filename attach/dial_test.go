package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

func TestUnixpacket(t *testing.T) {
	path := sockPath(t, "pk")
	c := newCollector()
	l := listenT(t, Addr{Unixpacket, path}, c)

	// A raw SOCK_SEQPACKET client: one frame per packet.
	raw, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	g := c.next(t)
	want := [][]byte{frame(1, 60), frame(2, 1514), frame(3, 14), frame(4, 65536)}
	for _, f := range want {
		if _, err := raw.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	sameFrames(t, readFrames(t, g.p, len(want)), want)
	if n, err := g.p.Write(outBufs(want...), vswitch.Headroom); err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	b := make([]byte, 70000)
	for i, f := range want {
		raw.SetReadDeadline(time.Now().Add(testTimeout))
		n, err := raw.Read(b)
		if err != nil || !bytes.Equal(b[:n], f) {
			t.Fatalf("packet %d: %d bytes, %v", i, n, err)
		}
	}

	// Dial the listener too.
	p, err := DialOnce(context.Background(), Addr{Unixpacket, path}, testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	g2 := c.next(t)
	p.Write(outBufs(want...), vswitch.Headroom)
	sameFrames(t, readFrames(t, g2.p, len(want)), want)
	g2.p.Write(outBufs(want[:2]...), vswitch.Headroom)
	sameFrames(t, readFrames(t, p, 2), want[:2])

	// Hang-up is io.EOF on the other side.
	p.Close()
	if err := readErr(t, g2.p); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after peer close: %v, want io.EOF", err)
	}

	// An oversized packet is a framing error for that connection only.
	opts := testOpts(t)
	opts.MaxFrame = 1518
	path2 := sockPath(t, "pk2")
	c2 := newCollector()
	l2, err := Listen(context.Background(), Addr{Unixpacket, path2}, opts, c2.onPort)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	raw2, err := net.Dial("unixpacket", path2)
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	g3 := c2.next(t)
	raw2.Write(frame(1, 1518))
	raw2.Write(frame(2, 1519))
	sameFrames(t, readFrames(t, g3.p, 1), [][]byte{frame(1, 1518)})
	if err := readErr(t, g3.p); !errors.Is(err, ErrFrameLength) {
		t.Fatalf("Read of an oversized packet: %v, want ErrFrameLength", err)
	}
	l.Close()
	if err := readErr(t, g.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after listener Close: %v", err)
	}
}

// redialServer is a unix stream listener the test controls.
type redialServer struct {
	path  string
	mu    sync.Mutex
	ln    net.Listener
	conns chan net.Conn
}

func (s *redialServer) start(t *testing.T) {
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
		}
	}()
}

func (s *redialServer) stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
}

func (s *redialServer) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(testTimeout):
		t.Fatal("no connection from Dial")
	}
	return nil
}

// switchSide is an OnPort that behaves like the switch: it reads the port
// until Read fails, then closes done.
type switchSide struct {
	ports chan vswitch.Port
	names chan string
}

func (s *switchSide) onPort(p vswitch.Port, name string) (<-chan struct{}, error) {
	done := make(chan struct{})
	s.names <- name
	go func() {
		defer close(done)
		bufs, sizes := batch(p.BatchSize())
		for {
			n, err := p.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				p.Close()
				return
			}
			// echo
			out := make([][]byte, n)
			for i := range out {
				out[i] = bufs[i][:vswitch.Headroom+sizes[i]]
			}
			p.Write(out, vswitch.Headroom)
		}
	}()
	return done, nil
}

func TestDialRedial(t *testing.T) {
	s := &redialServer{path: sockPath(t, "srv"), conns: make(chan net.Conn, 4)}
	s.start(t)
	sw := &switchSide{names: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var failed atomic.Int64
	opts := countMsgs(testOpts(t), "dial failed, retrying", &failed)
	go func() { errc <- Dial(ctx, Addr{Unix, s.path}, opts, sw.onPort) }()

	echo := func(c net.Conn, i int) {
		t.Helper()
		c.Write(encode(frame(i, 100)))
		c.SetReadDeadline(time.Now().Add(testTimeout))
		if got := readFramed(t, c); !bytes.Equal(got, frame(i, 100)) {
			t.Fatal("echo differs")
		}
	}
	c1 := s.next(t)
	echo(c1, 1)
	// The server drops the connection: Dial connects again.
	c1.Close()
	c2 := s.next(t)
	echo(c2, 2)
	// The server goes away entirely and comes back later: Dial keeps
	// trying with backoff and reconnects.
	base := failed.Load()
	s.stop()
	c2.Close()
	waitUntil(t, time.Now().Add(testTimeout), func() bool { return failed.Load() >= base+2 },
		func() string {
			return fmt.Sprintf("%d failed dials while the server was away, want 2", failed.Load()-base)
		})
	s.start(t)
	c3 := s.next(t)
	echo(c3, 3)
	names := []string{<-sw.names, <-sw.names, <-sw.names}
	if names[0] == names[1] || names[1] == names[2] {
		t.Fatalf("port names repeat: %v", names)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Dial returned %v after cancel, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Dial did not return after cancel")
	}
	// The current connection was closed.
	c3.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := c3.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection after cancel: %v, want EOF", err)
	}
}

func TestDialBackoff(t *testing.T) {
	// Nobody listens: attempts come at 0, 0.1, 0.3, 0.7, 1.5 s. Count the
	// failed attempts Dial logs over 1.6 s.
	path := sockPath(t, "none")
	h := &countHandler{}
	opts := Options{Logger: slogNew(h)}
	ctx, cancel := context.WithTimeout(context.Background(), 1600*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Dial(ctx, Addr{Unix, path}, opts, func(vswitch.Port, string) (<-chan struct{}, error) {
		t.Error("connected to nothing")
		return nil, errors.New("no")
	}); err != nil {
		t.Fatal(err)
	}
	// Five attempts; fewer on a slow machine, never many more.
	if n := h.count(); n < 3 || n > 6 {
		t.Fatalf("%d dial attempts in %v, want about 5 (exponential backoff from 100 ms)", n, time.Since(start))
	}
}

func TestDialBadScheme(t *testing.T) {
	err := Dial(context.Background(), Addr{Scheme: "nope"}, Options{}, nil)
	if !errors.Is(err, ErrBadAddr) {
		t.Fatalf("Dial with a bad scheme: %v", err)
	}
	if _, err := DialOnce(context.Background(), Addr{Vsock, ":5"}, Options{}); err == nil || !strings.Contains(err.Error(), "context ID") {
		t.Fatalf("DialOnce vsock without CID: %v", err)
	}
}

func TestDialOnceTCP(t *testing.T) {
	c := newCollector()
	l := listenT(t, Addr{TCP, "127.0.0.1:0"}, c)
	p, err := DialOnce(context.Background(), l.Addr(), testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g := c.next(t)
	want := [][]byte{frame(1, 60), frame(2, 1514)}
	p.Write(outBufs(want...), vswitch.Headroom)
	sameFrames(t, readFrames(t, g.p, 2), want)
	if _, err := DialOnce(context.Background(), Addr{TCP, "127.0.0.1:1"}, Options{}); err == nil || !strings.HasPrefix(err.Error(), "dial tcp://127.0.0.1:1: ") {
		t.Fatalf("DialOnce to a closed port: %v", err)
	}
}

func TestSplice(t *testing.T) {
	// client A <-> [port a | Splice | port b] <-> listener port
	path := sockPath(t, "sp")
	c := newCollector()
	listenT(t, Addr{Unix, path}, c)
	b, err := DialOnce(context.Background(), Addr{Unix, path}, testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	far := c.next(t)
	ca, cb := net.Pipe()
	a := NewStreamPort(ca, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Splice(ctx, a, b) }()

	var want [][]byte
	for i := 0; i < 100; i++ {
		want = append(want, frame(i, 60+i*10))
	}
	go cb.Write(encode(want...))
	sameFrames(t, readFrames(t, far.p, len(want)), want)
	far.p.Write(outBufs(want...), vswitch.Headroom)
	for i := range want {
		if got := readFramed(t, cb); !bytes.Equal(got, want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	// One side ends: Splice returns and closes both.
	cb.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("Splice = %v, want EOF", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Splice did not return")
	}
	if err := readErr(t, far.p); !errors.Is(err, io.EOF) {
		t.Fatalf("far side after Splice: %v, want EOF (b closed)", err)
	}
}

func TestSpliceCancel(t *testing.T) {
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	defer a2.Close()
	defer b2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Splice(ctx, NewStreamPort(a1, Options{}), NewStreamPort(b1, Options{})) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Splice = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Splice did not return after cancel")
	}
}
