package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Inbound checksums.
//
// The endpoint verifies the checksums of every inbound IP packet itself,
// before GRO (verifyChecksums): the IPv4 header checksum, and the TCP,
// UDP, ICMPv4 or ICMPv6 checksum of every packet that is not a fragment
// and has no IPv6 extension header. A packet with a bad checksum is
// dropped and counted (inBadChecksum). A verified packet enters GRO with
// RXChecksumValidated set, so GRO does not verify it again and the stack
// skips it.
//
// What the endpoint cannot verify (IP fragments: the transport checksum
// covers the reassembled datagram; packets with IPv6 extension headers)
// the stack must. gVisor's NIC, though, sets every delivered packet's
// RXChecksumValidated from the link endpoint's capabilities, and GRO needs
// it set for the segments it coalesces (it rewrites their IP length and
// leaves the checksums as they were). So the capability follows the
// packet being delivered: rxDispatcher, between GRO and the NIC, records
// whether that packet was validated and Capabilities reports
// CapabilityRXChecksumOffload only then. Delivery happens on Write's
// goroutine, one packet at a time (groMu), and nothing else in gVisor
// reads that bit (stack/nic.go is its only reader).

// verifyChecksums checks an inbound Ethernet frame of at least
// header.EthernetMinimumSize bytes. It returns ok = false when a checksum
// is wrong (drop it), and validated = true when every checksum the stack
// would check has been checked. Malformed packets pass unvalidated: the
// stack drops them and counts them as malformed.
func verifyChecksums(frame []byte) (ok, validated bool) {
	l3 := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(len(l3)) {
			return true, false
		}
		if !ip.IsChecksumValid() {
			return false, false
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return true, false
		}
		payload := ip[ip.HeaderLength():ip.TotalLength()]
		return transportChecksumOK(ip.TransportProtocol(), payload, ip.SourceAddress(), ip.DestinationAddress(), false)
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(l3)
		if !ip.IsValid(len(l3)) {
			return true, false
		}
		payload := ip[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())]
		return transportChecksumOK(tcpip.TransportProtocolNumber(ip.NextHeader()), payload, ip.SourceAddress(), ip.DestinationAddress(), true)
	}
	return true, false
}

// transportChecksumOK verifies the checksum of a TCP, UDP, ICMPv4 or
// ICMPv6 payload (the IP payload, nothing after it). Other protocols, and
// payloads too short for their header, pass unvalidated.
func transportChecksumOK(proto tcpip.TransportProtocolNumber, payload []byte, src, dst tcpip.Address, v6 bool) (ok, validated bool) {
	switch proto {
	case header.TCPProtocolNumber:
		if len(payload) < header.TCPMinimumSize {
			return true, false
		}
	case header.UDPProtocolNumber:
		if len(payload) < header.UDPMinimumSize {
			return true, false
		}
		if header.UDP(payload).Checksum() == 0 {
			// No checksum: allowed over IPv4 (RFC 768), not over IPv6
			// (RFC 8200 section 8.1).
			return !v6, !v6
		}
	case header.ICMPv4ProtocolNumber:
		if v6 || len(payload) < header.ICMPv4MinimumSize {
			return true, false
		}
		return checksum.Checksum(payload, 0) == 0xffff, true
	case header.ICMPv6ProtocolNumber:
		if !v6 || len(payload) < header.ICMPv6MinimumSize {
			return true, false
		}
	default:
		return true, false
	}
	xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(payload)))
	return checksum.Checksum(payload, xsum) == 0xffff, true
}

// rxDispatcher delivers GRO's output to the NIC and records, for
// Capabilities, whether the packet being delivered was validated (see the
// comment at the top of this file).
type rxDispatcher struct {
	e *linkEndpoint
	d stack.NetworkDispatcher
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (r *rxDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.e.rxValidated.Store(pkt.RXChecksumValidated)
	r.d.DeliverNetworkPacket(proto, pkt)
	r.e.rxValidated.Store(false)
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (r *rxDispatcher) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.d.DeliverLinkPacket(proto, pkt)
}
