package offload

import (
	"encoding/binary"
)

// Coalesced describes the super-frame [Coalesce] built.
type Coalesced struct {
	HdrLen int  // length of the super-frame's headers written into hdr
	MSS    int  // payload bytes of every merged frame but the last
	IPv6   bool // IP version 6, else 4
	TCPOff int  // offset of the TCP header: where its checksum starts
}

// Coalesce finds how many frames, starting at frames[0], merge into one
// TCP super-frame by the coalescing rules of the package doc, and returns
// n ≥ 1. When n > 1 it writes the super-frame's Ethernet, IP and TCP
// headers into hdr (at least [MaxHeadersLen] bytes) and describes them in
// c: the super-frame is hdr[:c.HdrLen] followed by frames[k][c.HdrLen:]
// for k < n, in order. Its IP lengths (and IPv4 header checksum) are
// those of the whole super-frame, it carries PSH when the last merged frame
// does, and its TCP checksum field holds the pseudo-header sum, left for
// the consumer to complete over the TCP header and payload at c.TCPOff
// ([CompleteChecksum], virtio NEEDS_CSUM). Checksums of the frames are
// not checked. The frames are never modified.
func Coalesce(frames [][]byte, hdr []byte) (n int, c Coalesced) {
	if len(frames) < 2 {
		return 1, c
	}
	first := frames[0]
	a, ok := parseTCP(first, false)
	if !ok || len(first) == a.Len() {
		return 1, c
	}
	if first[a.TCPOff()+tcpFlagsOffset] != tcpACK {
		return 1, c
	}
	mss := len(first) - a.Len()
	total := mss
	last := first
	for n = 1; n < len(frames); n++ {
		f := frames[n]
		if len(last)-a.Len() != mss { // only the last may be short
			break
		}
		b, ok := parseTCP(f, false)
		plen := len(f) - b.Len()
		if !ok || b != a || plen == 0 || plen > mss || a.IPLen+a.TCPLen+total+plen > MaxIPLen {
			break
		}
		if !sameFlow(first, last, f, a) {
			break
		}
		flags := f[a.TCPOff()+tcpFlagsOffset]
		if flags&^tcpPSH != tcpACK {
			break
		}
		total += plen
		last = f
		if flags&tcpPSH != 0 {
			n++
			break
		}
	}
	if n == 1 {
		return 1, c
	}
	c = Coalesced{HdrLen: a.Len(), MSS: mss, IPv6: a.IPv6, TCPOff: a.TCPOff()}
	copy(hdr[:c.HdrLen], first[:c.HdrLen])
	ip := hdr[a.IPOff:]
	l4len := a.TCPLen + total
	if a.IPv6 {
		binary.BigEndian.PutUint16(ip[ipv6PayloadLenOff:], uint16(l4len))
	} else {
		binary.BigEndian.PutUint16(ip[ipv4TotalLenOff:], uint16(a.IPLen+l4len))
		setIPv4Checksum(ip, a.IPLen)
	}
	tcp := ip[a.IPLen:]
	tcp[tcpFlagsOffset] |= last[a.TCPOff()+tcpFlagsOffset] & tcpPSH
	binary.BigEndian.PutUint16(tcp[tcpCsumOffset:], csumFold(pseudoSum(ip, a.IPv6, l4len)))
	return n, c
}

// sameFlow reports whether f continues the run that starts with first and
// whose latest frame is last (all three parsed as a: untagged, no IPv4
// options).
func sameFlow(first, last, f []byte, a Headers) bool {
	if string(first[:EthernetHeaderLen]) != string(f[:EthernetHeaderLen]) {
		return false
	}
	fi, li, ip := first[EthernetHeaderLen:], last[EthernetHeaderLen:], f[EthernetHeaderLen:]
	if a.IPv6 {
		// Version, traffic class, flow label; hop limit; addresses.
		if string(fi[:ipv6FlowLen]) != string(ip[:ipv6FlowLen]) || fi[ipv6HopLimitOff] != ip[ipv6HopLimitOff] ||
			string(fi[ipv6AddrsOffset:ipv6HeaderLen]) != string(ip[ipv6AddrsOffset:ipv6HeaderLen]) {
			return false
		}
	} else {
		// Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
		if fi[0] != ip[0] || fi[ipv4TOSOffset] != ip[ipv4TOSOffset] || fi[ipv4FlagsOffset] != ip[ipv4FlagsOffset] ||
			fi[ipv4TTLOffset] != ip[ipv4TTLOffset] || string(fi[ipv4AddrsOffset:ipv4MinHeaderLen]) != string(ip[ipv4AddrsOffset:ipv4MinHeaderLen]) {
			return false
		}
		// Without DF, IDs must count up one per segment.
		if fi[ipv4FlagsOffset]&ipv4FlagDF == 0 && binary.BigEndian.Uint16(ip[ipv4IDOffset:]) != binary.BigEndian.Uint16(li[ipv4IDOffset:])+1 {
			return false
		}
	}
	ft, lt, t := fi[a.IPLen:], li[a.IPLen:], ip[a.IPLen:]
	if string(ft[:tcpPortsLen]) != string(t[:tcpPortsLen]) {
		return false
	}
	lastPlen := len(last) - a.Len()
	if binary.BigEndian.Uint32(t[tcpSeqOffset:]) != binary.BigEndian.Uint32(lt[tcpSeqOffset:])+uint32(lastPlen) {
		return false
	}
	// ACK number, data offset, window equal; options equal.
	if string(ft[tcpAckOffset:tcpAckOffset+4]) != string(t[tcpAckOffset:tcpAckOffset+4]) || ft[tcpDataOffOffset] != t[tcpDataOffOffset] ||
		string(ft[tcpWindowOffset:tcpWindowOffset+2]) != string(t[tcpWindowOffset:tcpWindowOffset+2]) {
		return false
	}
	return string(ft[tcpMinHeaderLen:a.TCPLen]) == string(t[tcpMinHeaderLen:a.TCPLen])
}
