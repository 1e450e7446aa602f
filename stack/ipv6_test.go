package stack

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/corralnet/corral/forward"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// slaacAddr is the EUI-64 address of mac in prefix.
func slaacAddr(prefix netip.Prefix, mac [6]byte) netip.Addr {
	ll := header.LinkLocalAddr(tcpip.LinkAddress(mac[:])).As16()
	p := prefix.Addr().As16()
	copy(ll[:8], p[:8])
	return netip.AddrFrom16(ll)
}

func TestRouterAdvertisementFrame(t *testing.T) {
	g := newTestGateway(t, Config{MTU: 1454})
	f := g.buildRA()
	ip := header.IPv6(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.HopLimit() != 255 || ip.DestinationAddress() != header.IPv6AllNodesMulticastAddress {
		t.Fatalf("bad IPv6 header")
	}
	icmpHdr := header.ICMPv6(ip.Payload())
	if icmpHdr.Type() != header.ICMPv6RouterAdvert {
		t.Fatalf("type %v", icmpHdr.Type())
	}
	ra := header.NDPRouterAdvert(icmpHdr.MessageBody())
	if ra.RouterLifetime() != raRouterLifetime*time.Second {
		t.Fatalf("router lifetime %v", ra.RouterLifetime())
	}
	it, err := ra.Options().Iter(true)
	if err != nil {
		t.Fatal(err)
	}
	var gotPrefix, gotMTU, gotSLL, gotRDNSS, gotDNSSL bool
	for {
		o, done, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		switch o := o.(type) {
		case header.NDPPrefixInformation:
			gotPrefix = o.PrefixLength() == 64 && o.AutonomousAddressConfigurationFlag() && o.OnLinkFlag() &&
				netip.AddrFrom16(o.Prefix().As16()) == DefaultIPv6Prefix.Addr()
		case header.NDPSourceLinkLayerAddressOption:
			gotSLL = [6]byte([]byte(o.EthernetAddress())) == g.MAC()
		case header.NDPRecursiveDNSServer:
			addrs, err := o.Addresses()
			gotRDNSS = err == nil && len(addrs) == 1 && netip.AddrFrom16(addrs[0].As16()) == g.DNSAddr6()
		case header.NDPDNSSearchList:
			names, err := o.DomainNames()
			gotDNSSL = err == nil && len(names) == 1 && names[0] == DefaultDomain && o.Lifetime() == raDNSSLLifetime*time.Second
		}
	}
	mtuOpt := []byte(icmpHdr)[raHeaderSize+raSourceLLSize:]
	gotMTU = mtuOpt[0] == ndpOptMTU && binary.BigEndian.Uint32(mtuOpt[4:]) == 1454
	if !gotPrefix || !gotSLL || !gotMTU || !gotRDNSS || !gotDNSSL {
		t.Fatalf("options: prefix %v sll %v mtu %v rdnss %v dnssl %v", gotPrefix, gotSLL, gotMTU, gotRDNSS, gotDNSSL)
	}
	// Checksum verifies.
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmpHdr[:header.ICMPv6MinimumSize], Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
		PayloadCsum: checksum.Checksum(icmpHdr[header.ICMPv6MinimumSize:], 0),
		PayloadLen:  len(icmpHdr) - header.ICMPv6MinimumSize,
	})
	if icmpHdr.Checksum() != want {
		t.Fatalf("checksum %#x, want %#x", icmpHdr.Checksum(), want)
	}
}

// TestIPv6SLAACAndNAT: a gVisor guest configures its address from the
// gateway's RA and reaches the host's ::1 through the gateway's ::2; DNS
// answers at ::3.
func TestIPv6SLAACAndNAT(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("host has no ::1: %v", err)
	}
	serveEcho(t, ln, "v6host:")
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()

	g := newTestGateway(t, Config{})
	mac := guestMAC
	want := slaacAddr(DefaultIPv6Prefix, mac)
	ep := newLinkEndpoint(mac, 1500)
	ep.policy.allowARP = []netip.Addr{guestIP}
	ep.policy.allowNDP = []netip.Addr{netip.AddrFrom16(header.LinkLocalAddr(tcpip.LinkAddress(mac[:])).As16()), want}
	s := gstack.New(gstack.Options{
		NetworkProtocols: []gstack.NetworkProtocolFactory{ipv6.NewProtocolWithOptions(ipv6.Options{
			NDPConfigs: ipv6.NDPConfigurations{
				HandleRAs: ipv6.HandlingRAsAlwaysEnabled, DiscoverDefaultRouters: true, DiscoverOnLinkPrefixes: true,
				AutoGenGlobalAddresses: true, MaxRtrSolicitations: 5, RtrSolicitationInterval: 500 * time.Millisecond,
			},
			AutoGenLinkLocal: true,
		})},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol6},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("guest NIC: %v", err)
	}
	lan := &testLAN{stop: make(chan struct{})}
	toGuest, toGateway := lan.sink(ep), lan.sink(g)
	lan.reader(g, func([]byte) []*wireSink { return []*wireSink{toGuest} })
	lan.reader(ep, func([]byte) []*wireSink { return []*wireSink{toGateway} })
	t.Cleanup(func() {
		ep.closePort()
		g.Close()
		close(lan.stop)
		lan.wg.Wait()
		s.Close()
		s.Wait()
	})

	deadline := time.Now().Add(20 * time.Second)
	has := func() bool {
		for _, a := range s.NICInfo()[1].ProtocolAddresses {
			if netip.AddrFrom16(a.AddressWithPrefix.Address.As16()) == want {
				return true
			}
		}
		return false
	}
	for !has() {
		if time.Now().After(deadline) {
			t.Fatalf("no SLAAC address %v; have %v", want, s.NICInfo()[1].ProtocolAddresses)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ll, _, _ := g.ipv6Addrs()
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv6EmptySubnet, Gateway: tcpip.AddrFrom16(ll.As16()), NIC: 1}})

	ctx := ctxT(t, 30*time.Second)
	var c *gonet.TCPConn
	for {
		c, err = gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom16(g.Addr6().As16()), Port: port}, ipv6.ProtocolNumber)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // DAD of the new address may still run
	}
	if err != nil {
		t.Fatalf("dial [%v]:%d: %v", g.Addr6(), port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hi\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "v6host:hi\n" {
		t.Fatalf("echo over IPv6: %q %v", line, err)
	}

	// A port forward from the host to the guest's SLAAC address.
	gl, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom16(want.As16()), Port: 8080}, ipv6.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, gl, "v6guest:")
	f := addForward(t, newForwarder(t, g), g, forward.Forward{Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.AddrPortFrom(want, 8080)})
	got, err := tcpRoundTrip(f.Listen.String(), "yo")
	if err != nil || got != "v6guest:yo" {
		t.Fatalf("IPv6 port forward: %q %v", got, err)
	}
}
