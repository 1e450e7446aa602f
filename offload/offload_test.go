package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	ot "github.com/corralnet/corral/offload/offloadtest"
)

// tcpFrame builds a test frame (offloadtest.TCPFrame): csum "full" or
// "partial" (the pseudo-header sum, as with NEEDS_CSUM).
func tcpFrame(v6 bool, id uint16, seq uint32, flags byte, payload []byte, csum string) []byte {
	return ot.TCPFrame(ot.Fields{IPv6: v6, ID: id, Seq: seq, Flags: flags, Payload: payload, Partial: csum == "partial"})
}

func checkFrame(t *testing.T, f []byte) {
	t.Helper()
	if err := ot.Check(f); err != nil {
		t.Fatal(err)
	}
}

func mustParseSuper(t *testing.T, f []byte, v6 bool, mss int) Super {
	t.Helper()
	s, err := ParseSuper(f, v6, mss)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// segmentAll cuts a super-frame as tap's Read does when all segments fit:
// segments 1.. into their own buffers, then segment 0 in place.
func segmentAll(t *testing.T, super []byte, v6 bool, mss int) [][]byte {
	t.Helper()
	s := mustParseSuper(t, super, v6, mss)
	src := append([]byte{}, super...)
	out := make([][]byte, s.Segments)
	for i := 1; i < s.Segments; i++ {
		b := make([]byte, 65536)
		n, err := s.Segment(b, src, i)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		out[i] = b[:n]
	}
	n, err := s.Segment(src, src, 0)
	if err != nil {
		t.Fatalf("segment 0: %v", err)
	}
	out[0] = src[:n]
	return out
}

func TestParseTCP(t *testing.T) {
	v4 := tcpFrame(false, 1, 1, ot.ACK, ot.Payload(100, 1), "full")
	v6 := tcpFrame(true, 1, 1, ot.ACK, ot.Payload(100, 1), "full")
	mod := func(f []byte, fn func([]byte)) []byte { f = append([]byte{}, f...); fn(f); return f }
	withOpts := func(f []byte) []byte { // IPv4 header with 4 bytes of options (NOPs, EOL)
		g := append(append(append([]byte{}, f[:34]...), 1, 1, 1, 0), f[34:]...)
		g[14] = 0x46
		binary.BigEndian.PutUint16(g[16:], binary.BigEndian.Uint16(g[16:])+4)
		return g
	}
	tests := []struct {
		name   string
		f      []byte
		ok     bool
		strict bool // also accepted by the strict parse of Coalesce
		want   Headers
	}{
		{"v4", v4, true, true, Headers{IPOff: 14, IPLen: 20, TCPLen: 32}},
		{"v6", v6, true, true, Headers{IPv6: true, IPOff: 14, IPLen: 40, TCPLen: 32}},
		{"v4 one tag", ot.VLANTag(v4, 0x8100, 5), true, false, Headers{IPOff: 18, IPLen: 20, TCPLen: 32}},
		{"v6 two tags", ot.VLANTag(ot.VLANTag(v6, 0x8100, 5), 0x88a8, 6), true, false, Headers{IPv6: true, IPOff: 22, IPLen: 40, TCPLen: 32}},
		{"three tags", ot.VLANTag(ot.VLANTag(ot.VLANTag(v4, 0x8100, 5), 0x8100, 6), 0x88a8, 7), false, false, Headers{}},
		{"v4 options", withOpts(v4), true, false, Headers{IPOff: 14, IPLen: 24, TCPLen: 32}},
		{"udp", ot.UDPFrame(), false, false, Headers{}},
		{"fragment", mod(v4, func(f []byte) { f[20] |= 0x20 }), false, false, Headers{}},
		{"padded", append(append([]byte{}, v4...), 0), false, false, Headers{}},
		{"v6 padded", append(append([]byte{}, v6...), 0), false, false, Headers{}},
		{"truncated", v4[:40], false, false, Headers{}},
		{"short", v4[:10], false, false, Headers{}},
		{"ihl 4", mod(v4, func(f []byte) { f[14] = 0x44 }), false, false, Headers{}},
		{"v6 ext header", mod(v6, func(f []byte) { f[20] = 0 }), false, false, Headers{}},
		{"version mismatch", mod(v4, func(f []byte) { f[14] = 0x65 }), false, false, Headers{}},
		{"data offset 4", mod(v4, func(f []byte) { f[46] = 4 << 4 }), false, false, Headers{}},
		{"data offset beyond", mod(v4[:54+8], func(f []byte) { binary.BigEndian.PutUint16(f[16:], 48); f[46] = 15 << 4 }), false, false, Headers{}},
		{"arp", mod(v4, func(f []byte) { f[12], f[13] = 0x08, 0x06 }), false, false, Headers{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := ParseTCP(tt.f)
			if ok != tt.ok {
				t.Fatalf("ParseTCP ok = %v, want %v (%+v)", ok, tt.ok, h)
			}
			if ok && h != tt.want {
				t.Fatalf("ParseTCP = %+v, want %+v", h, tt.want)
			}
			if _, ok := parseTCP(tt.f, false); ok != tt.strict {
				t.Fatalf("strict parse ok = %v, want %v", ok, tt.strict)
			}
		})
	}
}

func TestSegment(t *testing.T) {
	tests := []struct {
		name  string
		v6    bool
		plen  int
		gso   int
		flags byte
	}{
		{"v4 exact", false, 1448 * 4, 1448, ot.ACK | ot.PSH},
		{"v4 short last", false, 1448*44 + 100, 1448, ot.ACK | ot.PSH},
		{"v4 fin cwr", false, 5000, 1448, ot.ACK | ot.PSH | ot.FIN | ot.CWR},
		{"v4 one", false, 1000, 1448, ot.ACK},
		{"v4 empty", false, 0, 1448, ot.ACK | ot.FIN | ot.CWR},
		{"v6", true, 1428*10 + 1, 1428, ot.ACK | ot.PSH},
		{"v6 fin cwr", true, 1428*3 + 1, 1428, ot.ACK | ot.PSH | ot.FIN | ot.CWR},
		{"v6 max", true, 65535 - 40 - 32 + 40, 1428, ot.ACK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := ot.Payload(tt.plen, uint64(tt.plen))
			super := tcpFrame(tt.v6, 1000, 0xfffff000, tt.flags, pl, "partial")
			segs := segmentAll(t, super, tt.v6, tt.gso)
			want := max(1, (tt.plen+tt.gso-1)/tt.gso)
			if len(segs) != want {
				t.Fatalf("%d segments, want %d", len(segs), want)
			}
			var got []byte
			hl := 14 + 20 + 32
			if tt.v6 {
				hl = 14 + 40 + 32
			}
			for i, s := range segs {
				checkFrame(t, s)
				if len(s) > hl+tt.gso {
					t.Fatalf("segment %d: %d bytes", i, len(s))
				}
				tcp := s[hl-32:]
				if seq := binary.BigEndian.Uint32(tcp[4:]); seq != 0xfffff000+uint32(i*tt.gso) {
					t.Fatalf("segment %d seq %#x", i, seq)
				}
				if !tt.v6 {
					if id := binary.BigEndian.Uint16(s[18:]); id != 1000+uint16(i) {
						t.Fatalf("segment %d IP ID %d", i, id)
					}
				}
				// FIN and PSH on the last segment only, CWR on the first
				// only (package doc: RFC 9293, RFC 3168 6.1.2, Linux).
				wantFlags := tt.flags
				if i != len(segs)-1 {
					wantFlags &^= ot.FIN | ot.PSH
				}
				if i != 0 {
					wantFlags &^= ot.CWR
				}
				if tcp[13] != wantFlags {
					t.Fatalf("segment %d flags %#x, want %#x", i, tcp[13], wantFlags)
				}
				if !bytes.Equal(s[:14], super[:14]) {
					t.Fatalf("segment %d: Ethernet header changed", i)
				}
				got = append(got, s[hl:]...)
			}
			if !bytes.Equal(got, pl) {
				t.Fatal("payload differs after segmentation")
			}
			// Cutting from a kept copy into separate buffers, as Read does
			// when a super-frame does not fit one batch, gives the same.
			s := mustParseSuper(t, super, tt.v6, tt.gso)
			for i := range segs {
				b := make([]byte, 65536)
				n, err := s.Segment(b, super, i)
				if err != nil || !bytes.Equal(b[:n], segs[i]) {
					t.Fatalf("segment %d cut out of place differs (%v)", i, err)
				}
				if n != s.SegmentLen(i) {
					t.Fatalf("segment %d: %d bytes, SegmentLen %d", i, n, s.SegmentLen(i))
				}
			}
		})
	}
}

// TestSegmentVLAN: super-frames of a VLAN interface (one or two tags) are
// cut like untagged ones, each segment keeping the tags; such frames are
// never coalesced.
func TestSegmentVLAN(t *testing.T) {
	for _, tags := range []int{1, 2} {
		for _, v6 := range []bool{false, true} {
			pl := ot.Payload(1448*3+5, 11)
			super := tcpFrame(v6, 9, 100, ot.ACK|ot.PSH, pl, "partial")
			if tags == 2 {
				super = ot.VLANTag(super, 0x8100, 7)
				super = ot.VLANTag(super, 0x88a8, 42)
			} else {
				super = ot.VLANTag(super, 0x8100, 42)
			}
			segs := segmentAll(t, super, v6, 1448)
			if len(segs) != 4 {
				t.Fatalf("%d segments", len(segs))
			}
			var got []byte
			for _, sg := range segs {
				checkFrame(t, sg)
				if !bytes.Equal(sg[:12+4*tags], super[:12+4*tags]) {
					t.Fatal("tags changed")
				}
				h, ok := ParseTCP(sg)
				if !ok || h.IPOff != 14+4*tags {
					t.Fatalf("segment does not parse: %+v", h)
				}
				got = append(got, sg[h.Len():]...)
			}
			if !bytes.Equal(got, pl) {
				t.Fatal("payload differs")
			}
			if n, _ := Coalesce(segs, make([]byte, MaxHeadersLen)); n != 1 {
				t.Fatalf("tagged segments coalesced (%d)", n)
			}
		}
	}
}

func TestSegmentShortBuffer(t *testing.T) {
	super := tcpFrame(false, 1, 1, ot.ACK, ot.Payload(3000, 1), "partial")
	s := mustParseSuper(t, super, false, 1448)
	dst := make([]byte, s.SegmentLen(1)-1)
	if n, err := s.Segment(dst, super, 1); n != 0 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Segment into %d bytes = %d, %v; want io.ErrShortBuffer", len(dst), n, err)
	}
	big := make([]byte, 65536)
	for _, c := range []struct {
		name string
		src  []byte
		i    int
	}{{"index -1", super, -1}, {"index past the last", super, s.Segments}, {"short src", super[:len(super)-1], 0}, {"long src", append(super, 0), 0}} {
		if n, err := s.Segment(big, c.src, c.i); n != 0 || err != ErrSegment {
			t.Errorf("%s: Segment = %d, %v; want ErrSegment", c.name, n, err)
		}
	}
}

func TestParseSuperErrors(t *testing.T) {
	f := tcpFrame(false, 1, 1, ot.ACK, ot.Payload(3000, 1), "partial")
	tests := []struct {
		name string
		f    []byte
		v6   bool
		mss  int
	}{
		{"v6 type on v4", f, true, 1448},
		{"v4 type on v6", tcpFrame(true, 1, 1, ot.ACK, ot.Payload(3000, 1), "partial"), false, 1448},
		{"mss 0", f, false, 0},
		{"mss negative", f, false, -1},
		{"truncated", f[:50], false, 1448},
		{"udp", ot.UDPFrame(), false, 1448},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSuper(tt.f, tt.v6, tt.mss); err != ErrMalformed {
				t.Fatalf("ParseSuper = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestPending: the segments of a super-frame handed out over several
// calls, two buffers at a time, are the segments cut at once.
func TestPending(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		super := tcpFrame(v6, 5, 77, ot.ACK|ot.PSH|ot.CWR, ot.Payload(1400*7+3, 3), "partial")
		want := segmentAll(t, super, v6, 1400)
		var p Pending
		if p.Remaining() != 0 {
			t.Fatal("zero Pending not idle")
		}
		if _, err := p.Next(make([]byte, 2000)); err != io.EOF {
			t.Fatalf("Next when idle: %v, want io.EOF", err)
		}
		n := copy(p.Buf(), super)
		p.Start(mustParseSuper(t, p.Buf()[:n], v6, 1400), n)
		var got [][]byte
		for call := 0; p.Remaining() > 0; call++ {
			for k := 0; k < 2 && p.Remaining() > 0; k++ {
				b := make([]byte, 2000)
				if len(got) == 3 {
					// A short buffer keeps the segment pending.
					if _, err := p.Next(b[:100]); !errors.Is(err, io.ErrShortBuffer) {
						t.Fatalf("Next into 100 bytes: %v", err)
					}
				}
				m, err := p.Next(b)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, b[:m])
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d segments pending, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("pending segment %d differs", i)
			}
		}
		p.Start(mustParseSuper(t, p.Buf()[:n], v6, 1400), n)
		p.Reset()
		if p.Remaining() != 0 {
			t.Fatal("Reset left segments pending")
		}
	}
}

// TestCoalesceRoundTrip: segment → coalesce gives back the super-frame
// (with the pseudo-header sum in its TCP checksum, as the kernel handed it
// over), whose completed checksum is valid.
func TestCoalesceRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, plen := range []int{1448 * 2, 1448*30 + 7, 1448 * 45} {
			mss := 1448
			if v6 {
				mss = 1428
			}
			pl := ot.Payload(plen, 7)
			super := tcpFrame(v6, 77, 12345, ot.ACK|ot.PSH, pl, "partial")
			segs := segmentAll(t, super, v6, mss)
			hdr := make([]byte, MaxHeadersLen)
			n, c := Coalesce(segs, hdr)
			if n != len(segs) {
				t.Fatalf("v6=%v plen=%d: coalesced %d of %d", v6, plen, n, len(segs))
			}
			got := append([]byte{}, hdr[:c.HdrLen]...)
			for _, s := range segs {
				got = append(got, s[c.HdrLen:]...)
			}
			if !bytes.Equal(got, super) {
				t.Fatalf("v6=%v plen=%d: round trip differs", v6, plen)
			}
			h, _ := ParseTCP(super)
			if want := (Coalesced{HdrLen: h.Len(), MSS: mss, IPv6: v6, TCPOff: h.TCPOff()}); c != want {
				t.Fatalf("Coalesced %+v, want %+v", c, want)
			}
			if err := CompleteChecksum(got, c.TCPOff, TCPChecksumOffset); err != nil {
				t.Fatal(err)
			}
			checkFrame(t, got)
		}
	}
}

func TestCoalesceRules(t *testing.T) {
	seg := func(i int, flags byte, n int) []byte {
		return tcpFrame(false, uint16(10+i), uint32(1000+i*1448), flags, ot.Payload(n, uint64(i)), "full")
	}
	noDF := func(i int, id uint16) []byte {
		return ot.TCPFrame(ot.Fields{ID: id, NoDF: true, Seq: uint32(1000 + i*1448), Flags: ot.ACK, Payload: ot.Payload(1448, uint64(i))})
	}
	seg6 := func(i int, flags byte, n int) []byte {
		return tcpFrame(true, 0, uint32(1000+i*1428), flags, ot.Payload(n, uint64(i)), "full")
	}
	a := byte(ot.ACK)
	udp := ot.UDPFrame
	mod := func(f []byte, fn func([]byte)) []byte { fn(f); return f }
	tests := []struct {
		name   string
		frames [][]byte
		runs   []int
	}{
		{"three", [][]byte{seg(0, a, 1448), seg(1, a, 1448), seg(2, a|ot.PSH, 100)}, []int{3}},
		{"psh ends run", [][]byte{seg(0, a, 1448), seg(1, a|ot.PSH, 1448), seg(2, a, 1448)}, []int{2, 1}},
		{"psh first", [][]byte{seg(0, a|ot.PSH, 1448), seg(1, a, 1448)}, []int{1, 1}},
		{"short middle", [][]byte{seg(0, a, 1448), seg(1, a, 1000), seg(2, a, 1000)}, []int{2, 1}},
		{"longer later", [][]byte{seg(0, a, 1000), seg(1, a, 1448)}, []int{1, 1}},
		{"out of order", [][]byte{seg(0, a, 1448), seg(2, a, 1448), seg(1, a, 1448)}, []int{1, 1, 1}},
		{"udp", [][]byte{udp(), udp()}, []int{1, 1}},
		{"udp between", [][]byte{seg(0, a, 1448), udp(), seg(1, a, 1448)}, []int{1, 1, 1}},
		{"fin", [][]byte{seg(0, a, 1448), seg(1, a|ot.FIN, 1448)}, []int{1, 1}},
		{"syn", [][]byte{seg(0, a|ot.SYN, 1448), seg(1, a, 1448)}, []int{1, 1}},
		{"cwr", [][]byte{seg(0, a|ot.CWR, 1448), seg(1, a, 1448)}, []int{1, 1}},
		{"pure ack", [][]byte{seg(0, a, 0), seg(0, a, 0)}, []int{1, 1}},
		{"one", [][]byte{seg(0, a, 1448)}, []int{1}},
		{"other ack", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+8]++ })}, []int{1, 1}},
		{"other window", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+14]++ })}, []int{1, 1}},
		{"other tsval", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+27]++ })}, []int{1, 1}},
		{"other port", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+1]++ })}, []int{1, 1}},
		{"other tos", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[15] = 3 })}, []int{1, 1}},
		{"other ttl", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[22]-- })}, []int{1, 1}},
		{"other mac", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[0] ^= 2 })}, []int{1, 1}},
		{"padded", [][]byte{seg(0, a, 1448), append(seg(1, a, 1448), 0)}, []int{1, 1}},
		{"no DF, ids count up", [][]byte{noDF(0, 7), noDF(1, 8), noDF(2, 9)}, []int{3}},
		{"no DF, id gap", [][]byte{noDF(0, 7), noDF(1, 9)}, []int{1, 1}},
		{"v6", [][]byte{seg6(0, a, 1428), seg6(1, a, 1428), seg6(2, a, 3)}, []int{3}},
		{"v6 other flow label", [][]byte{seg6(0, a, 1428), mod(seg6(1, a, 1428), func(f []byte) { f[17] = 1 })}, []int{1, 1}},
		{"v6 other hop limit", [][]byte{seg6(0, a, 1428), mod(seg6(1, a, 1428), func(f []byte) { f[21] = 1 })}, []int{1, 1}},
		{"v4 then v6", [][]byte{seg(0, a, 1448), seg6(1, a, 1448)}, []int{1, 1}},
	}
	// 46 full segments exceed 64 KiB of IP: the run stops at 45.
	var many [][]byte
	for i := 0; i < 46; i++ {
		many = append(many, seg(i, a, 1448))
	}
	tests = append(tests, struct {
		name   string
		frames [][]byte
		runs   []int
	}{"64KiB", many, []int{45, 1}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := make([][]byte, len(tt.frames))
			for i, f := range tt.frames {
				orig[i] = append([]byte{}, f...)
			}
			hdr := make([]byte, MaxHeadersLen)
			var runs []int
			for i := 0; i < len(tt.frames); {
				n, _ := Coalesce(tt.frames[i:], hdr)
				runs = append(runs, n)
				i += n
			}
			if len(runs) != len(tt.runs) {
				t.Fatalf("runs %v, want %v", runs, tt.runs)
			}
			for i := range runs {
				if runs[i] != tt.runs[i] {
					t.Fatalf("runs %v, want %v", runs, tt.runs)
				}
			}
			for i := range orig { // frames are never modified
				if !bytes.Equal(orig[i], tt.frames[i]) {
					t.Fatalf("frame %d modified", i)
				}
			}
		})
	}
}

func TestCompleteChecksum(t *testing.T) {
	// TCP with the pseudo-header sum in place, as with NEEDS_CSUM.
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 1, 1, ot.ACK, ot.Payload(333, 3), "partial")
		start := 14 + 20
		if v6 {
			start = 14 + 40
		}
		if err := CompleteChecksum(f, start, 16); err != nil {
			t.Fatal(err)
		}
		checkFrame(t, f)
	}
	f := make([]byte, 40)
	for _, c := range []struct{ start, off int }{{14, 30}, {4, 0}, {14, -1}, {39, 0}} {
		if err := CompleteChecksum(f, c.start, c.off); err != ErrChecksumRange {
			t.Fatalf("CompleteChecksum(start %d, off %d) = %v, want ErrChecksumRange", c.start, c.off, err)
		}
	}
	// A sum of zero is sent as 0xffff (UDP: 0 means no checksum).
	u := ot.UDPFrame() // all-zero UDP payload: craft a zero complement
	u = append(u[:14+20], 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)
	if err := CompleteChecksum(u, 14+20, 6); err != nil {
		t.Fatal(err)
	}
	if c := binary.BigEndian.Uint16(u[14+20+6:]); c != 0xffff {
		t.Fatalf("checksum %#04x, want 0xffff for a zero result", c)
	}
}
