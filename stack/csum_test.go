package stack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ip4Frame builds an Ethernet/IPv4 frame carrying payload (a transport
// segment, or a fragment of one at byte offset off), with a valid header
// checksum.
func ip4Frame(srcMAC, dstMAC [6]byte, src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte, id uint16, off int, more bool) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(srcMAC[:]), DstAddr: tcpip.LinkAddress(dstMAC[:]), Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	var flags uint8
	if more {
		flags = header.IPv4FlagMoreFragments
	}
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + len(payload)), ID: id, Flags: flags, FragmentOffset: uint16(off),
		TTL: 64, Protocol: uint8(proto),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(ip[header.IPv4MinimumSize:], payload)
	return b
}

// ip6Frame builds an Ethernet/IPv6 frame carrying payload.
func ip6Frame(srcMAC, dstMAC [6]byte, src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(srcMAC[:]), DstAddr: tcpip.LinkAddress(dstMAC[:]), Type: header.IPv6ProtocolNumber})
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: proto, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16())})
	copy(ip[header.IPv6MinimumSize:], payload)
	return b
}

// pseudoSum is the checksum of a transport segment with its pseudo-header.
func pseudoSum(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, seg []byte) uint16 {
	xsum := header.PseudoHeaderChecksum(proto, tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice()), uint16(len(seg)))
	return ^checksum.Checksum(seg, xsum)
}

// udpSeg is a UDP datagram with a valid checksum.
func udpSeg(src, dst netip.AddrPort, data []byte) []byte {
	u := header.UDP(make([]byte, header.UDPMinimumSize+len(data)))
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], data)
	u.SetChecksum(pseudoSum(header.UDPProtocolNumber, src.Addr(), dst.Addr(), u))
	return u
}

// tcpSYN is a SYN with a valid checksum.
func tcpSYN(src, dst netip.AddrPort) []byte {
	h := header.TCP(make([]byte, header.TCPMinimumSize))
	h.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	h.SetChecksum(pseudoSum(header.TCPProtocolNumber, src.Addr(), dst.Addr(), h))
	return h
}

// echo4 is an ICMPv4 echo request with a valid checksum.
func echo4() []byte {
	m := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+4))
	m.SetType(header.ICMPv4Echo)
	m.SetIdent(7)
	m.SetSequence(1)
	copy(m.Payload(), "ping")
	m.SetChecksum(^checksum.Checksum(m, 0))
	return m
}

// echo6 is an ICMPv6 echo request with a valid checksum.
func echo6(src, dst netip.Addr) []byte {
	m := header.ICMPv6(make([]byte, header.ICMPv6EchoMinimumSize+4))
	m.SetType(header.ICMPv6EchoRequest)
	copy(m[header.ICMPv6EchoMinimumSize:], "ping")
	m.SetChecksum(pseudoSum(header.ICMPv6ProtocolNumber, src, dst, m))
	return m
}

// nicRx is the number of packets the stack's NIC received.
func nicRx(g *Gateway) uint64 { return g.s.NICInfo()[nicID].Stats.Rx.Packets.Value() }

// TestBadChecksumsDropped: a frame with a bad IPv4 header, TCP, UDP, ICMP
// or ICMPv6 checksum never reaches the stack and is counted; the same
// frame with its checksum right does reach it (so the test's frames are
// otherwise valid). The link endpoint no longer claims RX checksum offload
// for what it has not verified.
func TestBadChecksumsDropped(t *testing.T) {
	g := newTestGateway(t, Config{})
	newFrameReader(g) // drains the answers
	gw := g.MAC()
	src := netip.AddrPortFrom(guestIP, 40000)
	dns := netip.AddrPortFrom(g.DNSAddr(), 53)
	src6 := netip.AddrFrom16([16]byte{0xfd, 0x63, 0x6f, 0x72, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15})
	// Offsets of checksum fields in each frame.
	const ipCsum = header.EthernetMinimumSize + 10
	const l4 = header.EthernetMinimumSize + header.IPv4MinimumSize
	const l4v6 = header.EthernetMinimumSize + header.IPv6MinimumSize
	for _, tc := range []struct {
		name  string
		frame []byte
		at    int // a byte of the checksum to flip
	}{
		{"ipv4 header", ip4Frame(guestMAC, gw, guestIP, g.DNSAddr(), header.UDPProtocolNumber, udpSeg(src, dns, []byte("q")), 1, 0, false), ipCsum},
		{"udp", ip4Frame(guestMAC, gw, guestIP, g.DNSAddr(), header.UDPProtocolNumber, udpSeg(src, dns, []byte("q")), 2, 0, false), l4 + 6},
		{"tcp", ip4Frame(guestMAC, gw, guestIP, g.DNSAddr(), header.TCPProtocolNumber, tcpSYN(src, dns), 3, 0, false), l4 + 16},
		{"icmpv4", ip4Frame(guestMAC, gw, guestIP, g.DNSAddr(), header.ICMPv4ProtocolNumber, echo4(), 4, 0, false), l4 + 2},
		{"icmpv6", ip6Frame(guestMAC, gw, src6, g.DNSAddr6(), header.ICMPv6ProtocolNumber, echo6(src6, g.DNSAddr6())), l4v6 + 2},
		{"udp over ipv6", ip6Frame(guestMAC, gw, src6, g.DNSAddr6(), header.UDPProtocolNumber,
			udpSeg(netip.AddrPortFrom(src6, 40000), netip.AddrPortFrom(g.DNSAddr6(), 53), []byte("q"))), l4v6 + 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append([]byte(nil), tc.frame...)
			bad[tc.at] ^= 0x5a
			rx, csum := nicRx(g), g.Stats().InBadChecksum
			writeFrame(t, g, bad)
			if got := g.Stats().InBadChecksum; got != csum+1 {
				t.Fatalf("bad checksum: InBadChecksum %d, want %d", got, csum+1)
			}
			if got := nicRx(g); got != rx {
				t.Fatalf("bad checksum: the stack received it (NIC rx %d → %d)", rx, got)
			}
			writeFrame(t, g, tc.frame)
			if got := g.Stats().InBadChecksum; got != csum+1 {
				t.Fatalf("good checksum counted as bad: InBadChecksum %d", got)
			}
			if got := nicRx(g); got != rx+1 {
				t.Fatalf("good checksum: NIC rx %d → %d, want +1", rx, got)
			}
		})
	}
	t.Run("udp zero checksum over ipv4", func(t *testing.T) {
		seg := udpSeg(src, dns, []byte("q"))
		seg[6], seg[7] = 0, 0 // "no checksum" (RFC 768)
		rx, csum := nicRx(g), g.Stats().InBadChecksum
		writeFrame(t, g, ip4Frame(guestMAC, gw, guestIP, g.DNSAddr(), header.UDPProtocolNumber, seg, 5, 0, false))
		if nicRx(g) != rx+1 || g.Stats().InBadChecksum != csum {
			t.Fatalf("UDP without checksum refused: rx %d → %d, bad %d → %d", rx, nicRx(g), csum, g.Stats().InBadChecksum)
		}
	})
	t.Run("zero udp checksum over ipv6", func(t *testing.T) {
		seg := udpSeg(netip.AddrPortFrom(src6, 40000), netip.AddrPortFrom(g.DNSAddr6(), 53), []byte("q"))
		seg[6], seg[7] = 0, 0 // forbidden over IPv6 (RFC 8200 8.1)
		rx, csum := nicRx(g), g.Stats().InBadChecksum
		writeFrame(t, g, ip6Frame(guestMAC, gw, src6, g.DNSAddr6(), header.UDPProtocolNumber, seg))
		if nicRx(g) != rx || g.Stats().InBadChecksum != csum+1 {
			t.Fatalf("UDP/IPv6 without checksum: rx %d → %d, bad %d → %d", rx, nicRx(g), csum, g.Stats().InBadChecksum)
		}
	})
	// Fragments: the endpoint checks each fragment's IPv4 header; the
	// UDP checksum covers the whole datagram, which only the stack sees
	// (reassembled): it must check it, not take it as verified. A valid
	// one opens a NAT flow (synchronously, in Write).
	t.Run("fragmented udp", func(t *testing.T) {
		echo := echoUDP(t, "")
		dst := netip.AddrPortFrom(g.Addr(), echo.Port())
		seg := udpSeg(src, dst, make([]byte, 1000))
		send := func(seg []byte, id uint16) {
			writeFrame(t, g, ip4Frame(guestMAC, gw, guestIP, g.Addr(), header.UDPProtocolNumber, seg[:512], id, 0, true))
			writeFrame(t, g, ip4Frame(guestMAC, gw, guestIP, g.Addr(), header.UDPProtocolNumber, seg[512:], id, 512, false))
		}
		bad := append([]byte(nil), seg...)
		binary.BigEndian.PutUint16(bad[6:], binary.BigEndian.Uint16(bad[6:])^0x5a5a)
		st := g.Stats()
		send(bad, 100)
		if got := g.Stats(); got.InBadChecksum != st.InBadChecksum+1 || got.UDPFlows != st.UDPFlows {
			t.Fatalf("reassembled datagram with a bad UDP checksum: stats %+v, want one more bad checksum and no flow", got)
		}
		send(seg, 101)
		if got := g.Stats(); got.InBadChecksum != st.InBadChecksum+1 || got.UDPFlows != st.UDPFlows+1 {
			t.Fatalf("valid fragmented datagram: stats %+v, want a new flow and no more bad checksums", got)
		}
	})
	// The same for a SYN carrying data: a bad one is not taken for a
	// connection to set up (nor charged to the guest).
	t.Run("fragmented tcp syn", func(t *testing.T) {
		echo := echoTCP(t, "")
		dst := netip.AddrPortFrom(g.Addr(), echo.Port())
		syn := tcpSYN(netip.AddrPortFrom(guestIP, 40001), dst)
		seg := make([]byte, len(syn)+1000)
		copy(seg, syn)
		h := header.TCP(seg)
		h.SetChecksum(0)
		h.SetChecksum(pseudoSum(header.TCPProtocolNumber, guestIP, dst.Addr(), seg))
		send := func(seg []byte, id uint16) {
			writeFrame(t, g, ip4Frame(guestMAC2, gw, guestIP, g.Addr(), header.TCPProtocolNumber, seg[:512], id, 0, true))
			writeFrame(t, g, ip4Frame(guestMAC2, gw, guestIP, g.Addr(), header.TCPProtocolNumber, seg[512:], id, 512, false))
		}
		bad := append([]byte(nil), seg...)
		bad[16] ^= 0x5a
		st := g.Stats()
		send(bad, 200)
		if got := g.Stats(); got.InBadChecksum != st.InBadChecksum+1 || got.NATGuests != st.NATGuests {
			t.Fatalf("fragmented SYN with a bad checksum: stats %+v, want one more bad checksum, no guest charged", got)
		}
		send(seg, 201)
		if got := g.Stats(); got.InBadChecksum != st.InBadChecksum+1 || got.NATGuests != st.NATGuests+1 {
			t.Fatalf("valid fragmented SYN: stats %+v, want its guest charged", got)
		}
	})
}

// TestVerifyChecksumsNoAlloc: the inbound check allocates nothing.
func TestVerifyChecksumsNoAlloc(t *testing.T) {
	f := ip4Frame(guestMAC, guestMAC2, guestIP, netip.MustParseAddr("10.0.2.3"), header.TCPProtocolNumber,
		tcpSYN(netip.MustParseAddrPort("10.0.2.15:1"), netip.MustParseAddrPort("10.0.2.3:53")), 1, 0, false)
	allocs := testing.AllocsPerRun(1000, func() {
		if ok, v := verifyChecksums(f); !ok || !v {
			t.Fatal("valid frame refused")
		}
	})
	if allocs != 0 {
		t.Fatalf("verifyChecksums allocates %v times", allocs)
	}
}
