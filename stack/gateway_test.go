package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/stack/dhcp"
	"github.com/corralnet/corral/stack/dns/dnstest"
	mdns "github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

var (
	guestMAC  = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	guestMAC2 = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}
	guestIP   = netip.MustParseAddr("10.0.2.15")
	bcastMAC  = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Fence: 1}, true},
		{"no fence", Config{}, false},
		{"fence too big", Config{Fence: 0xFFFFFF}, false},
		{"v6 subnet", Config{Fence: 1, Subnet: netip.MustParsePrefix("fd00::/64")}, false},
		{"tiny subnet", Config{Fence: 1, Subnet: netip.MustParsePrefix("10.0.0.0/30")}, false},
		{"multicast mac", Config{Fence: 1, MAC: [6]byte{1, 0, 0x5e, 0, 0, 1}}, false},
		{"mtu low", Config{Fence: 1, MTU: 100}, false},
		{"mtu jumbo", Config{Fence: 1, MTU: 65520}, true},
		{"bad domain", Config{Fence: 1, Domain: "a..b"}, false},
		{"bad resolver", Config{Fence: 1, Resolvers: []netip.AddrPort{{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefaultMACFromFence(t *testing.T) {
	c := Config{Fence: 0x010203}.withDefaults()
	want := [6]byte{0x52, 0x55, 0x0a, 1, 2, 3}
	if c.MAC != want {
		t.Fatalf("MAC = %x, want %x", c.MAC, want)
	}
	if c.MAC[0]&2 == 0 || c.MAC[0]&1 != 0 {
		t.Fatalf("MAC %x is not locally administered unicast", c.MAC)
	}
}

// TestARP: the gateway answers ARP for .2 and .3 only (its NIC spoofs).
func TestARP(t *testing.T) {
	g := newTestGateway(t, Config{})
	r := newFrameReader(g)
	for _, tc := range []struct {
		target netip.Addr
		want   bool
	}{
		{netip.MustParseAddr("10.0.2.2"), true},
		{netip.MustParseAddr("10.0.2.3"), true},
		{netip.MustParseAddr("10.0.2.16"), false},
		{netip.MustParseAddr("192.0.2.1"), false},
	} {
		writeFrame(t, g, arpRequest(guestMAC, guestIP, tc.target))
		timeout := 5 * time.Second
		if !tc.want {
			timeout = 300 * time.Millisecond
		}
		f := r.next(timeout, isARPReplyFor(tc.target))
		if (f != nil) != tc.want {
			t.Fatalf("ARP reply for %v: got %v, want %v", tc.target, f != nil, tc.want)
		}
		if f != nil {
			a := header.ARP(f[header.EthernetMinimumSize:])
			if [6]byte(a.HardwareAddressSender()) != g.MAC() {
				t.Fatalf("ARP reply MAC %x, want %x", a.HardwareAddressSender(), g.MAC())
			}
		}
	}
	if g.Stats().InFiltered < 2 {
		t.Fatalf("InFiltered = %d, want >= 2 (filtered ARP requests)", g.Stats().InFiltered)
	}
}

// TestWriteFiltersForeignUnicast: unicast frames to another MAC are
// dropped and counted, runts too.
func TestWriteFiltersForeignUnicast(t *testing.T) {
	g := newTestGateway(t, Config{})
	other := [6]byte{0x52, 0x54, 0, 0, 0, 9}
	writeFrame(t, g, udpFrame(guestMAC, other, netip.MustParseAddrPort("10.0.2.15:1000"), netip.MustParseAddrPort("10.0.2.16:53"), []byte("x")))
	writeFrame(t, g, []byte{1, 2, 3})
	if st := g.Stats(); st.InFiltered != 1 || st.InDrops != 1 {
		t.Fatalf("InFiltered = %d, InDrops = %d, want 1 and 1", st.InFiltered, st.InDrops)
	}
}

// ping sends ICMP echo requests from the guest to dst until a reply comes
// or timeout passes.
func ping(t *testing.T, gs *guest, dst netip.Addr, timeout time.Duration) bool {
	t.Helper()
	var wq waiter.Queue
	ep, err := gs.s.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if err != nil {
		t.Fatalf("icmp endpoint: %v", err)
	}
	defer ep.Close()
	req := make([]byte, header.ICMPv4MinimumSize+4)
	icmpHdr := header.ICMPv4(req)
	icmpHdr.SetType(header.ICMPv4Echo)
	icmpHdr.SetSequence(1)
	copy(req[header.ICMPv4MinimumSize:], "ping")
	to := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(dst.As4())}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		// The first write may fail while ARP resolves; retry.
		if _, err := ep.Write(bytes.NewReader(req), tcpip.WriteOptions{To: &to}); err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for i := 0; i < 20; i++ {
			var buf bytes.Buffer
			if _, err := ep.Read(&buf, tcpip.ReadOptions{}); err == nil {
				rep := header.ICMPv4(buf.Bytes())
				if rep.Type() == header.ICMPv4EchoReply && bytes.Equal(rep.Payload(), []byte("ping")) {
					return true
				}
			} else {
				time.Sleep(25 * time.Millisecond)
			}
		}
	}
	return false
}

func TestPingGateway(t *testing.T) {
	g := newTestGateway(t, Config{Deny: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	gs := newGuest(t, g, guestMAC, guestIP)
	for _, dst := range []netip.Addr{g.Addr(), g.DNSAddr()} {
		if !ping(t, gs, dst, 10*time.Second) {
			t.Fatalf("no echo reply from %v", dst)
		}
	}
	// A denied destination gets no reply (not a fake one from the stack).
	if ping(t, gs, netip.MustParseAddr("198.51.100.7"), time.Second) {
		t.Fatal("echo reply from a denied destination")
	}
	if g.Stats().ICMPDropped == 0 {
		t.Fatal("denied echo request not counted")
	}
}

// TestICMPEchoNAT: with raw sockets (root), a ping of the gateway's
// address is relayed to the host's loopback and the reply comes back.
func TestICMPEchoNAT(t *testing.T) {
	needRoot(t, "raw ICMP sockets")
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	if !ping(t, gs, g.Addr(), 10*time.Second) {
		t.Fatal("no echo reply through ICMP NAT")
	}
	st := g.Stats()
	if st.ICMPRelayed == 0 || st.ICMPReplies == 0 {
		t.Fatalf("stats %+v: echo not relayed through the host", st)
	}
}

// dhcpExchange sends one DHCP request frame and returns the reply.
func dhcpExchange(t *testing.T, g *Gateway, r *frameReader, typ dhcp.MessageType, xid uint32, mac [6]byte, opts ...[]byte) dhcp.Message {
	t.Helper()
	m := make([]byte, dhcp.HeaderSize, 512)
	dhcp.Message(m).Encode(&dhcp.MessageFields{Op: dhcp.OpRequest, XID: xid, CHAddr: mac})
	b := dhcp.AppendOption(m, dhcp.OptMessageType, byte(typ))
	for _, o := range opts {
		b = append(b, o...)
	}
	b = append(b, dhcp.OptEnd)
	writeFrame(t, g, udpFrame(mac, bcastMAC, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"), b))
	f := r.next(10*time.Second, func(f []byte) bool {
		p := udpPayload(f, 67, 68)
		return p != nil && dhcp.Message(p).Validate() == nil && dhcp.Message(p).XID() == xid
	})
	if f == nil {
		t.Fatalf("no DHCP reply to %v", typ)
	}
	return dhcp.Message(udpPayload(f, 67, 68))
}

func TestDHCPThroughStack(t *testing.T) {
	dir := t.TempDir()
	g := newTestGateway(t, Config{StateDir: dir, MTU: 1454})
	r := newFrameReader(g)
	offer := dhcpExchange(t, g, r, dhcp.Discover, 1, guestMAC)
	if typ, _ := offer.Type(); typ != dhcp.Offer || offer.YIAddr() != guestIP {
		t.Fatalf("offer: type %v yiaddr %v, want OFFER %v", typ, offer.YIAddr(), guestIP)
	}
	if sid, _ := offer.AddrOption(dhcp.OptServerID); sid != g.Addr() {
		t.Fatalf("server id %v, want %v", sid, g.Addr())
	}
	if mtu, ok := offer.Option(dhcp.OptMTU); !ok || int(mtu[0])<<8|int(mtu[1]) != 1454 {
		t.Fatalf("MTU option %v %v, want 1454", mtu, ok)
	}
	ack := dhcpExchange(t, g, r, dhcp.Request, 2, guestMAC,
		dhcp.AppendAddrOption(nil, dhcp.OptRequestedIP, guestIP),
		dhcp.AppendAddrOption(nil, dhcp.OptServerID, g.Addr()),
		dhcp.AppendOption(nil, dhcp.OptHostname, []byte("vm1")...))
	if typ, _ := ack.Type(); typ != dhcp.Ack || ack.YIAddr() != guestIP {
		t.Fatalf("ack: type %v yiaddr %v", typ, ack.YIAddr())
	}
	if rt, _ := ack.AddrOption(dhcp.OptRouter); rt != g.Addr() {
		t.Fatalf("router %v", rt)
	}
	if d, _ := ack.AddrOption(dhcp.OptDNS); d != g.DNSAddr() {
		t.Fatalf("dns %v", d)
	}
	if d, _ := ack.Option(dhcp.OptDomainName); string(d) != DefaultDomain {
		t.Fatalf("domain %q", d)
	}
	data, err := os.ReadFile(filepath.Join(dir, "leases-7.json"))
	if err != nil || !strings.Contains(string(data), `"vm1"`) || !strings.Contains(string(data), "10.0.2.15") {
		t.Fatalf("lease file: %v %s", err, data)
	}
	// A second MAC gets the next address; the first keeps its own.
	offer2 := dhcpExchange(t, g, r, dhcp.Discover, 3, guestMAC2)
	if offer2.YIAddr() != netip.MustParseAddr("10.0.2.16") {
		t.Fatalf("second offer %v", offer2.YIAddr())
	}
	again := dhcpExchange(t, g, r, dhcp.Discover, 4, guestMAC)
	if again.YIAddr() != guestIP {
		t.Fatalf("re-discover got %v, want stable %v", again.YIAddr(), guestIP)
	}
	g.Close()

	// Restart: the lease survives.
	g2 := newTestGateway(t, Config{StateDir: dir})
	r2 := newFrameReader(g2)
	if o := dhcpExchange(t, g2, r2, dhcp.Discover, 5, guestMAC); o.YIAddr() != guestIP {
		t.Fatalf("after restart offer %v, want %v", o.YIAddr(), guestIP)
	}
}

func TestTCPNATToHostLoopback(t *testing.T) {
	srv := echoTCP(t, "host:")
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	ctx := ctxT(t, 20*time.Second)
	c, err := gonet.DialContextTCP(ctx, gs.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: srv.Port()}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial through NAT: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	big := bytes.Repeat([]byte("x"), 200000)
	go c.Write(append([]byte("hello\n"), big...))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "host:hello\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	if g.Stats().TCPConns != 1 {
		t.Fatalf("TCPConns = %d, want 1", g.Stats().TCPConns)
	}

	// A closed port is refused with a reset.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	_, err = gonet.DialContextTCP(ctx, gs.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: closed.Port()}, ipv4.ProtocolNumber)
	if err == nil {
		t.Fatal("dial to a closed host port succeeded")
	}
	if g.Stats().TCPRefused == 0 {
		t.Fatal("TCPRefused not counted")
	}
}

func TestUDPNATToHostLoopback(t *testing.T) {
	srv := echoUDP(t, "host:")
	g := newTestGateway(t, Config{UDPIdleTimeout: 500 * time.Millisecond})
	gs := newGuest(t, g, guestMAC, guestIP)
	c, err := gonet.DialUDP(gs.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: srv.Port()}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no UDP echo through NAT")
		}
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if string(buf[:n]) != "host:ping" {
				t.Fatalf("echo %q", buf[:n])
			}
			break
		}
	}
	if g.Stats().UDPFlows != 1 {
		t.Fatalf("UDPFlows = %d, want 1", g.Stats().UDPFlows)
	}
	// The idle flow ends and releases its host socket.
	deadline = time.Now().Add(10 * time.Second)
	for g.Stats().UDPFlows != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("UDP flow not expired after idle timeout: %d flows", g.Stats().UDPFlows)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNATLimits: a guest opening more flows than the fence's limits gets
// refusals, counted, and the gateway holds at most the limit of host
// sockets. (Per-guest limits: TestNATFairness.)
func TestNATLimits(t *testing.T) {
	srv := echoTCP(t, "")
	g := newTestGateway(t, Config{MaxTCPConns: 2, MaxUDPFlows: 3, MaxTCPConnsPerGuest: 2, MaxUDPFlowsPerGuest: 3})
	gs := newGuest(t, g, guestMAC, guestIP)
	ctx := ctxT(t, 30*time.Second)
	to := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: srv.Port()}
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := gonet.DialContextTCP(ctx, gs.s, to, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if _, err := gonet.DialContextTCP(ctx, gs.s, to, ipv4.ProtocolNumber); err == nil {
		t.Fatal("third connection accepted beyond MaxTCPConns=2")
	}
	st := g.Stats()
	if st.TCPConns != 2 || st.TCPRefused == 0 || st.TCPRefusals[RefusedLimitGuest] == 0 {
		// Guest and fence limits are equal: the guest's is checked first.
		t.Fatalf("stats %+v: want 2 conns and limit_guest refusals", st)
	}
	for _, c := range conns {
		c.Close()
	}

	// UDP "port scan": 10 destination ports, at most 3 flows.
	for p := 0; p < 10; p++ {
		c, err := gonet.DialUDP(gs.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: uint16(40000 + p)}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.Stats().UDPFlows+int64(g.Stats().UDPRefused) < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st = g.Stats()
	if st.UDPFlows > 3 || st.UDPRefused < 7 || st.UDPRefusals[RefusedLimitGuest] < 7 {
		t.Fatalf("stats %+v: want <= 3 UDP flows and >= 7 refused (limit_guest)", st)
	}
}

// dnsQuery asks the gateway's DNS (at .3) from the guest.
func dnsQuery(t *testing.T, gs *guest, g *Gateway, name string) *mdns.Msg {
	t.Helper()
	c, err := gonet.DialUDP(gs.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.DNSAddr().As4()), Port: 53}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &mdns.Conn{Conn: c}
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeA)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		r, err := co.ReadMsg()
		if err == nil {
			return r
		}
	}
	t.Fatalf("no DNS answer for %s", name)
	return nil
}

func TestDNSForwardAndLeaseNames(t *testing.T) {
	res := dnstest.Resolver(t, map[string]netip.Addr{"example.test.": netip.MustParseAddr("192.0.2.80")})
	// Lease "Web-1" on a first gateway (frames written directly), then a
	// restarted gateway with a guest stack attached answers its name from
	// the persisted lease.
	dir := t.TempDir()
	g := newTestGateway(t, Config{Resolvers: []netip.AddrPort{res}, Domain: "lab.test", StateDir: dir, Fence: 9})
	r := newFrameReader(g)
	dhcpExchange(t, g, r, dhcp.Discover, 1, guestMAC)
	dhcpExchange(t, g, r, dhcp.Request, 2, guestMAC,
		dhcp.AppendAddrOption(nil, dhcp.OptRequestedIP, guestIP),
		dhcp.AppendOption(nil, dhcp.OptHostname, []byte("Web-1")...))
	g.Close()
	g = newTestGateway(t, Config{Resolvers: []netip.AddrPort{res}, Domain: "lab.test", StateDir: dir, Fence: 9})
	gs := newGuest(t, g, guestMAC, guestIP)

	m := dnsQuery(t, gs, g, "web-1.lab.test.")
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "10.0.2.15" {
		t.Fatalf("lease name: %v", m)
	}
	m = dnsQuery(t, gs, g, "host.lab.test.")
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "10.0.2.2" {
		t.Fatalf("host name: %v", m)
	}
	m = dnsQuery(t, gs, g, "nosuch.lab.test.")
	if m.Rcode != mdns.RcodeNameError {
		t.Fatalf("unknown lease name: rcode %v", m.Rcode)
	}
	m = dnsQuery(t, gs, g, "example.test.")
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "192.0.2.80" {
		t.Fatalf("forwarded: %v", m)
	}
}

// guestEcho serves TCP and UDP echo with a prefix on the guest's port.
func guestEcho(t *testing.T, gs *guest, port uint16, prefix string) {
	t.Helper()
	ln, err := gonet.ListenTCP(gs.s, tcpip.FullAddress{NIC: 1, Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln, prefix)
	pc, err := gonet.DialUDP(gs.s, &tcpip.FullAddress{NIC: 1, Port: port}, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	serveEchoPacket(t, pc, prefix)
}

func tcpRoundTrip(addr string, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func udpRoundTrip(t *testing.T, addr string, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1024)
	for i := 0; i < 30; i++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	g := newTestGateway(t, Config{})
	g.Close()
	g.Close()
	if _, err := g.Read(make([][]byte, 1), make([]int, 1), 64); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := g.Write([][]byte{make([]byte, 100)}, 64); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, err := g.DialTCP(context.Background(), netip.MustParseAddrPort("10.0.2.15:1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("DialTCP after Close: %v", err)
	}
}

func TestNATPolicy(t *testing.T) {
	srv := echoTCP(t, "")
	g := newTestGateway(t, Config{Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	gs := newGuest(t, g, guestMAC, guestIP)
	ctx := ctxT(t, 20*time.Second)
	to := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: srv.Port()}
	if _, err := gonet.DialContextTCP(ctx, gs.s, to, ipv4.ProtocolNumber); err == nil {
		t.Fatal("denied destination reached")
	}
	if g.Stats().TCPRefused != 1 {
		t.Fatalf("TCPRefused = %d, want 1", g.Stats().TCPRefused)
	}
	for _, tc := range []struct {
		allow, deny []string
		ip          string
		want        bool
	}{
		{nil, nil, "198.51.100.1", true},
		{[]string{"198.51.100.0/24"}, nil, "198.51.100.1", true},
		{[]string{"198.51.100.0/24"}, nil, "192.0.2.1", false},
		{[]string{"198.51.100.0/24"}, []string{"198.51.100.128/25"}, "198.51.100.200", false},
	} {
		var c Config
		for _, a := range tc.allow {
			c.Allow = append(c.Allow, netip.MustParsePrefix(a))
		}
		for _, d := range tc.deny {
			c.Deny = append(c.Deny, netip.MustParsePrefix(d))
		}
		gw := &Gateway{cfg: c}
		if got := gw.policyAllows(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("allow %v deny %v: %s allowed=%v, want %v", tc.allow, tc.deny, tc.ip, got, tc.want)
		}
	}
}

// TestTCPNATBulkIntegrity moves 8 MiB each way through the NAT and checks
// the bytes: GRO on input and GSO splitting on output must not corrupt or
// reorder anything.
func TestTCPNATBulkIntegrity(t *testing.T) {
	const size = 8 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	sum := sha256.Sum256(payload)
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		// Close only once the write is done: closing while it blocks
		// would cut the host→guest stream short (the guest→host one may
		// well finish first).
		wrote := make(chan struct{})
		go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite(); close(wrote) }()
		io.CopyN(h, c, size)
		<-wrote
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
	}()
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	ctx := ctxT(t, 60*time.Second)
	c, err := gonet.DialContextTCP(ctx, gs.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()), Port: uint16(ln.Addr().(*net.TCPAddr).Port)}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go c.Write(payload)
	h := sha256.New()
	if _, err := io.CopyN(h, c, size); err != nil {
		t.Fatalf("host→guest: %v", err)
	}
	if !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatal("host→guest bytes differ")
	}
	select {
	case s := <-got:
		if s != sum {
			t.Fatal("guest→host bytes differ")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("guest→host transfer did not finish")
	}
	if g.ep.gsoSplits.Load() == 0 || gs.ep.gsoSplits.Load() == 0 {
		t.Fatalf("GSO splits: gateway %d guest %d, want both > 0", g.ep.gsoSplits.Load(), gs.ep.gsoSplits.Load())
	}
}
