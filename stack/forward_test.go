package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/corralnet/corral/forward"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Port forwards through package forward, with gateways as its Dialers:
// the tests that were the gateway's own forward tests before package
// forward took the host sockets, with their assertions.

var _ forward.Dialer = (*Gateway)(nil)

// newForwarder returns a forward.Forwarder with gws attached as their
// fences (closed on cleanup, before the gateways).
func newForwarder(t *testing.T, gws ...*Gateway) *forward.Forwarder {
	t.Helper()
	fw := forward.New(forward.Config{})
	t.Cleanup(func() { fw.Close() })
	for _, g := range gws {
		err := fw.AttachFence(g.cfg.Fence, forward.Fence{Name: g.cfg.FenceName, Dialer: g,
			Prefixes: g.Prefixes(), UDPIdleTimeout: g.cfg.UDPIdleTimeout})
		if err != nil {
			t.Fatal(err)
		}
	}
	return fw
}

// addForward adds f (Fence set to g's) and returns it as running, its
// listen port bound.
func addForward(t *testing.T, fw *forward.Forwarder, g *Gateway, f forward.Forward) forward.Forward {
	t.Helper()
	f.Fence = g.cfg.Fence
	got, err := fw.Add(f)
	if err != nil {
		t.Fatalf("Add %v: %v", f, err)
	}
	if got.Listen.Port() == 0 {
		t.Fatalf("forward %v: port 0 reported", got)
	}
	return got
}

// addTCPForward adds a TCP forward from listen to guestIP:port.
func addTCPForward(t *testing.T, fw *forward.Forwarder, g *Gateway, listen string, port uint16) forward.Forward {
	t.Helper()
	return addForward(t, fw, g, forward.Forward{Proto: "tcp", Listen: netip.MustParseAddrPort(listen), Target: netip.AddrPortFrom(guestIP, port)})
}

// waitStats polls g.Stats until cond holds or fails after 10 s.
func waitStats(t *testing.T, g *Gateway, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(g.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, g.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectClosed fails unless c's peer closes (EOF or reset) within 10 s.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open", what)
	}
}

// firstRoundTrip polls tcpRoundTrip through addr until it answers want:
// the first dial into a fence waits for the gateway to resolve the guest's
// MAC (ARP), which a loaded machine can delay past gVisor's 3 s neighbor
// timeout (the dial then fails and the host connection is closed).
func firstRoundTrip(t *testing.T, addr, msg, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := tcpRoundTrip(addr, msg)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("round trip through %s: got %q, %v; want %q", addr, got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bigGuestWindow gives the guest's TCP connections a receive buffer
// larger than what a test sends them. A gVisor receiver whose buffer
// fills advertises a zero window even where it had allowed more (it
// shrinks its window) and tail-drops what no longer fits; its
// acceptability test then takes every segment of the sender, whose
// SND.NXT is now past RCV.NXT, as out of window and drops it ACK and all
// (gVisor's receiver.acceptable, against RFC 793's "special allowance
// should be made to accept valid ACKs" when the window is zero). An echo
// server in such a guest (it reads only after its write returns) then
// never learns that its own data was acknowledged: its send buffer stays
// full, it never reads again, its window never reopens. Linux neither
// shrinks its window nor ignores those ACKs, so this is a deadlock of
// gVisor-to-gVisor test topologies only; see the report of issue 8 item 8.
func bigGuestWindow(t *testing.T, gs *guest) {
	t.Helper()
	rx := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: 16 << 20, Max: 16 << 20}
	if err := gs.s.SetTransportProtocolOption(tcp.ProtocolNumber, &rx); err != nil {
		t.Fatalf("guest receive buffer: %v", err)
	}
}

func TestTCPForwardListenErrors(t *testing.T) {
	g := newTestGateway(t, Config{})
	fw := newForwarder(t, g)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := forward.Forward{Fence: g.cfg.Fence, Proto: "tcp", Listen: busy.Addr().(*net.TCPAddr).AddrPort(), Target: netip.AddrPortFrom(guestIP, 22)}
	_, err = fw.Add(f)
	if err == nil || errors.Is(err, forward.ErrExists) || errors.Is(err, forward.ErrConflict) {
		t.Fatalf("Add on a busy address: %v", err)
	}
	if fs := fw.Forwards(g.cfg.Fence); len(fs) != 0 {
		t.Fatalf("Forwards after failed add = %v", fs)
	}
	// The same address with the other protocol is a different forward.
	f.Proto = "udp"
	if _, err := fw.Add(f); err != nil {
		t.Fatalf("udp forward on the tcp port: %v", err)
	}
	// Outside the fence's subnets: refused.
	f.Proto, f.Listen, f.Target = "tcp", netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("192.0.2.1:22")
	if _, err := fw.Add(f); !errors.Is(err, forward.ErrInvalid) {
		t.Fatalf("Add with a target outside the subnet: %v", err)
	}
}

func TestTCPForwardHalfCloseAndBulk(t *testing.T) {
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	bigGuestWindow(t, gs)
	guestEcho(t, gs, 8080, "")
	fw := newForwarder(t, g)
	listens := []string{"127.0.0.1:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		listens = append(listens, "[::1]:0")
	} else {
		t.Logf("no IPv6 loopback, host side tested on IPv4 only: %v", err)
	}
	for _, l := range listens {
		f := addTCPForward(t, fw, g, l, 8080)
		c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		data := make([]byte, 4<<20)
		rand.Read(data)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				// The echo ends when it reads EOF: only a half-close
				// carried through the forward ends the read below.
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if werr := <-errc; werr != nil {
			t.Fatalf("%s: write: %v", l, werr)
		}
		if err != nil || !bytes.Equal(got, data) {
			st := g.Stats()
			t.Fatalf("%s: echoed %d of %d bytes, equal %v, err %v (gateway out drops %d, guest out drops %d)",
				l, len(got), len(data), bytes.Equal(got, data), err, st.OutDrops, gs.ep.outDrops.Load())
		}
		c.Close()
	}
	waitStats(t, g, "connections released", func(s Stats) bool { return s.TCPConns == 0 })
}

func TestTCPForwardLimitRemoveAndDialFailure(t *testing.T) {
	g := newTestGateway(t, Config{MaxTCPConns: 2})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "e:")
	fw := newForwarder(t, g)
	f := addTCPForward(t, fw, g, "127.0.0.1:0", 8080)
	firstRoundTrip(t, f.Listen.String(), "x", "e:x")
	waitStats(t, g, "warm-up connection released", func(s Stats) bool { return s.TCPConns == 0 })

	var open []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 16)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "e:x" {
			t.Fatalf("conn %d: %q %v", i, buf[:n], err)
		}
		open = append(open, c)
	}
	if st := g.Stats(); st.TCPConns != 2 {
		t.Fatalf("stats %+v: want 2 connections", st)
	}
	// A third is accepted by the kernel, then closed and counted.
	c3, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	expectClosed(t, c3, "connection beyond MaxTCPConns")
	if st := g.Stats(); st.TCPConns != 2 || st.TCPRefused == 0 {
		t.Fatalf("stats %+v: want 2 connections and a refusal", st)
	}
	if st := fw.Stats(); st.DialErrors == 0 {
		t.Fatalf("forwarder stats %+v: want a dial error", st)
	}

	// Removing the forward closes its connections before returning.
	if err := fw.Remove(f); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.TCPConns != 0 {
		t.Fatalf("stats after Remove %+v: want 0 connections", st)
	}
	for _, c := range open {
		expectClosed(t, c, "connection of a removed forward")
	}
	if _, err := net.DialTimeout("tcp", f.Listen.String(), 2*time.Second); err == nil {
		t.Fatal("removed forward's address still accepts")
	}
	if err := fw.Remove(f); !errors.Is(err, forward.ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}

	// A target nothing listens on: the host connection is closed.
	f2 := addTCPForward(t, fw, g, "127.0.0.1:0", 9)
	c, err := net.DialTimeout("tcp", f2.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c, "connection to a closed target port")
	waitStats(t, g, "failed dial released", func(s Stats) bool { return s.TCPConns == 0 })
}

func TestTCPForwardGatewayCloseWithOpenConn(t *testing.T) {
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "")
	fw := newForwarder(t, g)
	f := addTCPForward(t, fw, g, "127.0.0.1:0", 8080)
	firstRoundTrip(t, f.Listen.String(), "hi", "hi")
	c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitStats(t, g, "connection accepted", func(s Stats) bool { return s.TCPConns == 1 })
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs with an open forwarded connection")
	}
	expectClosed(t, c, "connection after gateway Close")
	if st := g.Stats(); st.TCPConns != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	// The forward is still there, its dials fail: connections close.
	c2, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	expectClosed(t, c2, "connection to a closed gateway")
	fw.DetachFence(g.cfg.Fence)
	if fs := fw.Forwards(g.cfg.Fence); len(fs) != 0 {
		t.Fatalf("forwards after DetachFence: %v", fs)
	}
}

// TestPortForwardsAndIsolation: two gateways with identical subnets, a
// guest with the same IP behind each, reached on two host ports, and on
// one host port by HTTP Host; forwards added and removed at run time.
func TestPortForwardsAndIsolation(t *testing.T) {
	var addrs, udpAddrs [2]forward.Forward
	var gws [2]*Gateway
	for i, name := range []string{"A", "B"} {
		g := newTestGateway(t, Config{Fence: uint32(10 + i), FenceName: name})
		gs := newGuest(t, g, guestMAC, guestIP)
		guestEcho(t, gs, 8080, name+":")
		gws[i] = g
	}
	fw := newForwarder(t, gws[:]...)
	for i, g := range gws {
		addrs[i] = addTCPForward(t, fw, g, "127.0.0.1:0", 8080)
		udpAddrs[i] = addForward(t, fw, g, forward.Forward{Proto: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.AddrPortFrom(guestIP, 8080)})
		if fs := fw.Forwards(g.cfg.Fence); len(fs) != 2 {
			t.Fatalf("Forwards = %v", fs)
		}
	}
	for i, name := range []string{"A", "B"} {
		firstRoundTrip(t, addrs[i].Listen.String(), "hi", name+":hi")
		if got := udpRoundTrip(t, udpAddrs[i].Listen.String(), "yo"); got != name+":yo" {
			t.Fatalf("udp forward %d: %q", i, got)
		}
	}
	if _, err := fw.Add(addrs[0]); !errors.Is(err, forward.ErrExists) {
		t.Fatalf("duplicate Add: %v", err)
	}
	other := addrs[0]
	other.Fence = gws[1].cfg.Fence
	if _, err := fw.Add(other); !errors.Is(err, forward.ErrConflict) {
		t.Fatalf("Add of fence A's listen address to fence B: %v", err)
	}
	if err := fw.Remove(addrs[0]); err != nil {
		t.Fatal(err)
	}
	if err := fw.Remove(addrs[0]); !errors.Is(err, forward.ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := tcpRoundTrip(addrs[0].Listen.String(), "hi"); err == nil {
		t.Fatal("removed forward still answers")
	}
	if got, err := tcpRoundTrip(addrs[1].Listen.String(), "hi"); err != nil || got != "B:hi" {
		t.Fatalf("other fence's forward after removal: %q %v", got, err)
	}

	// One host port, both fences, by HTTP Host: each request reaches its
	// own fence's guest (same IP in both).
	shared := addForward(t, fw, gws[0], forward.Forward{Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"),
		Target: netip.AddrPortFrom(guestIP, 8080), Host: "lab-a.test"})
	addForward(t, fw, gws[1], forward.Forward{Proto: "tcp", Listen: shared.Listen, Target: netip.AddrPortFrom(guestIP, 8080), Host: "LAB-B.test."})
	for _, tc := range []struct{ host, want string }{{"lab-a.test", "A:"}, {"lab-b.test:" + fmt.Sprint(shared.Listen.Port()), "B:"}} {
		req := "GET / HTTP/1.1\r\nHost: " + tc.host + "\r\n\r\n"
		got, err := readBack(shared.Listen.String(), req, len(tc.want+req))
		if err != nil || got != tc.want+req {
			t.Errorf("Host %s: got %q, %v; want the echo of fence %s", tc.host, got, err, tc.want)
		}
	}
}

// readBack sends msg to addr and reads n bytes back.
func readBack(addr, msg string, n int) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	b := make([]byte, n)
	m, err := io.ReadFull(c, b)
	return string(b[:m]), err
}

// TestDialLimitsAndClose: DialTCP and DialUDP count against the NAT's
// limits, refuse beyond them (counted), fail after Close.
func TestDialLimitsAndClose(t *testing.T) {
	g := newTestGateway(t, Config{MaxTCPConns: 1, MaxUDPFlows: 1, NoIPv6: true})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "")
	ctx := ctxT(t, 20*time.Second)
	target := netip.AddrPortFrom(guestIP, 8080)
	c, err := g.DialTCP(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.DialTCP(ctx, target); !errors.Is(err, ErrLimit) {
		t.Fatalf("second DialTCP: %v, want ErrLimit", err)
	}
	u, err := g.DialUDP(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.DialUDP(target); !errors.Is(err, ErrLimit) {
		t.Fatalf("second DialUDP: %v, want ErrLimit", err)
	}
	if st := g.Stats(); st.TCPConns != 1 || st.UDPFlows != 1 || st.TCPRefused != 1 || st.UDPRefused != 1 {
		t.Fatalf("stats %+v: want 1 connection, 1 flow, 1 refusal each", st)
	}
	if _, err := g.DialTCP(ctx, netip.MustParseAddrPort("[fd00::15]:80")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("DialTCP to IPv6 with IPv6 off: %v", err)
	}
	// Half-close reaches the guest: the echo ends, the read sees EOF.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	if b, err := io.ReadAll(bufio.NewReader(c)); err != nil || string(b) != "ping" {
		t.Fatalf("echo after half-close: %q %v", b, err)
	}
	c.Close()
	c.Close()
	u.Close()
	if st := g.Stats(); st.TCPConns != 0 || st.UDPFlows != 0 {
		t.Fatalf("stats after Close of both %+v", st)
	}
	c, err = g.DialTCP(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still readable after the gateway closed")
	}
	if st := g.Stats(); st.TCPConns != 0 {
		t.Fatalf("stats after gateway Close %+v", st)
	}
	if _, err := g.DialTCP(context.Background(), target); err == nil {
		t.Fatal("DialTCP after Close succeeded")
	}
	if _, err := g.DialUDP(target); err == nil {
		t.Fatal("DialUDP after Close succeeded")
	}
}
