package stack

import (
	"encoding/binary"
	"net/netip"
	"strings"
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
	raDNSSLLifetime  = 1800
	raCurHopLimit    = 64
	ndpOptSourceLL   = 1
	ndpOptPrefixInfo = 3
	ndpOptMTU        = 5
	ndpOptRDNSS      = 25
	ndpOptDNSSL      = 31   // RFC 8106 section 5.2
	prefixFlagsLA    = 0xc0 // on-link, autonomous
	raHeaderSize     = 16   // ICMPv6 RA header: type, code, csum, hop, flags, lifetime, reachable, retrans
	raSourceLLSize   = 8
	raMTUSize        = 8
	raPrefixInfoSize = 32
	raRDNSSSize      = 24
	raDNSSLHdrSize   = 8
	raSize           = raHeaderSize + raSourceLLSize + raMTUSize + raPrefixInfoSize + raRDNSSSize
)

// dnsslOption returns the DNS search list option (RFC 8106 section 5.2)
// naming domain, so that SLAAC guests get the fence's search domain as
// DHCP guests do from option 119; nil when domain does not encode.
func dnsslOption(domain string) []byte {
	var name []byte
	for l := range strings.SplitSeq(strings.Trim(domain, "."), ".") {
		if l == "" || len(l) > 63 {
			return nil
		}
		name = append(append(name, byte(len(l))), l...)
	}
	name = append(name, 0)
	size := (raDNSSLHdrSize + len(name) + 7) / 8 * 8 // padded with zeros to 8 bytes
	if size/8 > 255 {
		return nil
	}
	o := make([]byte, size)
	o[0], o[1] = ndpOptDNSSL, byte(size/8)
	binary.BigEndian.PutUint32(o[4:], raDNSSLLifetime)
	copy(o[raDNSSLHdrSize:], name)
	return o
}

// ipv6Addrs returns the gateway's IPv6 addresses: link-local, ::2, ::3.
func (g *Gateway) ipv6Addrs() (ll, gw, dns netip.Addr) {
	lla := header.LinkLocalAddr(tcpip.LinkAddress(g.cfg.MAC[:]))
	ll = netip.AddrFrom16(lla.As16())
	return ll, hostAddr6(g.cfg.IPv6Prefix, gatewayHost), hostAddr6(g.cfg.IPv6Prefix, dnsHost)
}

// buildRA builds a router advertisement frame to all nodes: source
// link-layer address, MTU, the prefix for SLAAC, RDNSS (the DNS at ::3)
// and DNSSL (the fence's domain).
func (g *Gateway) buildRA() []byte {
	ll, _, dns := g.ipv6Addrs()
	dnssl := dnsslOption(g.cfg.Domain)
	size := raSize + len(dnssl)
	frame := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+size)
	dst := header.IPv6AllNodesMulticastAddress
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(g.cfg.MAC[:]),
		DstAddr: header.EthernetAddressFromMulticastIPv6Address(dst),
		Type:    header.IPv6ProtocolNumber,
	})
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	src := tcpip.AddrFrom16(ll.As16())
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(size),
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
	copy(o[raRDNSSSize:], dnssl)
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
