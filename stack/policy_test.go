package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// icmpv6Frame builds an Ethernet/IPv6/ICMPv6 frame of the given type whose
// body starts with 4 reserved bytes and then target (checksums are not
// the policy's business and are left zero).
func icmpv6Frame(typ header.ICMPv6Type, target netip.Addr) []byte {
	body := 4 + 16
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+header.ICMPv6MinimumSize+body)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(guestMAC[:]), DstAddr: tcpip.LinkAddress(bcastMAC[:]), Type: header.IPv6ProtocolNumber})
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength: uint16(header.ICMPv6MinimumSize + body), TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 255,
		SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("fe80::1").As16()), DstAddr: tcpip.AddrFrom16(netip.MustParseAddr("ff02::1").As16())})
	icmp := ip[header.IPv6MinimumSize:]
	icmp[0] = byte(typ)
	t := target.As16()
	copy(icmp[nsTargetOffset:], t[:])
	return b
}

// TestLinkPolicy: what the gateway's policy lets into its stack, frame by
// frame (TestARP and TestIPv6SLAACAndNAT exercise it through the stack).
func TestLinkPolicy(t *testing.T) {
	gw, dns := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3")
	gw6, other6 := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::15")
	arpReply := arpRequest(guestMAC, guestIP, netip.MustParseAddr("10.0.2.99"))
	header.ARP(arpReply[header.EthernetMinimumSize:]).SetOp(header.ARPReply)
	echo := udpFrame(guestMAC, bcastMAC, netip.MustParseAddrPort("10.0.2.15:1"), netip.MustParseAddrPort("10.0.2.2:7"), []byte("ping"))
	udp6 := icmpv6Frame(header.ICMPv6EchoRequest, gw6)
	udp6[header.EthernetMinimumSize+ipv6NextHdrOffset] = uint8(header.UDPProtocolNumber)
	tests := []struct {
		name     string
		frame    []byte
		echoEats bool // onEcho consumes every frame it sees
		want     verdict
		rs       int // router solicitations reported
		echoes   int // frames offered to onEcho
	}{
		{"arp request for gateway", arpRequest(guestMAC, guestIP, gw), false, verdictDeliver, 0, 0},
		{"arp request for dns", arpRequest(guestMAC, guestIP, dns), false, verdictDeliver, 0, 0},
		{"arp request for another", arpRequest(guestMAC, guestIP, netip.MustParseAddr("10.0.2.16")), false, verdictFilter, 0, 0},
		{"arp reply", arpReply, false, verdictDeliver, 0, 0},
		{"arp truncated", arpRequest(guestMAC, guestIP, gw)[:header.EthernetMinimumSize+10], false, verdictFilter, 0, 0},
		{"ipv4 not consumed", echo, false, verdictDeliver, 0, 1},
		{"ipv4 echo consumed", echo, true, verdictConsumed, 0, 1},
		{"ns for gateway", icmpv6Frame(header.ICMPv6NeighborSolicit, gw6), false, verdictDeliver, 0, 1},
		{"ns for another", icmpv6Frame(header.ICMPv6NeighborSolicit, other6), true, verdictFilter, 0, 0},
		{"ns truncated", icmpv6Frame(header.ICMPv6NeighborSolicit, gw6)[:header.EthernetMinimumSize+header.IPv6MinimumSize+12], false, verdictFilter, 0, 0},
		{"rs", icmpv6Frame(header.ICMPv6RouterSolicit, netip.IPv6Unspecified()), true, verdictFilter, 1, 0},
		{"ipv6 echo consumed", icmpv6Frame(header.ICMPv6EchoRequest, gw6), true, verdictConsumed, 0, 1},
		{"ipv6 udp", udp6, false, verdictDeliver, 0, 1},
		{"other ethertype", append(append([]byte{}, echo[:12]...), 0x88, 0xb5, 1, 2, 3), true, verdictDeliver, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs, echoes int
			p := linkPolicy{
				allowARP: []netip.Addr{gw, dns},
				allowNDP: []netip.Addr{gw6},
				onRS:     func() { rs++ },
				onEcho:   func([]byte) bool { echoes++; return tt.echoEats },
			}
			if got := p.inbound(tt.frame); got != tt.want {
				t.Fatalf("inbound = %d, want %d", got, tt.want)
			}
			if rs != tt.rs || echoes != tt.echoes {
				t.Fatalf("router solicitations %d, echo offers %d; want %d and %d", rs, echoes, tt.rs, tt.echoes)
			}
		})
	}
	// The zero policy (no hooks, empty lists) answers nothing and consumes
	// nothing.
	var zero linkPolicy
	for _, f := range [][]byte{arpRequest(guestMAC, guestIP, gw), icmpv6Frame(header.ICMPv6NeighborSolicit, gw6)} {
		if v := zero.inbound(f); v != verdictFilter {
			t.Fatalf("zero policy: %d, want verdictFilter", v)
		}
	}
	if v := zero.inbound(icmpv6Frame(header.ICMPv6RouterSolicit, netip.IPv6Unspecified())); v != verdictFilter {
		t.Fatalf("zero policy, router solicitation: %d, want verdictFilter", v)
	}
	if v := zero.inbound(echo); v != verdictDeliver {
		t.Fatalf("zero policy, ipv4: %d, want verdictDeliver", v)
	}
}
