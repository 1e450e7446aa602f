package tap

import (
	"encoding/binary"
	"errors"
)

// This file holds the pure parts of the TAP offloads (Config.Offload):
// the virtio_net_hdr the kernel puts in front of every frame on a TAP
// opened with IFF_VNET_HDR, software checksum completion, segmentation of
// TCP super-frames (TSO, kernel → us) into MTU-sized frames, and the
// coalescing of consecutive TCP segments into one super-frame (GRO, us →
// kernel). The technique is the one wireguard-go uses on its TUN device;
// the code is ours.

// VnetHdrLen is the size of struct virtio_net_hdr (no num_buffers).
const VnetHdrLen = 10

// virtio_net_hdr flags and gso_type values (linux/virtio_net.h).
const (
	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2

	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3
	vnetGSOTCPv6 = 4
	vnetGSOECN   = 0x80
)

// TCP flag bits (byte 13 of the header).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpCWR = 0x80
)

const (
	ethHdrLen  = 14
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	ipv6HdrLen = 40
	protoTCP   = 6
	protoUDP   = 17
	// maxSuper bounds a coalesced super-frame: the IPv4 total length (and
	// the IPv6 payload length) is a 16-bit field.
	maxSuper = 65535
)

// Errors of the offload decoder; frames that produce them are dropped
// and counted, never passed on.
var (
	ErrVnetHdr   = errors.New("tap: bad virtio_net_hdr")
	ErrGSOType   = errors.New("tap: unsupported GSO type")
	ErrGSOPacket = errors.New("tap: malformed GSO packet")
)

// vnetHdr is a decoded struct virtio_net_hdr (little-endian fields; the
// TAP uses the host byte order, which is little-endian on every platform
// this is built for).
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	_ = b[VnetHdrLen-1]
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.LittleEndian.Uint16(b[2:]),
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

func (h vnetHdr) encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// csumAdd adds b to a one's complement running sum (not folded). Only the
// last slice added to a sum may have an odd length.
func csumAdd(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// csumFold folds a running sum to 16 bits (not complemented).
func csumFold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return uint16(sum)
}

// pseudoSum is the running sum of the TCP/UDP pseudo-header for an IP
// header ip (v4 or v6) and an L4 length.
func pseudoSum(ip []byte, v6 bool, proto uint8, l4len int) uint64 {
	var sum uint64
	if v6 {
		sum = csumAdd(0, ip[8:40])
	} else {
		sum = csumAdd(0, ip[12:20])
	}
	return sum + uint64(proto) + uint64(l4len)
}

// ipv4HdrCsum sets the IPv4 header checksum of ip (header length hl).
func ipv4HdrCsum(ip []byte, hl int) {
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^csumFold(csumAdd(0, ip[:hl])))
}

// completeCsum does what NEEDS_CSUM asks: the one's complement sum of
// frame[start:] (whose checksum field at start+off already holds the
// pseudo-header sum) goes, complemented, into that field.
func completeCsum(frame []byte, start, off int) error {
	if start+off+2 > len(frame) || start < ethHdrLen {
		return ErrVnetHdr
	}
	c := ^csumFold(csumAdd(0, frame[start:]))
	if c == 0 {
		c = 0xffff // as the kernel does (CSUM_MANGLED_0): 0 means "none" in UDP
	}
	binary.BigEndian.PutUint16(frame[start+off:], c)
	return nil
}

// tcpInfo locates the headers of an Ethernet/IP/TCP frame.
type tcpInfo struct {
	v6    bool
	l2    int // Ethernet header length with its VLAN tags
	ipHL  int // IP header length
	tcpHL int // TCP header length
	hdrs  int // Ethernet + IP + TCP header bytes
	plen  int // TCP payload bytes
}

// parseTCP locates the headers of an Ethernet frame carrying IPv4 (no
// fragment) or IPv6 (no extension header) and TCP. The IP length field
// must match the frame length exactly (no Ethernet padding). lenient
// allows IPv4 options and up to two VLAN tags (802.1Q, 802.1ad).
func parseTCP(f []byte, lenient bool) (tcpInfo, bool) {
	var ti tcpInfo
	ti.l2 = ethHdrLen
	et := uint16(0)
	if len(f) >= ethHdrLen {
		et = binary.BigEndian.Uint16(f[12:])
	}
	for tags := 0; lenient && tags < 2 && (et == 0x8100 || et == 0x88a8); tags++ {
		if len(f) < ti.l2+4 {
			return ti, false
		}
		et = binary.BigEndian.Uint16(f[ti.l2+2:])
		ti.l2 += 4
	}
	if len(f) < ti.l2+20 {
		return ti, false
	}
	ip := f[ti.l2:]
	switch et {
	case etherIPv4:
		if ip[0]>>4 != 4 || ip[9] != protoTCP {
			return ti, false
		}
		ti.ipHL = int(ip[0]&0x0f) * 4
		if ti.ipHL < 20 || (!lenient && ti.ipHL != 20) {
			return ti, false
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // MF or offset: a fragment
			return ti, false
		}
		if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			return ti, false
		}
	case etherIPv6:
		ti.v6 = true
		ti.ipHL = ipv6HdrLen
		if len(ip) < ipv6HdrLen || ip[0]>>4 != 6 || ip[6] != protoTCP {
			return ti, false
		}
		if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-ipv6HdrLen {
			return ti, false
		}
	default:
		return ti, false
	}
	tcp := ti.l2 + ti.ipHL
	if len(f) < tcp+20 {
		return ti, false
	}
	ti.tcpHL = int(f[tcp+12]>>4) * 4
	if ti.tcpHL < 20 || len(f) < tcp+ti.tcpHL {
		return ti, false
	}
	ti.hdrs = tcp + ti.tcpHL
	ti.plen = len(f) - ti.hdrs
	return ti, true
}

// gsoFrame is a TCP super-frame the kernel handed over, ready to be cut.
type gsoFrame struct {
	tcpInfo
	gso  int // payload bytes per segment (gso_size)
	nseg int
}

// parseGSO checks a super-frame f (without its virtio_net_hdr) against h.
func parseGSO(f []byte, h vnetHdr) (gsoFrame, error) {
	var g gsoFrame
	typ := h.gsoType &^ vnetGSOECN
	if typ != vnetGSOTCPv4 && typ != vnetGSOTCPv6 {
		return g, ErrGSOType
	}
	ti, ok := parseTCP(f, true)
	if !ok || ti.v6 != (typ == vnetGSOTCPv6) || h.gsoSize == 0 || ti.plen == 0 {
		return g, ErrGSOPacket
	}
	g.tcpInfo = ti
	g.gso = int(h.gsoSize)
	g.nseg = (ti.plen + g.gso - 1) / g.gso
	return g, nil
}

// segment writes segment i of the super-frame src into dst and returns its
// length. dst may be src itself only for i == 0 (the first segment is a
// prefix of the super-frame, cut in place); cut every other segment first. IPv4 length,
// ID and header checksum, IPv6 payload length, TCP sequence number and
// flags (FIN/PSH only on the last segment, CWR only on the first) and the
// TCP checksum are all set.
func (g *gsoFrame) segment(dst, src []byte, i int) int {
	start := g.hdrs + i*g.gso
	plen := min(g.gso, len(src)-start)
	n := g.hdrs + plen
	if i != 0 || &dst[0] != &src[0] {
		copy(dst[:g.hdrs], src[:g.hdrs])
		copy(dst[g.hdrs:n], src[start:start+plen])
	}
	ip := dst[g.l2:]
	l4len := g.tcpHL + plen
	if g.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(g.ipHL+l4len))
		id := binary.BigEndian.Uint16(src[g.l2+4:])
		binary.BigEndian.PutUint16(ip[4:], id+uint16(i))
		ipv4HdrCsum(ip, g.ipHL)
	}
	tcp := dst[g.l2+g.ipHL : n]
	seq := binary.BigEndian.Uint32(src[g.l2+g.ipHL+4:])
	binary.BigEndian.PutUint32(tcp[4:], seq+uint32(i*g.gso))
	flags := src[g.l2+g.ipHL+13]
	if i != g.nseg-1 {
		flags &^= tcpFIN | tcpPSH
	}
	if i != 0 {
		flags &^= tcpCWR
	}
	tcp[13] = flags
	tcp[16], tcp[17] = 0, 0
	sum := csumAdd(pseudoSum(ip, g.v6, protoTCP, l4len), tcp)
	binary.BigEndian.PutUint16(tcp[16:], ^csumFold(sum))
	return n
}

// superHdrMax is room for a virtio_net_hdr and the Ethernet, IP (with
// options) and TCP (with options) headers of a coalesced super-frame.
const superHdrMax = VnetHdrLen + ethHdrLen + 60 + 60

// coalesceRun finds how many frames, starting at frames[0], can go to the
// kernel as one TCP super-frame: consecutive segments of one flow with
// identical Ethernet/IP/TCP headers except IPv4 ID and length, contiguous
// sequence numbers, only ACK (and PSH on the last) set, equal ACK number,
// window and options, and the same payload size except a shorter last,
// at most maxSuper bytes of IP, no VLAN tag. It returns n >= 1. When n > 1 it writes
// the virtio_net_hdr and the super-frame's headers into hdr (at least
// superHdrMax long) and returns their length hl: the super-frame is
// hdr[:hl] followed by frames[k][hl-VnetHdrLen:] for k < n.
func coalesceRun(frames [][]byte, hdr []byte) (n, hl int) {
	first := frames[0]
	a, ok := parseTCP(first, false)
	if !ok || a.plen == 0 || len(frames) < 2 {
		return 1, 0
	}
	ftcp := first[ethHdrLen+a.ipHL:]
	if ftcp[13]&^tcpPSH != tcpACK || ftcp[13]&tcpPSH != 0 {
		return 1, 0
	}
	total := a.plen
	last := first
	lastPlen := a.plen
	n = 1
	for ; n < len(frames); n++ {
		f := frames[n]
		b, ok := parseTCP(f, false)
		if !ok || b.v6 != a.v6 || b.tcpHL != a.tcpHL || b.plen == 0 || b.plen > a.plen {
			break
		}
		if lastPlen != a.plen { // only the last may be short
			break
		}
		if a.ipHL+a.tcpHL+total+b.plen > maxSuper {
			break
		}
		if !sameFlow(first, f, last, a) {
			break
		}
		tcp := f[ethHdrLen+a.ipHL:]
		if tcp[13]&^tcpPSH != tcpACK {
			break
		}
		total += b.plen
		last, lastPlen = f, b.plen
		if tcp[13]&tcpPSH != 0 {
			n++
			break
		}
	}
	if n == 1 {
		return 1, 0
	}
	hl = VnetHdrLen + a.hdrs
	copy(hdr[VnetHdrLen:hl], first[:a.hdrs])
	ip := hdr[VnetHdrLen+ethHdrLen:]
	l4len := a.tcpHL + total
	gso := vnetHdr{
		flags:      vnetFlagNeedsCsum,
		hdrLen:     uint16(a.hdrs),
		gsoSize:    uint16(a.plen),
		csumStart:  uint16(ethHdrLen + a.ipHL),
		csumOffset: 16,
	}
	if a.v6 {
		gso.gsoType = vnetGSOTCPv6
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
	} else {
		gso.gsoType = vnetGSOTCPv4
		binary.BigEndian.PutUint16(ip[2:], uint16(a.ipHL+l4len))
		ipv4HdrCsum(ip, a.ipHL)
	}
	gso.encode(hdr)
	tcp := ip[a.ipHL:]
	tcp[13] |= last[ethHdrLen+a.ipHL+13] & tcpPSH
	binary.BigEndian.PutUint16(tcp[16:], csumFold(pseudoSum(ip, a.v6, protoTCP, l4len)))
	return n, hl
}

// sameFlow reports whether f continues the run that starts with first and
// whose latest segment is last (both already parsed as a).
func sameFlow(first, f, last []byte, a tcpInfo) bool {
	if string(first[:ethHdrLen]) != string(f[:ethHdrLen]) {
		return false
	}
	fi, li, ip := first[ethHdrLen:], last[ethHdrLen:], f[ethHdrLen:]
	if a.v6 {
		// Version, traffic class, flow label; hop limit; addresses.
		if string(fi[:4]) != string(ip[:4]) || fi[7] != ip[7] || string(fi[8:40]) != string(ip[8:40]) {
			return false
		}
	} else {
		// Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
		if fi[0] != ip[0] || fi[1] != ip[1] || fi[6] != ip[6] || fi[8] != ip[8] || string(fi[12:20]) != string(ip[12:20]) {
			return false
		}
		// Without DF, IDs must count up one per segment.
		if fi[6]&0x40 == 0 && binary.BigEndian.Uint16(ip[4:]) != binary.BigEndian.Uint16(li[4:])+1 {
			return false
		}
	}
	ft, lt, t := fi[a.ipHL:], li[a.ipHL:], ip[a.ipHL:]
	if string(ft[:4]) != string(t[:4]) { // ports
		return false
	}
	lastPlen := len(last) - a.hdrs
	if binary.BigEndian.Uint32(t[4:]) != binary.BigEndian.Uint32(lt[4:])+uint32(lastPlen) {
		return false
	}
	// ACK number, data offset, window equal; options equal.
	if string(ft[8:12]) != string(t[8:12]) || ft[12] != t[12] || string(ft[14:16]) != string(t[14:16]) {
		return false
	}
	return string(ft[20:a.tcpHL]) == string(t[20:a.tcpHL])
}
