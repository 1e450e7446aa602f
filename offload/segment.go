package offload

import (
	"encoding/binary"
	"io"
)

// Super is a parsed TCP super-frame, ready to be cut into segments of at
// most MSS payload bytes.
type Super struct {
	Headers
	MSS      int // payload bytes per segment (the last may carry fewer)
	Payload  int // TCP payload bytes of the super-frame
	Segments int // number of segments: Payload / MSS rounded up, at least 1
}

// ParseSuper checks the super-frame f: Ethernet/IP/TCP as [ParseTCP]
// accepts it, of IP version 6 when v6 is true and 4 otherwise, to be cut
// at mss > 0. The result describes f and any copy of f. A frame without
// payload is one segment (its headers, with the checksum computed).
func ParseSuper(f []byte, v6 bool, mss int) (Super, error) {
	var s Super
	h, ok := parseTCP(f, true)
	if !ok || h.IPv6 != v6 || mss <= 0 {
		return s, ErrMalformed
	}
	s.Headers = h
	s.MSS = mss
	s.Payload = len(f) - h.Len()
	s.Segments = max(1, (s.Payload+mss-1)/mss)
	return s, nil
}

// SegmentLen is the length of segment i.
func (s *Super) SegmentLen(i int) int {
	return s.Len() + min(s.MSS, s.Payload-i*s.MSS)
}

// Segment writes segment i (0 ≤ i < s.Segments) of the super-frame src,
// which s describes, into dst and returns its length, or
// [io.ErrShortBuffer] when dst is shorter than [Super.SegmentLen]
// ([ErrSegment] for an index out of range or a src shorter than s says).
// dst may be src itself only for i == 0: the first segment is a prefix of
// the super-frame and is cut in place, so cut every other segment first.
func (s *Super) Segment(dst, src []byte, i int) (int, error) {
	if i < 0 || i >= s.Segments || len(src) != s.Len()+s.Payload {
		return 0, ErrSegment
	}
	hl := s.Len()
	start := hl + i*s.MSS
	plen := min(s.MSS, s.Payload-i*s.MSS)
	n := hl + plen
	if len(dst) < n {
		return 0, io.ErrShortBuffer
	}
	if i != 0 || &dst[0] != &src[0] {
		copy(dst[:hl], src[:hl])
		copy(dst[hl:n], src[start:start+plen])
	}
	ip := dst[s.IPOff:]
	l4len := s.TCPLen + plen
	if s.IPv6 {
		binary.BigEndian.PutUint16(ip[ipv6PayloadLenOff:], uint16(l4len))
	} else {
		binary.BigEndian.PutUint16(ip[ipv4TotalLenOff:], uint16(s.IPLen+l4len))
		id := binary.BigEndian.Uint16(src[s.IPOff+ipv4IDOffset:])
		binary.BigEndian.PutUint16(ip[ipv4IDOffset:], id+uint16(i))
		setIPv4Checksum(ip, s.IPLen)
	}
	tcp := dst[s.TCPOff():n]
	seq := binary.BigEndian.Uint32(src[s.TCPOff()+tcpSeqOffset:])
	binary.BigEndian.PutUint32(tcp[tcpSeqOffset:], seq+uint32(i*s.MSS))
	flags := src[s.TCPOff()+tcpFlagsOffset]
	if i != s.Segments-1 {
		flags &^= tcpFIN | tcpPSH // the package doc: segmentation rules
	}
	if i != 0 {
		flags &^= tcpCWR
	}
	tcp[tcpFlagsOffset] = flags
	tcp[tcpCsumOffset], tcp[tcpCsumOffset+1] = 0, 0
	sum := csumAdd(pseudoSum(ip, s.IPv6, l4len), tcp)
	binary.BigEndian.PutUint16(tcp[tcpCsumOffset:], ^csumFold(sum))
	return n, nil
}

// Pending holds a copy of one super-frame whose segments are handed out
// over several calls, when they do not all fit the buffers of one batch.
// The zero value is idle; its buffer is allocated on first use. Not safe
// for concurrent use.
type Pending struct {
	buf  []byte
	s    Super
	n    int // length of the super-frame in buf
	next int // index of the next segment
}

// Buf returns the buffer to copy a super-frame into before [Pending.Start]:
// [MaxFrameLen] bytes. It must not be called while segments are pending.
func (p *Pending) Buf() []byte {
	if p.buf == nil {
		p.buf = make([]byte, MaxFrameLen)
	}
	return p.buf
}

// Start makes the super-frame in Buf()[:n], which s describes, pending
// from its first segment on.
func (p *Pending) Start(s Super, n int) {
	p.s, p.n, p.next = s, n, 0
}

// Remaining is the number of segments still pending; 0 when idle.
func (p *Pending) Remaining() int { return p.s.Segments - p.next }

// Next writes the next pending segment into dst and returns its length.
// When dst is too short it returns [io.ErrShortBuffer] and the segment
// stays pending; when nothing is pending, [io.EOF].
func (p *Pending) Next(dst []byte) (int, error) {
	if p.Remaining() == 0 {
		return 0, io.EOF
	}
	n, err := p.s.Segment(dst, p.buf[:p.n], p.next)
	if err != nil {
		return 0, err
	}
	if p.next++; p.next == p.s.Segments {
		p.Reset()
	}
	return n, nil
}

// Reset drops whatever is pending.
func (p *Pending) Reset() { p.s, p.n, p.next = Super{}, 0, 0 }
