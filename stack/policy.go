package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Offsets the policy reads in inbound frames (RFC 8200, RFC 4861).
const (
	ipv6NextHdrOffset = 6
	icmpv6TypeOffset  = 0
	nsTargetOffset    = 8 // in a Neighbor Solicitation
)

// verdict is what a linkPolicy decides for one inbound frame.
type verdict uint8

const (
	// verdictDeliver: the frame goes on into the stack.
	verdictDeliver verdict = iota
	// verdictFilter: the frame is not for the gateway; the endpoint drops
	// it and counts it in inFiltered.
	verdictFilter
	// verdictConsumed: a hook took the frame (ICMP echo NAT); the endpoint
	// forgets it.
	verdictConsumed
)

// linkPolicy is what the gateway lets reach its stack, apart from the link
// endpoint that carries the frames (link.go): the endpoint consults it once
// per inbound frame that is addressed to the gateway's MAC, broadcast or
// multicast. The gateway fills it in before the switch first calls Write;
// it is read-only afterwards.
//
// The gateway's NIC spoofs (it must accept any destination address to NAT
// it), and a spoofing NIC would answer ARP and neighbor solicitations for
// every address, taking over the guests' addresses and breaking their
// duplicate address detection; the filters keep it to its own.
type linkPolicy struct {
	// allowARP are the only addresses ARP requests are answered for.
	allowARP []netip.Addr
	// allowNDP are the only targets neighbor solicitations are answered
	// for.
	allowNDP []netip.Addr
	// onRS, when set, is called for each router solicitation (the gateway
	// answers with a router advertisement of its own).
	onRS func()
	// onEcho, when set, may consume ICMP echo requests (ICMP NAT); frame is
	// the whole Ethernet frame, valid only during the call.
	onEcho func(frame []byte) bool
}

// inbound decides the fate of an inbound Ethernet frame of at least
// header.EthernetMinimumSize bytes.
func (p *linkPolicy) inbound(frame []byte) verdict {
	l3 := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.ARPProtocolNumber:
		if !p.arpAllowed(l3) {
			return verdictFilter
		}
	case header.IPv4ProtocolNumber:
		if p.onEcho != nil && p.onEcho(frame) {
			return verdictConsumed
		}
	case header.IPv6ProtocolNumber:
		if !p.ndpAllowed(l3) {
			return verdictFilter
		}
		if p.onEcho != nil && p.onEcho(frame) {
			return verdictConsumed
		}
	}
	return verdictDeliver
}

// arpAllowed reports whether an inbound ARP packet may reach the stack: a
// request only when it asks for one of allowARP; replies and the like
// always.
func (p *linkPolicy) arpAllowed(b []byte) bool {
	a := header.ARP(b)
	if !a.IsValid() {
		return false
	}
	if a.Op() != header.ARPRequest {
		return true
	}
	t := a.ProtocolAddressTarget()
	for _, ip := range p.allowARP {
		if ip.As4() == [4]byte(t) {
			return true
		}
	}
	return false
}

// ndpAllowed reports whether an inbound IPv6 packet may reach the stack.
// Neighbor solicitations pass only for allowNDP. Router solicitations go
// to onRS instead of the stack.
func (p *linkPolicy) ndpAllowed(ip []byte) bool {
	if len(ip) < header.IPv6MinimumSize+header.ICMPv6MinimumSize || ip[ipv6NextHdrOffset] != uint8(header.ICMPv6ProtocolNumber) {
		return true
	}
	icmp := ip[header.IPv6MinimumSize:]
	switch header.ICMPv6Type(icmp[icmpv6TypeOffset]) {
	case header.ICMPv6NeighborSolicit:
		if len(icmp) < nsTargetOffset+16 {
			return false
		}
		t := netip.AddrFrom16([16]byte(icmp[nsTargetOffset : nsTargetOffset+16]))
		for _, a := range p.allowNDP {
			if a == t {
				return true
			}
		}
		return false
	case header.ICMPv6RouterSolicit:
		if p.onRS != nil {
			p.onRS()
		}
		return false
	}
	return true
}
