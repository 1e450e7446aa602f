package offload

import (
	"bytes"
	"encoding/binary"
	"testing"

	ot "github.com/corralnet/corral/offload/offloadtest"
)

// seedFrames are the fuzz seeds: the golden cases' frames.
func seedFrames() [][]byte {
	var fs [][]byte
	for _, c := range goldenCases() {
		if c.super != nil {
			fs = append(fs, c.super)
		}
		fs = append(fs, c.frames...)
	}
	return fs
}

// FuzzParseTCP: ParseTCP never panics, and what it accepts is consistent:
// the headers fit the frame and the IP length field matches the frame.
func FuzzParseTCP(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := ParseTCP(b)
		hs, oks := parseTCP(b, false)
		if oks && (!ok || hs != h) {
			t.Fatalf("strict parse %+v accepted what the lenient one did not (%v, %+v)", hs, ok, h)
		}
		if !ok {
			return
		}
		if h.Len() > len(b) || h.IPOff < EthernetHeaderLen || h.IPOff > EthernetHeaderLen+MaxVLANTags*VLANTagLen ||
			h.TCPLen < tcpMinHeaderLen || h.TCPLen > tcpMaxHeaderLen {
			t.Fatalf("headers %+v for a frame of %d bytes", h, len(b))
		}
		ip := b[h.IPOff:]
		if h.IPv6 {
			if int(binary.BigEndian.Uint16(ip[ipv6PayloadLenOff:]))+ipv6HeaderLen != len(ip) {
				t.Fatal("IPv6 payload length does not match")
			}
		} else if int(binary.BigEndian.Uint16(ip[ipv4TotalLenOff:])) != len(ip) {
			t.Fatal("IPv4 total length does not match")
		}
	})
}

// FuzzSegment: whatever ParseSuper accepts is cut without panic into
// valid frames (by the independent checker) of at most the headers plus
// the MSS, whose payloads concatenate to the super-frame's, and whose
// sequence numbers follow; cutting in place and out of place agree.
func FuzzSegment(f *testing.F) {
	for _, c := range goldenCases() {
		if c.super != nil {
			f.Add(c.super, c.v6, uint16(c.mss))
		}
	}
	dst := make([]byte, MaxFrameLen)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool, mss uint16) {
		s, err := ParseSuper(b, v6, int(mss))
		if err != nil {
			return
		}
		if s.Segments > 1024 {
			return // tiny MSS over a large frame: slow, nothing new
		}
		var payload []byte
		seq := binary.BigEndian.Uint32(b[s.TCPOff()+tcpSeqOffset:])
		src := append([]byte{}, b...)
		for i := s.Segments - 1; i >= 0; i-- {
			out := dst
			if i == 0 {
				out = src
			}
			n, err := s.Segment(out, src, i)
			if err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
			seg := out[:n]
			if n > s.Len()+s.MSS || n < s.Len() || n != s.SegmentLen(i) {
				t.Fatalf("segment %d: %d bytes, headers %d, mss %d", i, n, s.Len(), s.MSS)
			}
			if err := ot.Check(seg); err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
			if got := binary.BigEndian.Uint32(seg[s.TCPOff()+tcpSeqOffset:]); got != seq+uint32(i*s.MSS) {
				t.Fatalf("segment %d: seq %d", i, got)
			}
			// Out of place gives the same bytes.
			o := make([]byte, n)
			if m, err := s.Segment(o, b, i); err != nil || m != n || (i != 0 && !bytes.Equal(o, seg)) {
				t.Fatalf("segment %d out of place: %d %v", i, m, err)
			}
			payload = append(append([]byte{}, seg[s.Len():]...), payload...)
		}
		if !bytes.Equal(payload, b[s.Len():]) {
			t.Fatal("segments do not carry the super-frame's payload")
		}
	})
}

// FuzzCoalesce: frames cut out of the fuzz input (each a 2-byte length
// and its bytes) are coalesced without panic; a run of n > 1 frames is a
// super-frame that cuts back, at the returned MSS, into frames equal to the
// inputs but for the fields segmentation rewrites (checksums, and the IPv4
// ID where DF is set) and the urgent pointer (URG is never set in a run),
// and the inputs are not modified.
func FuzzCoalesce(f *testing.F) {
	enc := func(fs [][]byte) []byte {
		var b []byte
		for _, x := range fs {
			b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
			b = append(b, x...)
		}
		return b
	}
	for _, c := range goldenCases() {
		if c.frames != nil {
			f.Add(enc(c.frames))
		}
	}
	hdr := make([]byte, MaxHeadersLen)
	f.Fuzz(func(t *testing.T, in []byte) {
		var frames [][]byte
		for len(in) >= 2 && len(frames) < 64 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			n = min(n, len(in))
			frames = append(frames, in[:n:n])
			in = in[n:]
		}
		if len(frames) == 0 {
			return
		}
		orig := make([][]byte, len(frames))
		for i, x := range frames {
			orig[i] = append([]byte{}, x...)
		}
		n, c := Coalesce(frames, hdr)
		for i := range frames {
			if !bytes.Equal(frames[i], orig[i]) {
				t.Fatalf("frame %d modified", i)
			}
		}
		if n < 1 || n > len(frames) {
			t.Fatalf("n = %d of %d", n, len(frames))
		}
		if n == 1 {
			return
		}
		super := append([]byte{}, hdr[:c.HdrLen]...)
		for _, x := range frames[:n] {
			super = append(super, x[c.HdrLen:]...)
		}
		if len(super)-EthernetHeaderLen > MaxIPLen+boolInt(c.IPv6)*ipv6HeaderLen {
			t.Fatalf("super-frame of %d bytes", len(super))
		}
		s, err := ParseSuper(super, c.IPv6, c.MSS)
		if err != nil {
			t.Fatalf("coalesced super-frame does not parse: %v", err)
		}
		if s.Segments != n || s.Len() != c.HdrLen || s.TCPOff() != c.TCPOff {
			t.Fatalf("super-frame %+v, coalesced %d frames, %+v", s, n, c)
		}
		df := !c.IPv6 && frames[0][EthernetHeaderLen+ipv4FlagsOffset]&ipv4FlagDF != 0
		for i := 0; i < n; i++ {
			seg := make([]byte, s.SegmentLen(i))
			if _, err := s.Segment(seg, super, i); err != nil {
				t.Fatal(err)
			}
			want := append([]byte{}, frames[i]...)
			mask := func(b []byte) {
				b[c.TCPOff+tcpCsumOffset], b[c.TCPOff+tcpCsumOffset+1] = 0, 0
				// Without URG the urgent pointer means nothing (RFC 9293
				// 3.1); Coalesce, like Linux's GRO, does not compare it.
				b[c.TCPOff+tcpUrgOffset], b[c.TCPOff+tcpUrgOffset+1] = 0, 0
				if !c.IPv6 {
					b[EthernetHeaderLen+ipv4CsumOffset], b[EthernetHeaderLen+ipv4CsumOffset+1] = 0, 0
					if df {
						b[EthernetHeaderLen+ipv4IDOffset], b[EthernetHeaderLen+ipv4IDOffset+1] = 0, 0
					}
				}
			}
			mask(seg)
			mask(want)
			if !bytes.Equal(seg, want) {
				t.Fatalf("segment %d of the coalesced super-frame differs from frame %d:\n got %x\nwant %x", i, i, seg, want)
			}
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
