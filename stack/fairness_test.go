package stack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

var guestIP2 = netip.MustParseAddr("10.0.2.16")

// dialNAT connects from gs to the host port through the gateway's address.
func dialNAT(t *testing.T, g *Gateway, gs *guest, port uint16) (net.Conn, error) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	return gonet.DialContextTCP(ctx, gs.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: port}, ipv4.ProtocolNumber)
}

// roundTrip writes msg on c and reads the echo.
func roundTrip(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// udpFlowFrom opens a UDP flow from gs to the host port through the
// gateway and sends one datagram; the caller closes it.
func udpFlowFrom(t *testing.T, g *Gateway, gs *guest, port uint16) *gonet.UDPConn {
	t.Helper()
	c, err := gonet.DialUDP(gs.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNATFairness: one guest's TCP and UDP scans fill at most its share of
// the fence's NAT (a quarter by default); another guest of the fence still
// connects; a guest that closes its connections frees its slots.
func TestNATFairness(t *testing.T) {
	srv := echoTCP(t, "")
	g := newTestGateway(t, Config{MaxTCPConns: 8, MaxUDPFlows: 8}) // 2 each per guest
	gss := newGuests(t, g, []guestSpec{{guestMAC, guestIP}, {guestMAC2, guestIP2}})
	a, b := gss[0], gss[1]

	// A scans: 10 connections, 2 get through.
	var conns []net.Conn
	for i := 0; i < 10; i++ {
		if c, err := dialNAT(t, g, a, srv.Port()); err == nil {
			conns = append(conns, c)
		}
	}
	st := g.Stats()
	if len(conns) != 2 || st.TCPConns != 2 || st.TCPRefusals[RefusedLimitGuest] != 8 {
		t.Fatalf("guest A's scan: %d connections; stats %+v; want 2 and 8 limit_guest refusals", len(conns), st)
	}
	// B still gets its share.
	for i := 0; i < 2; i++ {
		c, err := dialNAT(t, g, b, srv.Port())
		if err != nil {
			t.Fatalf("guest B, connection %d, during A's scan: %v", i, err)
		}
		if got, err := roundTrip(c, "b"); err != nil || got != "b" {
			t.Fatalf("guest B echo: %q %v", got, err)
		}
		defer c.Close()
	}
	if st := g.Stats(); st.TCPConns != 4 || st.NATGuests != 2 {
		t.Fatalf("stats %+v: want 4 connections of 2 guests", st)
	}
	// A closes its side: the host closes too, the slots are free.
	for _, c := range conns {
		c.Close()
	}
	waitStats(t, g, "guest A's connections released", func(s Stats) bool { return s.TCPConns == 2 })
	c, err := dialNAT(t, g, a, srv.Port())
	if err != nil {
		t.Fatalf("guest A after closing its connections: %v", err)
	}
	c.Close()

	// UDP: A's scan of 10 ports opens 2 flows; B's flow still works.
	echo := echoUDP(t, "u:")
	for p := 0; p < 10; p++ {
		c := udpFlowFrom(t, g, a, uint16(41000+p))
		c.Write([]byte("x"))
		c.Close()
	}
	waitStats(t, g, "guest A's UDP scan handled", func(s Stats) bool {
		return s.UDPFlows+int64(s.UDPRefused) >= 10
	})
	if st := g.Stats(); st.UDPFlows != 2 || st.UDPRefusals[RefusedLimitGuest] != 8 {
		t.Fatalf("guest A's UDP scan: stats %+v; want 2 flows and 8 limit_guest refusals", st)
	}
	bc := udpFlowFrom(t, g, b, echo.Port())
	defer bc.Close()
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		bc.Write([]byte("y"))
		bc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := bc.Read(buf); err == nil {
			if got := string(buf[:n]); got != "u:y" {
				t.Fatalf("guest B's UDP echo: %q", got)
			}
			break
		}
		if i == 30 {
			t.Fatalf("guest B's UDP flow during A's scan: no echo; stats %+v", g.Stats())
		}
	}
}

// TestNATGuestIsMAC: a guest is its source MAC, whatever source IPs it
// puts in its packets: SYNs from one MAC with six different addresses are
// one guest's (two get slots, four are refused), and another guest keeps
// its whole share.
func TestNATGuestIsMAC(t *testing.T) {
	srv := echoTCP(t, "")
	g := newTestGateway(t, Config{MaxTCPConns: 8}) // 2 per guest
	a := newGuest(t, g, guestMAC, guestIP)
	spoofer := [6]byte{0x52, 0x54, 0, 0, 0x66, 0x66}
	dst := netip.AddrPortFrom(g.Addr(), srv.Port())
	// Addresses nobody answers ARP for: the handshakes these SYNs start
	// hold their slots (the host side is dialed) for seconds.
	for i := 0; i < 6; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, 2, byte(100 + i)})
		src := netip.AddrPortFrom(ip, uint16(50000+i))
		writeFrame(t, g, ip4Frame(spoofer, g.MAC(), ip, g.Addr(), header.TCPProtocolNumber, tcpSYN(src, dst), uint16(i), 0, false))
	}
	waitStats(t, g, "SYNs from six addresses of one MAC handled", func(s Stats) bool {
		return s.TCPRefusals[RefusedLimitGuest] == 4
	})
	for i := 0; i < 2; i++ {
		c, err := dialNAT(t, g, a, srv.Port())
		if err != nil {
			t.Fatalf("guest A, connection %d: %v; stats %+v", i, err, g.Stats())
		}
		defer c.Close()
	}
}

// TestNATTCPIdleAndHalfClosed: a connection nothing moves on is closed
// after TCPIdleTimeout; one the guest half-closed, toward a host that
// never answers nor closes, is released too (min(TCPIdleTimeout,
// TCPHalfClosedTimeout)); one that carries traffic stays.
func TestNATTCPIdleAndHalfClosed(t *testing.T) {
	// A host server that accepts, never reads, never closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	})
	silent := uint16(ln.Addr().(*net.TCPAddr).Port)
	echo := echoTCP(t, "")
	const idle = 2 * time.Second
	g := newTestGateway(t, Config{TCPIdleTimeout: idle})
	gs := newGuest(t, g, guestMAC, guestIP)

	busy, err := dialNAT(t, g, gs, echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var busyErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(idle / 8):
			}
			if got, err := roundTrip(busy, "k"); err != nil || got != "k" {
				busyErr.Store(errors.New("busy connection broke: " + got + " " + errString(err)))
				return
			}
		}
	}()

	idleConn, err := dialNAT(t, g, gs, silent)
	if err != nil {
		t.Fatal(err)
	}
	defer idleConn.Close()
	half, err := dialNAT(t, g, gs, silent)
	if err != nil {
		t.Fatal(err)
	}
	if err := half.(*gonet.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitStats(t, g, "3 connections", func(s Stats) bool { return s.TCPConns == 3 })
	// The idle and the half-closed ones go, the busy one stays.
	waitStats(t, g, "idle and half-closed connections released", func(s Stats) bool { return s.TCPConns == 1 })
	idleConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, idleConn); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("idle connection not closed toward the guest")
		}
	}
	close(stop)
	<-done
	if e := busyErr.Load(); e != nil {
		t.Fatal(e)
	}
	if st := g.Stats(); st.TCPConns != 1 {
		t.Fatalf("stats %+v: the busy connection was closed", st)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestNATSelfAndHostLoopback: flows to a socket Config.IsSelf claims are
// refused and counted, TCP and UDP; with NoHostLoopback the gateway's
// address reaches nothing on the host (counted), is still pinged and
// named "gateway", and the name "host" no longer resolves.
func TestNATSelfAndHostLoopback(t *testing.T) {
	self := echoTCP(t, "self:")   // stands for a corral listener
	selfU := echoUDP(t, "self:")  // stands for the uplink
	other := echoTCP(t, "other:") // anything else on the host
	var asked atomic.Value
	isSelf := func(proto string, dst netip.AddrPort) bool {
		asked.Store(proto + " " + dst.String())
		return dst.Addr().IsLoopback() && (proto == "tcp" && dst.Port() == self.Port() || proto == "udp" && dst.Port() == selfU.Port())
	}
	g := newTestGateway(t, Config{IsSelf: isSelf})
	gs := newGuest(t, g, guestMAC, guestIP)
	if _, err := dialNAT(t, g, gs, self.Port()); err == nil {
		t.Fatal("connected to a corral socket through the gateway")
	}
	if got := asked.Load(); got != "tcp 127.0.0.1:"+itoa(self.Port()) {
		t.Fatalf("IsSelf asked about %v, want the host loopback address", got)
	}
	c, err := dialNAT(t, g, gs, other.Port())
	if err != nil {
		t.Fatalf("other host port: %v", err)
	}
	if got, err := roundTrip(c, "x"); err != nil || got != "other:x" {
		t.Fatalf("other host port: %q %v", got, err)
	}
	c.Close()
	u := udpFlowFrom(t, g, gs, selfU.Port())
	u.Write([]byte("x"))
	u.Close()
	waitStats(t, g, "self refusals", func(s Stats) bool {
		return s.TCPRefusals[RefusedSelf] >= 1 && s.UDPRefusals[RefusedSelf] >= 1
	})

	// Spoofed sources: not from the fence's subnet.
	st := g.Stats()
	out := netip.MustParseAddr("192.0.2.99")
	writeFrame(t, g, ip4Frame(guestMAC, g.MAC(), out, g.Addr(), header.TCPProtocolNumber,
		tcpSYN(netip.AddrPortFrom(out, 1234), netip.AddrPortFrom(g.Addr(), other.Port())), 1, 0, false))
	writeFrame(t, g, ip4Frame(guestMAC, g.MAC(), out, g.Addr(), header.UDPProtocolNumber,
		udpSeg(netip.AddrPortFrom(out, 1234), netip.AddrPortFrom(g.Addr(), selfU.Port()+1), []byte("x")), 2, 0, false))
	waitStats(t, g, "spoofed sources refused", func(s Stats) bool {
		return s.TCPRefusals[RefusedSource] == st.TCPRefusals[RefusedSource]+1 && s.UDPRefusals[RefusedSource] == st.UDPRefusals[RefusedSource]+1
	})

	// host_loopback off.
	g2 := newTestGateway(t, Config{Fence: 8, NoHostLoopback: true})
	gs2 := newGuest(t, g2, guestMAC, guestIP)
	if _, err := dialNAT(t, g2, gs2, other.Port()); err == nil {
		t.Fatal("host loopback reached with NoHostLoopback")
	}
	u2 := udpFlowFrom(t, g2, gs2, selfU.Port())
	u2.Write([]byte("x"))
	u2.Close()
	waitStats(t, g2, "host_loopback_off refusals", func(s Stats) bool {
		return s.TCPRefusals[RefusedHostLoopbackOff] >= 1 && s.UDPRefusals[RefusedHostLoopbackOff] >= 1
	})
	if !ping(t, gs2, g2.Addr(), 10*time.Second) {
		t.Fatal("gateway address not answering pings with NoHostLoopback")
	}
	if st := g2.Stats(); st.ICMPRelayed != 0 {
		t.Fatalf("ping of the gateway relayed to the host with NoHostLoopback: %+v", st)
	}
	if m := dnsQuery(t, gs2, g2, "host."+DefaultDomain+"."); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("host name with NoHostLoopback: %v", m)
	}
	if m := dnsQuery(t, gs2, g2, "gateway."+DefaultDomain+"."); len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != g2.Addr().String() {
		t.Fatalf("gateway name with NoHostLoopback: %v", m)
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}
