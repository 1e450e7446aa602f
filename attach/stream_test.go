package attach

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// listenT listens on addr and closes the listener at cleanup.
func listenT(t *testing.T, addr Addr, c *collector) Listener {
	t.Helper()
	l, err := Listen(context.Background(), addr, testOpts(t), c.onPort)
	if err != nil {
		t.Fatalf("Listen(%s): %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestUnixStreamEndToEnd(t *testing.T) {
	path := filepath.Join(shortDir(t), "sub", "s.sock") // parent created
	c := newCollector()
	l := listenT(t, Addr{Unix, path}, c)
	if got := l.Addr(); got != (Addr{Unix, path}) {
		t.Fatalf("Addr() = %v", got)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("parent dir mode %v (%v), want 0700", di.Mode(), err)
	}

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := c.next(t)
	if !strings.HasPrefix(g.name, "unix://"+path+"#1") {
		t.Errorf("port name %q", g.name)
	}

	// Inbound: ten frames of mixed sizes in one write come out of one Read
	// (the batch), byte-exact.
	var want [][]byte
	for i, n := range []int{42, 60, 1514, 14, 9000, 64, 1500, 100, 65536, 15} {
		want = append(want, frame(i, n))
	}
	if _, err := conn.Write(encode(want...)); err != nil {
		t.Fatal(err)
	}
	sameFrames(t, readFrames(t, g.p, len(want)), want)

	// Outbound: a batch Write reaches the client with the framing.
	if n, err := g.p.Write(outBufs(want...), vswitch.Headroom); err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for i := range want {
		if got := readFramed(t, conn); !bytes.Equal(got, want[i]) {
			t.Fatalf("outbound frame %d differs (%d bytes, want %d)", i, len(got), len(want[i]))
		}
	}

	// The client hangs up: Read returns io.EOF.
	conn.Close()
	if err := readErr(t, g.p); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after hang-up: %v, want io.EOF", err)
	}

	// Close removes the socket file and closes the ports it made.
	conn2, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	g2 := c.next(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file after Close: %v", err)
	}
	if err := readErr(t, g2.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("port Read after listener Close: %v, want net.ErrClosed", err)
	}
	if _, err := g2.p.Write(outBufs(frame(0, 60)), vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("port Write after Close: %v, want net.ErrClosed", err)
	}
}

func TestSocketModeOption(t *testing.T) {
	path := sockPath(t, "m.sock")
	opts := testOpts(t)
	opts.SocketMode = 0o660
	l, err := Listen(context.Background(), Addr{Unix, path}, opts, newCollector().onPort)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v (%v), want 0660", fi.Mode(), err)
	}
}

func TestUnixStaleAndLiveSocket(t *testing.T) {
	for _, scheme := range []Scheme{Unix, Unixgram, Unixpacket} {
		t.Run(string(scheme), func(t *testing.T) {
			path := sockPath(t, "x.sock")
			// A stale socket: bound, then closed without removing the file.
			network := map[Scheme]string{Unix: "unix", Unixgram: "unixgram", Unixpacket: "unixpacket"}[scheme]
			if scheme == Unixgram {
				pc, err := net.ListenUnixgram(network, &net.UnixAddr{Name: path, Net: network})
				if err != nil {
					t.Fatal(err)
				}
				pc.Close() // a unixgram conn never unlinks
			} else {
				ln, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
			}
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("stale file missing: %v", err)
			}
			l, err := Listen(context.Background(), Addr{scheme, path}, testOpts(t), newCollector().onPort)
			if err != nil {
				t.Fatalf("Listen over a stale socket: %v", err)
			}
			defer l.Close()
			// Now it is live: a second listener must refuse, and leave the
			// first one's file alone.
			_, err = Listen(context.Background(), Addr{scheme, path}, testOpts(t), newCollector().onPort)
			if !errors.Is(err, ErrInUse) {
				t.Fatalf("second Listen: %v, want ErrInUse", err)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("live socket file was removed: %v", err)
			}
		})
	}
	t.Run("not a socket", func(t *testing.T) {
		path := sockPath(t, "file")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Listen(context.Background(), Addr{Unix, path}, testOpts(t), newCollector().onPort)
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Listen over a regular file: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("regular file removed: %v", err)
		}
	})
}

func TestMalformedLengthClosesOnlyThatPort(t *testing.T) {
	tests := []struct {
		name   string
		length uint32
		want   string
	}{
		{"zero", 0, "bad frame length 0"},
		{"over max", vswitch.MaxFrameSize + 1, "bad frame length 65537"},
		{"huge", 0xffffffff, "bad frame length 4294967295"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t, "s")
			c := newCollector()
			listenT(t, Addr{Unix, path}, c)
			good, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			gp := c.next(t)
			bad, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			bp := c.next(t)

			// One good frame, then the bad length: the good frame is
			// delivered, then the error.
			var b []byte
			b = append(b, encode(frame(1, 60))...)
			b = binary.BigEndian.AppendUint32(b, tt.length)
			b = append(b, make([]byte, 64)...)
			if _, err := bad.Write(b); err != nil {
				t.Fatal(err)
			}
			sameFrames(t, readFrames(t, bp.p, 1), [][]byte{frame(1, 60)})
			err = readErr(t, bp.p)
			var fe *FrameLengthError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFrameLength) || fe.Len != tt.length {
				t.Fatalf("Read = %v, want FrameLengthError{Len: %d}", err, tt.length)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			// The other port is unaffected.
			if _, err := good.Write(encode(frame(2, 100))); err != nil {
				t.Fatal(err)
			}
			sameFrames(t, readFrames(t, gp.p, 1), [][]byte{frame(2, 100)})
		})
	}
}

func TestMaxFrameOption(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := NewStreamPort(a, Options{MaxFrame: 1518})
	defer p.Close()
	go b.Write(encode(frame(0, 1518), frame(1, 1519)))
	sameFrames(t, readFrames(t, p, 1), [][]byte{frame(0, 1518)})
	var fe *FrameLengthError
	if err := readErr(t, p); !errors.As(err, &fe) || fe.Len != 1519 || fe.Max != 1518 {
		t.Fatalf("Read = %v, want length 1519 over max 1518", err)
	}
}

// TestStreamPortPipe covers the generic (no file descriptor) path with a
// synchronous pipe that hands over the bytes in odd-sized pieces.
func TestStreamPortPipe(t *testing.T) {
	a, b := net.Pipe()
	p := NewStreamPort(a, Options{})
	defer p.Close()
	var want [][]byte
	for i := 0; i < 50; i++ {
		want = append(want, frame(i, 14+i*37))
	}
	wire := encode(want...)
	go func() {
		for len(wire) > 0 { // 7-byte pieces split lengths and frames
			n := min(7, len(wire))
			if _, err := b.Write(wire[:n]); err != nil {
				return
			}
			wire = wire[n:]
		}
	}()
	sameFrames(t, readFrames(t, p, len(want)), want)

	// Write through the copy path.
	errc := make(chan error, 1)
	go func() {
		_, err := p.Write(outBufs(want...), vswitch.Headroom)
		errc <- err
	}()
	for i := range want {
		if got := readFramed(t, b); !bytes.Equal(got, want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A truncated frame at EOF is an unexpected EOF.
	go func() { b.Write([]byte{0, 0, 0, 100, 1, 2, 3}); b.Close() }()
	if err := readErr(t, p); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Read at EOF mid-frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestStreamCloseUnblocks(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := NewStreamPort(a, Options{})
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := batch(4)
		_, err := p.Read(bufs, sizes, vswitch.Headroom)
		errc <- err
	}()
	waitParked(t, "(*streamPort).Read(")
	p.Close()
	p.Close() // twice is fine
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Read still blocked after Close")
	}
}

// unixPair returns two connected unix stream conns.
func unixPair(t testing.TB) (net.Conn, net.Conn) {
	path := sockPath(t, "p")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestStreamPartialWrite makes writev stop part-way (a small socket
// buffer and a slow reader) and checks every byte still arrives in order.
func TestStreamPartialWrite(t *testing.T) {
	a, b := unixPair(t)
	a.(*net.UnixConn).SetWriteBuffer(4096)
	p := NewStreamPort(a, Options{})
	var want [][]byte
	for i := 0; i < 64; i++ {
		want = append(want, frame(i, 3000+i))
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Write(outBufs(want...), vswitch.Headroom)
		errc <- err
	}()
	q := NewStreamPort(b, Options{})
	sameFrames(t, readFrames(t, q, len(want)), want)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestStreamNoAllocs proves the steady state of Write (or TryWrite, the
// switch's direct path) and Read allocates nothing.
func TestStreamNoAllocs(t *testing.T) {
	for _, name := range []string{"Write", "TryWrite"} {
		t.Run(name, func(t *testing.T) {
			a, b := unixPair(t)
			w := NewStreamPort(a, Options{})
			r := NewStreamPort(b, Options{})
			write := w.Write
			if name == "TryWrite" {
				tw := w.(vswitch.TryWriter)
				write = func(bufs [][]byte, offset int) (int, error) {
					k, err := tw.TryWrite(bufs, offset)
					if err == nil && k < len(bufs) { // socket full: the rest the blocking way
						_, err = w.Write(bufs[k:], offset)
					}
					return len(bufs), err
				}
			}
			const n = 32
			var frames [][]byte
			for i := 0; i < n; i++ {
				frames = append(frames, frame(i, 60+i*40))
			}
			out := outBufs(frames...)
			bufs, sizes := batch(n)
			var sink int
			round := func() {
				if _, err := write(out, vswitch.Headroom); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < n; {
					k, err := r.Read(bufs[got:], sizes[got:], vswitch.Headroom)
					if err != nil {
						t.Fatal(err)
					}
					got += k
				}
				sink += sizes[n-1]
			}
			round()
			if allocs := testing.AllocsPerRun(200, round); allocs != 0 {
				t.Fatalf("%s+Read of %d frames: %v allocations per run, want 0", name, n, allocs)
			}
			if sizes[n-1] != len(frames[n-1]) {
				t.Fatalf("last frame size %d, want %d", sizes[n-1], len(frames[n-1]))
			}
			_ = sink
		})
	}
}

func BenchmarkStreamUnix1500(b *testing.B) { benchStream(b, 1500) }
func BenchmarkStreamUnix64(b *testing.B)   { benchStream(b, 64) }

func benchStream(b *testing.B, size int) {
	ca, cb := unixPair(b)
	w := NewStreamPort(ca, Options{})
	r := NewStreamPort(cb, Options{})
	const n = BatchSize
	var frames [][]byte
	for i := 0; i < n; i++ {
		frames = append(frames, frame(i, size))
	}
	out := outBufs(frames...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := batch(n)
		for got := 0; got < b.N*n; {
			k, err := r.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				return
			}
			got += k
		}
	}()
	b.ReportAllocs()
	b.SetBytes(int64(size * n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(out, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "frames/s")
}

func TestTCPListenRealPort(t *testing.T) {
	c := newCollector()
	l := listenT(t, Addr{TCP, "127.0.0.1:0"}, c)
	a := l.Addr()
	if a.Scheme != TCP || strings.HasSuffix(a.Target, ":0") {
		t.Fatalf("Addr() = %v, want the real port", a)
	}
	conn, err := net.Dial("tcp", a.Target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := c.next(t)
	want := [][]byte{frame(1, 1514), frame(2, 42)}
	conn.Write(encode(want...))
	sameFrames(t, readFrames(t, g.p, 2), want)
	if _, err := g.p.Write(outBufs(want...), vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got := readFramed(t, conn); !bytes.Equal(got, want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestListenerRefusedPortIsClosed(t *testing.T) {
	path := sockPath(t, "r")
	c := newCollector()
	c.refuse = errors.New("no room")
	listenT(t, Addr{Unix, path}, c)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused connection: Read = %v, want EOF (closed by the listener)", err)
	}
}

func TestDoneClosesPort(t *testing.T) {
	path := sockPath(t, "d")
	c := newCollector()
	listenT(t, Addr{Unix, path}, c)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := c.next(t)
	close(g.done) // the switch is done with it
	if err := readErr(t, g.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after done: %v, want net.ErrClosed", err)
	}
}

func TestListenContextCancel(t *testing.T) {
	path := sockPath(t, "c")
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Listen(ctx, Addr{Unix, path}, testOpts(t), newCollector().onPort)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cancel()
	waitUntil(t, time.Now().Add(testTimeout),
		func() bool { _, err := os.Lstat(path); return os.IsNotExist(err) },
		func() string { return "socket file still there after ctx cancel" })
}

func TestListenUnixStream(t *testing.T) {
	path := filepath.Join(shortDir(t), "adm", "admin.sock")
	ln, err := ListenUnixStream(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v)", fi.Mode(), err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hi" {
		t.Fatalf("got %q", b)
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("file after Close: %v", err)
	}
}

// TestSocketModeBeforeBind checks the claim that the socket file is born
// with the requested mode (set on the socket before bind), not widened
// until a later chmod.
func TestSocketModeBeforeBind(t *testing.T) {
	path := sockPath(t, "b")
	ln, err := unixListenConfig(0o600).Listen(context.Background(), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&^0o600 != 0 {
		t.Fatalf("socket born with mode %v, want no bits beyond 0600", fi.Mode().Perm())
	}
}
