package stack

import (
	"encoding/binary"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Router advertisement parameters (RFC 4861 section 6.2.1, RFC 8106).
const (
	raInterval       = 30 * time.Second
	raRouterLifetime = 1800 // seconds
	raValidLifetime  = 86400
	raPreferLifetime = 14400
	raRDNSSLifetime  = 1800
	raCurHopLimit    = 64
	ndpOptSourceLL   = 1
	ndpOptPrefixInfo = 3
	ndpOptMTU        = 5
	ndpOptRDNSS      = 25
	prefixFlagsLA    = 0xc0 // on-link, autonomous
	raHeaderSize     = 16   // ICMPv6 RA header: type, code, csum, hop, flags, lifetime, reachable, retrans
	raSourceLLSize   = 8
	raMTUSize        = 8
	raPrefixInfoSize = 32
	raRDNSSSize      = 24
	raSize           = raHeaderSize + raSourceLLSize + raMTUSize + raPrefixInfoSize + raRDNSSSize
)

// ipv6Addrs returns the gateway's IPv6 addresses: link-local, ::2, ::3.
func (g *Gateway) ipv6Addrs() (ll, gw, dns netip.Addr) {
	lla := header.LinkLocalAddr(tcpip.LinkAddress(g.cfg.MAC[:]))
	ll = netip.AddrFrom16(lla.As16())
	return ll, hostAddr6(g.cfg.IPv6Prefix, gatewayHost), hostAddr6(g.cfg.IPv6Prefix, dnsHost)
}

// buildRA builds a router advertisement frame to all nodes: source
// link-layer address, MTU, the prefix for SLAAC and RDNSS (the DNS at ::3).
func (g *Gateway) buildRA() []byte {
	ll, _, dns := g.ipv6Addrs()
	frame := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+raSize)
	dst := header.IPv6AllNodesMulticastAddress
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(g.cfg.MAC[:]),
		DstAddr: header.EthernetAddressFromMulticastIPv6Address(dst),
		Type:    header.IPv6ProtocolNumber,
	})
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	src := tcpip.AddrFrom16(ll.As16())
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     raSize,
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	ra := ip[header.IPv6MinimumSize:]
	ra[0] = byte(header.ICMPv6RouterAdvert)
	ra[4] = raCurHopLimit
	binary.BigEndian.PutUint16(ra[6:], raRouterLifetime)
	o := ra[raHeaderSize:]
	o[0], o[1] = ndpOptSourceLL, 1
	copy(o[2:8], g.cfg.MAC[:])
	o = o[raSourceLLSize:]
	o[0], o[1] = ndpOptMTU, 1
	binary.BigEndian.PutUint32(o[4:], uint32(g.cfg.MTU))
	o = o[raMTUSize:]
	o[0], o[1], o[2], o[3] = ndpOptPrefixInfo, 4, 64, prefixFlagsLA
	binary.BigEndian.PutUint32(o[4:], raValidLifetime)
	binary.BigEndian.PutUint32(o[8:], raPreferLifetime)
	p := g.cfg.IPv6Prefix.Addr().As16()
	copy(o[16:32], p[:])
	o = o[raPrefixInfoSize:]
	o[0], o[1] = ndpOptRDNSS, 3
	binary.BigEndian.PutUint32(o[4:], raRDNSSLifetime)
	d := dns.As16()
	copy(o[8:24], d[:])
	icmp := header.ICMPv6(ra)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp[:header.ICMPv6MinimumSize],
		Src:    src, Dst: dst,
		PayloadCsum: checksum.Checksum(icmp[header.ICMPv6MinimumSize:], 0),
		PayloadLen:  len(icmp) - header.ICMPv6MinimumSize,
	}))
	return frame
}

// sendRA queues a router advertisement on the outbound queue (dropped and
// counted when the queue is full).
func (g *Gateway) sendRA() {
	g.ep.enqueue(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(g.ra)}))
}

// raLoop sends unsolicited advertisements every raInterval and answers
// solicitations (rate-limited to one per second) until Close.
func (g *Gateway) raLoop() {
	t := time.NewTicker(raInterval)
	defer t.Stop()
	var last time.Time
	g.sendRA()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			g.sendRA()
		case <-g.rsCh:
			if time.Since(last) >= time.Second {
				g.sendRA()
				last = time.Now()
			}
		}
	}
}
