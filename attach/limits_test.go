package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

var (
	_ vswitch.ReadWaiter = (*streamPort)(nil)
	_ vswitch.ReadWaiter = (*packetPort)(nil)
	_ vswitch.ReadWaiter = (*peerPort)(nil)
)

// waitRead drives p as the switch does: WaitRead, then Read, until a
// Read returns frames or an error.
func waitRead(p vswitch.Port, bufs [][]byte, sizes []int) (int, error) {
	w := p.(vswitch.ReadWaiter)
	for {
		if err := w.WaitRead(); err != nil {
			return 0, err
		}
		n, err := p.Read(bufs, sizes, vswitch.Headroom)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// TestStreamHoldsNoReadBuffer: a stream port keeps no read buffer while
// idle, and only the started frame's part (a pool buffer of its size)
// while a frame is incomplete.
func TestStreamHoldsNoReadBuffer(t *testing.T) {
	a, b := unixPair(t)
	p := newStreamPort(b, Options{}.withDefaults())
	t.Cleanup(func() { p.Close() })
	bufs, sizes := batch(BatchSize)
	a.Write(encode(frame(1, 60), frame(2, 1500)))
	if n, err := waitRead(p, bufs, sizes); err != nil || n != 2 {
		t.Fatalf("Read = %d, %v; want 2 frames", n, err)
	}
	if p.rbuf != nil {
		t.Fatalf("idle port holds a %d-byte read buffer", cap(p.rbuf))
	}
	// Two bytes of a length: a small pool buffer.
	a.Write([]byte{0, 0})
	if err := p.WaitRead(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(bufs, sizes, vswitch.Headroom); n != 0 || err != nil {
		t.Fatalf("after half a length: Read = %d, %v; want 0, nil", n, err)
	}
	if cap(p.rbuf) != vswitch.SmallBufSize || p.w-p.r != 2 {
		t.Fatalf("half a length: holds %d bytes in a %d-byte buffer, want 2 in %d", p.w-p.r, cap(p.rbuf), vswitch.SmallBufSize)
	}
	// The rest of the length of a 9000-byte frame and part of it: a
	// large pool buffer, still one frame.
	f := frame(3, 9000)
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(f)))
	a.Write(append(l[2:], f[:100]...))
	for p.w-p.r < 102 {
		if err := p.WaitRead(); err != nil {
			t.Fatal(err)
		}
		if n, err := p.Read(bufs, sizes, vswitch.Headroom); n != 0 || err != nil {
			t.Fatalf("part of a frame: Read = %d, %v; want 0, nil", n, err)
		}
	}
	if cap(p.rbuf) != vswitch.BufSize {
		t.Fatalf("part of a 9000-byte frame in a %d-byte buffer, want %d", cap(p.rbuf), vswitch.BufSize)
	}
	a.Write(f[100:])
	if n, err := waitRead(p, bufs, sizes); err != nil || n != 1 || sizes[0] != len(f) {
		t.Fatalf("Read = %d, %v; want the 9000-byte frame", n, err)
	}
	sameFrames(t, [][]byte{bufs[0][vswitch.Headroom : vswitch.Headroom+sizes[0]]}, [][]byte{f})
	if p.rbuf != nil {
		t.Fatalf("idle port holds a %d-byte read buffer", cap(p.rbuf))
	}
}

// TestFrameTimeout: a port that started a frame (part of a length, or a
// length and part of a frame) and stops is closed after FrameTimeout and
// counted; an idle one is not.
func TestFrameTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c := newCollector()
	opts := testOpts(t)
	opts.FrameTimeout = timeout
	ln, err := Listen(t.Context(), Addr{Unix, sockPath(t, "ft.sock")}, opts, c.onPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := frame(1, 1000)
	for i, half := range [][]byte{{0, 0}, append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f[:500]...), nil} {
		conn, err := net.Dial("unix", ln.Addr().Target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		g := c.next(t)
		// A whole frame first: the clock is per frame.
		conn.Write(encode(frame(0, 60)))
		bufs, sizes := batch(BatchSize)
		if n, err := waitRead(g.p, bufs, sizes); n != 1 || err != nil {
			t.Fatalf("first frame: Read = %d, %v", n, err)
		}
		if half == nil { // idle: never closed
			errc := make(chan error, 1)
			go func() { _, err := waitRead(g.p, bufs, sizes); errc <- err }()
			select {
			case err := <-errc:
				t.Fatalf("idle port: Read returned %v", err)
			case <-time.After(5 * timeout):
			}
			g.p.Close()
			if err := <-errc; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("idle port after Close: %v", err)
			}
			break
		}
		conn.Write(half)
		start := time.Now()
		_, err = waitRead(g.p, bufs, sizes)
		if !errors.Is(err, ErrFrameTimeout) {
			t.Fatalf("case %d: Read = %v, want ErrFrameTimeout", i, err)
		}
		if d := time.Since(start); d < timeout*9/10 {
			t.Fatalf("case %d: closed after %v, before the timeout", i, d)
		}
		close(g.done)
		// The listener closes the connection.
		conn.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("case %d: connection not closed: %v", i, err)
		}
	}
	if got := ln.PortStats().FrameTimeouts; got != 2 {
		t.Errorf("FrameTimeouts = %d, want 2", got)
	}
}

// TestStreamListenerMaxPorts: connections beyond MaxPorts are closed at
// once and counted; a port that leaves makes room.
func TestStreamListenerMaxPorts(t *testing.T) {
	const max = 3
	c := newCollector()
	opts := testOpts(t)
	opts.MaxPorts = max
	ln, err := Listen(t.Context(), Addr{Unix, sockPath(t, "max.sock")}, opts, c.onPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dial := func() net.Conn {
		conn, err := net.Dial("unix", ln.Addr().Target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	var got []gotPort
	for i := 0; i < max; i++ {
		dial()
		got = append(got, c.next(t))
	}
	for i := 0; i < 2; i++ {
		conn := dial()
		conn.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection over the limit: Read = %v, want EOF", err)
		}
	}
	c.none(t, 50*time.Millisecond)
	if st := ln.PortStats(); st.Ports != max || st.Refused != 2 {
		t.Fatalf("PortStats = %+v, want %d ports, 2 refused", st, max)
	}
	close(got[0].done)
	waitUntil(t, time.Now().Add(testTimeout), func() bool { return ln.PortStats().Ports == max-1 }, func() string { return "port did not leave" })
	dial()
	c.next(t)
}

// TestDgramListenerMaxPorts: datagrams from new peers beyond MaxPorts are
// dropped before any port is made, and counted.
func TestDgramListenerMaxPorts(t *testing.T) {
	const max, sources = 4, 10
	c := newCollector()
	opts := testOpts(t)
	opts.MaxPorts = max
	ln, err := Listen(t.Context(), Addr{UDP, "127.0.0.1:0"}, opts, c.onPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	server, _ := net.ResolveUDPAddr("udp", ln.Addr().Target)
	for i := 0; i < sources; i++ {
		cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		cl.WriteTo(frame(i, 60), server)
	}
	waitUntil(t, time.Now().Add(testTimeout), func() bool { return ln.PortStats().Refused == sources-max },
		func() string { return "refusals not counted: " + fmtStats(ln.PortStats()) })
	if st := ln.PortStats(); st.Ports != max || c.calls.Load() != max {
		t.Fatalf("PortStats %s, onPort called %d times; want %d ports", fmtStats(st), c.calls.Load(), max)
	}
}

func fmtStats(st PortStats) string { return fmt.Sprintf("%+v", st) }
