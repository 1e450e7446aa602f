package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// listenDialUDP listens on udp target with opts, handing ports to onPort,
// and dials the listener; both are closed at cleanup.
func listenDialUDP(t *testing.T, target string, opts Options, onPort OnPort) (*dgramListener, net.Conn) {
	t.Helper()
	l, err := Listen(context.Background(), Addr{UDP, target}, opts, onPort)
	if err != nil {
		t.Fatalf("Listen(udp %s): %v", target, err)
	}
	t.Cleanup(func() { l.Close() })
	cl, err := net.Dial("udp", l.Addr().Target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return l.(*dgramListener), cl
}

// recvDgram reads one datagram from c with the test deadline.
func recvDgram(t testing.TB, c net.PacketConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, 70000)
	n, _, err := c.ReadFrom(b)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	return b[:n]
}

func TestUDPManyPeers(t *testing.T) {
	c := newCollector()
	l := listenT(t, Addr{UDP, "127.0.0.1:0"}, c)
	if strings.HasSuffix(l.Addr().Target, ":0") {
		t.Fatalf("Addr() = %v, want the real port", l.Addr())
	}
	server, err := net.ResolveUDPAddr("udp", l.Addr().Target)
	if err != nil {
		t.Fatal(err)
	}
	const peers = 8
	var clients []*net.UDPConn
	ports := map[string]gotPort{}
	for i := 0; i < peers; i++ {
		cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients = append(clients, cl)
		if _, err := cl.WriteTo(frame(i, 60), server); err != nil {
			t.Fatal(err)
		}
		g := c.next(t)
		if _, dup := ports[g.name]; dup {
			t.Fatalf("port name %q twice", g.name)
		}
		if !strings.Contains(g.name, cl.LocalAddr().String()) {
			t.Errorf("port name %q does not name peer %s", g.name, cl.LocalAddr())
		}
		ports[g.name] = g
		sameFrames(t, readFrames(t, g.p, 1), [][]byte{frame(i, 60)})
	}
	// More datagrams from known peers make no new ports, and each peer's
	// frames come out of its own port.
	for i, cl := range clients {
		for k := 0; k < 3; k++ {
			cl.WriteTo(frame(100*i+k, 200), server)
		}
	}
	c.none(t, 50*time.Millisecond)
	for _, g := range ports {
		var i int
		fmt.Sscanf(g.name[strings.LastIndex(g.name, "#")+1:], "%d", &i)
		i-- // ports are numbered from 1 in peer order
		want := [][]byte{frame(100*i, 200), frame(100*i+1, 200), frame(100*i+2, 200)}
		sameFrames(t, readFrames(t, g.p, 3), want)
		// Write reaches exactly that peer.
		out := [][]byte{frame(1000+i, 1514), frame(2000+i, 64)}
		if n, err := g.p.Write(outBufs(out...), vswitch.Headroom); err != nil || n != 2 {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for _, f := range out {
			if got := recvDgram(t, clients[i]); !bytes.Equal(got, f) {
				t.Fatalf("peer %d got a frame it should not (% x)", i, head(got))
			}
		}
	}
	if s := l.(*dgramListener).Stats(); s.Peers != peers {
		t.Fatalf("Stats().Peers = %d, want %d", s.Peers, peers)
	}
	// A port closed by the switch forgets its peer: its next datagram
	// makes a new port.
	var first gotPort
	for _, g := range ports {
		if strings.Contains(g.name, "#1(") {
			first = g
		}
	}
	close(first.done)
	if err := readErr(t, first.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after done: %v", err)
	}
	clients[0].WriteTo(frame(7, 60), server)
	g := c.next(t)
	if !strings.Contains(g.name, clients[0].LocalAddr().String()) {
		t.Fatalf("new port %q is not for peer 0", g.name)
	}
	sameFrames(t, readFrames(t, g.p, 1), [][]byte{frame(7, 60)})
}

func TestUDPBatchAndOversize(t *testing.T) {
	c := newCollector()
	opts := testOpts(t)
	opts.MaxFrame = 1518
	dl, cl := listenDialUDP(t, "127.0.0.1:0", opts, c.onPort)
	cl.Write(frame(0, 60))
	g := c.next(t)
	var want [][]byte
	for i := 1; i <= 40; i++ {
		if i%10 == 0 {
			cl.Write(frame(i, 1519)) // over MaxFrame: dropped, counted
			cl.Write(nil)            // empty: dropped, counted
			continue
		}
		want = append(want, frame(i, 60+i))
		cl.Write(want[len(want)-1])
	}
	got := readFrames(t, g.p, 1+len(want))
	sameFrames(t, got, append([][]byte{frame(0, 60)}, want...))
	waitUntil(t, time.Now().Add(testTimeout),
		func() bool { return dl.oversize.Load() == 4 && dl.empty.Load() == 4 },
		func() string {
			return fmt.Sprintf("oversize %d empty %d, want 4 and 4", dl.oversize.Load(), dl.empty.Load())
		})
}

func TestDgramQueueFullDrops(t *testing.T) {
	c := newCollector()
	opts := testOpts(t)
	opts.QueueLen = 4
	dl, cl := listenDialUDP(t, "127.0.0.1:0", opts, c.onPort)
	for i := 0; i < 20; i++ { // nobody reads the port meanwhile
		cl.Write(frame(i, 60))
	}
	g := c.next(t)
	waitUntil(t, time.Now().Add(testTimeout),
		func() bool { return dl.queueFull.Load() >= 16 },
		func() string { return fmt.Sprintf("queueFull = %d, want 16", dl.queueFull.Load()) })
	if q := dl.queueFull.Load(); q != 16 {
		t.Fatalf("queueFull = %d, want 16", q)
	}
	want := [][]byte{frame(0, 60), frame(1, 60), frame(2, 60), frame(3, 60)}
	sameFrames(t, readFrames(t, g.p, 4), want)
}

func TestDgramPeerIdleExpiry(t *testing.T) {
	c := newCollector()
	opts := testOpts(t)
	opts.PeerIdle = 100 * time.Millisecond
	_, cl := listenDialUDP(t, "127.0.0.1:0", opts, c.onPort)
	cl.Write(frame(0, 60))
	g := c.next(t)
	start := time.Now()
	if err := readErr(t, g.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("idle peer: Read = %v, want net.ErrClosed", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("expired after %v, before PeerIdle", d)
	}
	cl.Write(frame(1, 60))
	sameFrames(t, readFrames(t, c.next(t).p, 1), [][]byte{frame(1, 60)})
}

// unixgramClient binds a unixgram socket in dir.
func unixgramClient(t testing.TB, dir, name string) *net.UnixConn {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, name), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); os.Remove(filepath.Join(dir, name)) })
	return c
}

func TestUnixgramVFKTAndPeers(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "g.sock")
	c := newCollector()
	l := listenT(t, Addr{Unixgram, path}, c)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	srv := &net.UnixAddr{Name: path, Net: "unixgram"}

	// vfkit: VFKT first, consumed; then frames.
	vf := unixgramClient(t, dir, "vfkit")
	vf.WriteTo([]byte(VFKTGreeting), srv)
	vfp := c.next(t)
	vf.WriteTo(frame(1, 60), srv)
	sameFrames(t, readFrames(t, vfp.p, 1), [][]byte{frame(1, 60)})
	// A later "VFKT" from a known peer is a (runt) frame like any other.
	vf.WriteTo([]byte(VFKTGreeting), srv)
	sameFrames(t, readFrames(t, vfp.p, 1), [][]byte{[]byte(VFKTGreeting)})

	// QEMU dgram: no greeting; its own port.
	qm := unixgramClient(t, dir, "qemu")
	qm.WriteTo(frame(2, 1514), srv)
	qp := c.next(t)
	if qp.name == vfp.name {
		t.Fatal("two peers share a port name")
	}
	sameFrames(t, readFrames(t, qp.p, 1), [][]byte{frame(2, 1514)})

	// Replies go to the right peer.
	qp.p.Write(outBufs(frame(3, 100)), vswitch.Headroom)
	vfp.p.Write(outBufs(frame(4, 100)), vswitch.Headroom)
	if got := recvDgram(t, qm); !bytes.Equal(got, frame(3, 100)) {
		t.Fatal("qemu peer got the wrong frame")
	}
	if got := recvDgram(t, vf); !bytes.Equal(got, frame(4, 100)) {
		t.Fatal("vfkit peer got the wrong frame")
	}

	// An unbound sender cannot be answered: dropped, counted, no port.
	anon, err := net.DialUnix("unixgram", nil, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	anon.Write(frame(5, 60))
	dl := l.(*dgramListener)
	waitUntil(t, time.Now().Add(testTimeout),
		func() bool { return dl.unnamed.Load() == 1 },
		func() string { return "unnamed datagram not counted" })
	c.none(t, 20*time.Millisecond)

	// A peer whose socket is gone: Write fails, final for that port only.
	qm.Close()
	os.Remove(filepath.Join(dir, "qemu"))
	if _, err := qp.p.Write(outBufs(frame(6, 60)), vswitch.Headroom); err == nil {
		t.Fatal("Write to a vanished unixgram peer succeeded")
	}
	if _, err := vfp.p.Write(outBufs(frame(7, 60)), vswitch.Headroom); err != nil {
		t.Fatalf("other peer: %v", err)
	}
	if got := recvDgram(t, vf); !bytes.Equal(got, frame(7, 60)) {
		t.Fatal("vfkit peer got the wrong frame")
	}

	// Close removes the file and closes the peers.
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file after Close: %v", err)
	}
	if err := readErr(t, vfp.p); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("peer Read after Close: %v", err)
	}
}

func TestDgramPeerNoAllocs(t *testing.T) {
	c := newCollector()
	l := listenT(t, Addr{UDP, "127.0.0.1:0"}, c)
	cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv, _ := net.ResolveUDPAddr("udp", l.Addr().Target)
	cl.WriteTo(frame(0, 60), srv)
	g := c.next(t)
	readFrames(t, g.p, 1)
	// Outbound: the peer's Write (sendmmsg) allocates nothing.
	out := outBufs(frame(1, 1000), frame(2, 60), frame(3, 1500))
	buf := make([]byte, 2000)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := g.p.Write(out, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
	})
	// The client's receive buffer holds only part of them; some arrive.
	cl.SetReadDeadline(time.Now().Add(testTimeout))
	if n, _, err := cl.ReadFrom(buf); err != nil || n != 1000 {
		t.Fatalf("client ReadFrom = %d, %v", n, err)
	}
	if allocs != 0 {
		t.Fatalf("peer Write: %v allocations per run, want 0", allocs)
	}
	// Inbound: the reader's lookup is allocation-free.
	dl := l.(*dgramListener)
	if a := testing.AllocsPerRun(1000, func() {
		dl.mu.Lock()
		p, ok := dl.lookup(&g.p.(*peerPort).sa, g.p.(*peerPort).salen)
		dl.mu.Unlock()
		if p == nil || !ok {
			t.Fatal("lookup failed")
		}
	}); a != 0 {
		t.Fatalf("peer lookup: %v allocations, want 0", a)
	}
}

func TestDialDatagram(t *testing.T) {
	t.Run("udp", func(t *testing.T) {
		srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		p, err := DialOnce(context.Background(), Addr{UDP, srv.LocalAddr().String()}, testOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		checkDialedDgram(t, p, srv)
	})
	t.Run("unixgram", func(t *testing.T) {
		dir := shortDir(t)
		srv := unixgramClient(t, dir, "srv")
		p, err := DialOnce(context.Background(), Addr{Unixgram, filepath.Join(dir, "srv")}, testOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		local := p.(*packetPort).conn.(*net.UnixConn).LocalAddr().String()
		fi, err := os.Lstat(local)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("local socket %s: %v %v", local, fi, err)
		}
		checkDialedDgram(t, p, srv)
		p.Close()
		if _, err := os.Lstat(filepath.Dir(local)); !os.IsNotExist(err) {
			t.Fatalf("local socket dir after Close: %v", err)
		}
	})
	t.Run("unixgram to listener", func(t *testing.T) {
		path := sockPath(t, "l")
		c := newCollector()
		listenT(t, Addr{Unixgram, path}, c)
		p, err := DialOnce(context.Background(), Addr{Unixgram, path}, testOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		want := [][]byte{frame(1, 60), frame(2, 1514), frame(3, 9000)}
		if _, err := p.Write(outBufs(want...), vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
		g := c.next(t)
		sameFrames(t, readFrames(t, g.p, 3), want)
		g.p.Write(outBufs(want...), vswitch.Headroom)
		sameFrames(t, readFrames(t, p, 3), want)
	})
}

// checkDialedDgram exchanges frames between a dialed port and the raw
// server socket it dialed.
func checkDialedDgram(t *testing.T, p vswitch.Port, srv net.PacketConn) {
	t.Helper()
	want := [][]byte{frame(1, 60), frame(2, 1514), frame(3, 14)}
	if n, err := p.Write(outBufs(want...), vswitch.Headroom); err != nil || n != 3 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	var from net.Addr
	for i := range want {
		srv.SetReadDeadline(time.Now().Add(testTimeout))
		b := make([]byte, 70000)
		n, a, err := srv.ReadFrom(b)
		if err != nil {
			t.Fatal(err)
		}
		from = a
		if !bytes.Equal(b[:n], want[i]) {
			t.Fatalf("server got frame %d wrong", i)
		}
	}
	// Several datagrams queued: one Read returns them all (recvmmsg).
	for _, f := range want {
		sendQueued(t, p.(*packetPort), srv, f, from)
	}
	bufs, sizes := batch(8)
	n, err := p.Read(bufs, sizes, vswitch.Headroom)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("Read returned %d datagrams at once, want 3", n)
	}
	for i := 0; i < n; i++ {
		if !bytes.Equal(bufs[i][vswitch.Headroom:vswitch.Headroom+sizes[i]], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

// sendQueued sends f from srv to the address to, where the dialed port p
// listens, and returns once the datagram waits in p's socket receive
// queue, so that p's next Read finds it. A unixgram send queues the
// datagram on the receiving socket before it returns. On udp, loopback
// delivery may happen later (in ksoftirqd on a loaded machine), so it polls
// the receive memory of p's socket (SO_MEMINFO), which grows with every
// datagram queued and shrinks only when one is read.
func sendQueued(t *testing.T, p *packetPort, srv net.PacketConn, f []byte, to net.Addr) {
	t.Helper()
	rmem := func() uint32 { return socketRmem(t, p.rc) }
	_, isUDP := srv.(*net.UDPConn)
	before := rmem()
	if _, err := srv.WriteTo(f, to); err != nil {
		t.Fatalf("send to the dialed port: %v", err)
	}
	if isUDP {
		waitUntil(t, time.Now().Add(testTimeout), func() bool { return rmem() > before },
			func() string { return fmt.Sprintf("datagram not queued on the dialed port after %v", testTimeout) })
	}
}

func TestUDPv6AndRefusedPeer(t *testing.T) {
	c := newCollector()
	dl, cl := listenDialUDP(t, "[::1]:0", testOpts(t), c.onPort)
	cl.Write(frame(1, 60))
	g := c.next(t)
	if !strings.Contains(g.name, "[::1]:") {
		t.Errorf("port name %q", g.name)
	}
	sameFrames(t, readFrames(t, g.p, 1), [][]byte{frame(1, 60)})
	g.p.Write(outBufs(frame(2, 1400)), vswitch.Headroom)
	cl.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, 2000)
	if n, err := cl.Read(b); err != nil || !bytes.Equal(b[:n], frame(2, 1400)) {
		t.Fatalf("reply: %d, %v", n, err)
	}

	// A refused peer is offered once, then its frames are dropped and
	// counted until it goes idle.
	c.mu.Lock()
	c.refuse = errors.New("port limit")
	c.mu.Unlock()
	before := c.calls.Load()
	cl2, err := net.Dial("udp", dl.Addr().Target)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	for i := 0; i < 3; i++ {
		cl2.Write(frame(i, 60))
	}
	waitUntil(t, time.Now().Add(testTimeout),
		func() bool { return dl.refused.Load() == 3 },
		func() string { return fmt.Sprintf("refused = %d, want 3", dl.refused.Load()) })
	if n := c.calls.Load() - before; n != 1 {
		t.Fatalf("onPort called %d times for one refused peer, want 1", n)
	}
}

// readCount reads from p into bufs (reused by every Read) until want
// frames have come.
func readCount(t testing.TB, p vswitch.Port, bufs [][]byte, sizes []int, want int) {
	t.Helper()
	for got := 0; got < want; {
		n, err := p.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
}

// TestDatagramPathsNoAllocs measures whole round trips, the listener's
// reader goroutine included (AllocsPerRun counts every goroutine).
func TestDatagramPathsNoAllocs(t *testing.T) {
	// Small frames queue in 2 KiB pool buffers, large ones in 64 KiB ones.
	for _, size := range []int{1000, 9000} {
		name := "udp listener peer"
		if size > vswitch.SmallBufSize {
			name += " large"
		}
		t.Run(name, func(t *testing.T) {
			c := newCollector()
			l := listenT(t, Addr{UDP, "127.0.0.1:0"}, c)
			cl, err := net.Dial("udp", l.Addr().Target)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			f := frame(1, size)
			cl.Write(f)
			g := c.next(t)
			bufs, sizes := batch(4)
			readFrames(t, g.p, 1)
			round := func() {
				for i := 0; i < 3; i++ {
					if _, err := cl.Write(f); err != nil {
						t.Fatal(err)
					}
				}
				readCount(t, g.p, bufs, sizes, 3)
			}
			round()
			if a := testing.AllocsPerRun(200, round); a != 0 {
				t.Fatalf("3 datagrams in through the listener: %v allocations per run, want 0", a)
			}
		})
	}
	t.Run("unixpacket", func(t *testing.T) {
		path := sockPath(t, "pa")
		c := newCollector()
		listenT(t, Addr{Unixpacket, path}, c)
		p, err := DialOnce(context.Background(), Addr{Unixpacket, path}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		g := c.next(t)
		out := outBufs(frame(1, 60), frame(2, 1514), frame(3, 9000))
		bufs, sizes := batch(4)
		round := func() {
			if _, err := p.Write(out, vswitch.Headroom); err != nil {
				t.Fatal(err)
			}
			readCount(t, g.p, bufs, sizes, 3)
		}
		round()
		if a := testing.AllocsPerRun(200, round); a != 0 {
			t.Fatalf("unixpacket Write+Read: %v allocations per run, want 0", a)
		}
	})
}

func BenchmarkUDPListenerIn1500(b *testing.B)      { benchDgramIn(b, UDP, 1500) }
func BenchmarkUnixgramListenerIn1500(b *testing.B) { benchDgramIn(b, Unixgram, 1500) }

// benchDgramIn sends batches from a dialed port (sendmmsg) to a listener
// peer port (recvmmsg, queue, Read). Frames lost to full socket buffers
// are not waited for: the figure is what arrives.
func benchDgramIn(b *testing.B, scheme Scheme, size int) {
	c := newCollector()
	addr := Addr{scheme, "127.0.0.1:0"}
	if scheme == Unixgram {
		addr.Target = sockPath(b, "bench")
	}
	l, err := Listen(context.Background(), addr, Options{}, c.onPort)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p, err := DialOnce(context.Background(), l.Addr(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	p.Write(outBufs(frame(0, size)), vswitch.Headroom)
	g := c.next(b)
	readFrames(b, g.p, 1)
	var frames [][]byte
	for i := 0; i < BatchSize; i++ {
		frames = append(frames, frame(i, size))
	}
	out := outBufs(frames...)
	var got int
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := batch(BatchSize)
		for {
			n, err := g.p.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				return
			}
			got += n
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Write(out, vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	el := b.Elapsed()
	g.p.Close()
	<-done
	b.ReportMetric(float64(got)/el.Seconds(), "frames/s")
	b.ReportMetric(float64(got)/float64(b.N*BatchSize)*100, "%delivered")
	b.ReportMetric(float64(l.(*dgramListener).Stats().QueueFull)/float64(b.N*BatchSize)*100, "%queuefull")
}

// TestRefusedPeerClosedByOnPort: a switch that closes the port it refuses
// still sees the peer offered once, not once per datagram; after the
// idle time the peer is offered again.
func TestRefusedPeerClosedByOnPort(t *testing.T) {
	var calls atomic.Int32
	opts := testOpts(t)
	opts.PeerIdle = 300 * time.Millisecond
	dl, cl := listenDialUDP(t, "127.0.0.1:0", opts, func(p vswitch.Port, name string) (<-chan struct{}, error) {
		calls.Add(1)
		p.Close()
		return nil, errors.New("refused")
	})
	for i := 0; i < 5; i++ {
		cl.Write(frame(i, 60))
	}
	deadline := time.Now().Add(testTimeout) // for all three waits
	waitUntil(t, deadline,
		func() bool { return dl.refused.Load() == 5 },
		func() string { return fmt.Sprintf("refused = %d, want 5", dl.refused.Load()) })
	if n := calls.Load(); n != 1 {
		t.Fatalf("onPort called %d times, want 1", n)
	}
	// Idle long enough: the tombstone goes, the peer is offered again.
	waitUntil(t, deadline,
		func() bool { return dl.Stats().Peers == 0 },
		func() string { return "tombstone never expired" })
	cl.Write(frame(9, 60))
	waitUntil(t, deadline,
		func() bool { return calls.Load() == 2 },
		func() string { return fmt.Sprintf("onPort calls = %d after expiry, want 2", calls.Load()) })
}

func TestReadNoBuffers(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := NewStreamPort(a, Options{})
	defer p.Close()
	if n, err := p.Read(nil, nil, vswitch.Headroom); n != 0 || err == nil {
		t.Fatalf("stream Read(nil) = %d, %v; want an error", n, err)
	}
	path := sockPath(t, "nb")
	c := newCollector()
	listenT(t, Addr{Unixpacket, path}, c)
	q, err := DialOnce(context.Background(), Addr{Unixpacket, path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if n, err := q.Read(nil, nil, vswitch.Headroom); n != 0 || err == nil {
		t.Fatalf("packet Read(nil) = %d, %v; want an error", n, err)
	}
}
