package tap

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refSum is a plain 16-bit one's complement sum, written independently of
// csumAdd: the checker for every checksum below.
func refSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

// checkFrame verifies an ordinary TCP or UDP frame: IPv4 header checksum,
// lengths, L4 checksum (over an explicitly built pseudo-header).
func checkFrame(t *testing.T, f []byte) {
	t.Helper()
	var pseudo, l4 []byte
	var proto byte
	for binary.BigEndian.Uint16(f[12:]) == 0x8100 || binary.BigEndian.Uint16(f[12:]) == 0x88a8 {
		f = append(append([]byte{}, f[:12]...), f[16:]...) // drop the VLAN tag
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherIPv4:
		ip := f[14:]
		hl := int(ip[0]&15) * 4
		if refSum(ip[:hl]) != 0xffff {
			t.Fatalf("bad IPv4 header checksum % x", ip[:hl])
		}
		if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			t.Fatalf("IPv4 total length %d, frame has %d", binary.BigEndian.Uint16(ip[2:]), len(ip))
		}
		proto, l4 = ip[9], ip[hl:]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, proto, byte(len(l4)>>8), byte(len(l4)))
	case etherIPv6:
		ip := f[14:]
		if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-40 {
			t.Fatalf("IPv6 payload length %d, frame has %d", binary.BigEndian.Uint16(ip[4:]), len(ip)-40)
		}
		proto, l4 = ip[6], ip[40:]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, proto)
	default:
		t.Fatalf("ethertype %#x", binary.BigEndian.Uint16(f[12:]))
	}
	if refSum(pseudo, l4) != 0xffff {
		t.Fatalf("bad L4 (proto %d) checksum", proto)
	}
}

var (
	macA = []byte{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}
	macB = []byte{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}
)

// tcpFrame builds an Ethernet/IP/TCP frame with timestamps and the given
// payload; csum: "full" (valid checksum) or "partial" (the pseudo-header
// sum, as the kernel leaves it with NEEDS_CSUM).
func tcpFrame(v6 bool, id uint16, seq uint32, flags byte, payload []byte, csum string) []byte {
	f := append([]byte{}, macB...)
	f = append(f, macA...)
	var ip []byte
	tcpLen := 32 + len(payload)
	if v6 {
		f = binary.BigEndian.AppendUint16(f, etherIPv6)
		ip = []byte{0x60, 0x00, 0x00, 0x00, 0, 0, protoTCP, 64}
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
		ip = append(ip, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
		ip = append(ip, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)
	} else {
		f = binary.BigEndian.AppendUint16(f, etherIPv4)
		ip = []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protoTCP, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+tcpLen))
		binary.BigEndian.PutUint16(ip[4:], id)
		binary.BigEndian.PutUint16(ip[10:], ^refSum(ip))
	}
	f = append(f, ip...)
	tcp := make([]byte, 32)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 0x01020304)
	tcp[12] = 8 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 502)
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9}) // NOP NOP TS
	f = append(f, tcp...)
	f = append(f, payload...)
	ti, _ := parseTCP(f, true)
	ipb := f[14:]
	ps := csumFold(pseudoSum(ipb, v6, protoTCP, tcpLen))
	t := f[14+ti.ipHL:]
	if csum == "partial" {
		binary.BigEndian.PutUint16(t[16:], ps)
	} else {
		binary.BigEndian.PutUint16(t[16:], ^refSum(pseudoBytes(ipb, v6, len(t)), t))
	}
	return f
}

func pseudoBytes(ip []byte, v6 bool, l4len int) []byte {
	if v6 {
		return append(append([]byte{}, ip[8:40]...), 0, 0, byte(l4len>>8), byte(l4len), 0, 0, 0, protoTCP)
	}
	return append(append([]byte{}, ip[12:20]...), 0, protoTCP, byte(l4len>>8), byte(l4len))
}

func gsoHdr(v6 bool, gso int) vnetHdr {
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 14 + 20 + 32, gsoSize: uint16(gso), csumStart: 14 + 20, csumOffset: 16}
	if v6 {
		h.gsoType, h.hdrLen, h.csumStart = vnetGSOTCPv6, 14+40+32, 14+40
	}
	return h
}

func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// segmentAll cuts a super-frame as Read does when all segments fit.
func segmentAll(t *testing.T, super []byte, h vnetHdr) [][]byte {
	t.Helper()
	g, err := parseGSO(super, h)
	if err != nil {
		t.Fatal(err)
	}
	src := append([]byte{}, super...)
	out := make([][]byte, g.nseg)
	for i := 1; i < g.nseg; i++ {
		b := make([]byte, 65536)
		out[i] = b[:g.segment(b, src, i)]
	}
	out[0] = src[:g.segment(src, src, 0)]
	return out
}

func TestSegment(t *testing.T) {
	tests := []struct {
		name  string
		v6    bool
		plen  int
		gso   int
		flags byte
	}{
		{"v4 exact", false, 1448 * 4, 1448, tcpACK | tcpPSH},
		{"v4 short last", false, 1448*44 + 100, 1448, tcpACK | tcpPSH},
		{"v4 fin cwr", false, 5000, 1448, tcpACK | tcpPSH | tcpFIN | tcpCWR},
		{"v4 one", false, 1000, 1448, tcpACK},
		{"v6", true, 1428*10 + 1, 1428, tcpACK | tcpPSH},
		{"v6 max", true, 65535 - 40 - 32 + 40, 1428, tcpACK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := payload(tt.plen, uint64(tt.plen))
			super := tcpFrame(tt.v6, 1000, 0xfffff000, tt.flags, pl, "partial")
			segs := segmentAll(t, super, gsoHdr(tt.v6, tt.gso))
			want := (tt.plen + tt.gso - 1) / tt.gso
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
				wantFlags := tt.flags
				if i != len(segs)-1 {
					wantFlags &^= tcpFIN | tcpPSH
				}
				if i != 0 {
					wantFlags &^= tcpCWR
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
			g, _ := parseGSO(super, gsoHdr(tt.v6, tt.gso))
			for i := range segs {
				b := make([]byte, 65536)
				if s := b[:g.segment(b, super, i)]; !bytes.Equal(s, segs[i]) {
					t.Fatalf("segment %d cut out of place differs", i)
				}
			}
		})
	}
}

// vlanTag inserts an 802.1Q (or 802.1ad) tag after the MAC addresses.
func vlanTag(f []byte, tpid, vid uint16) []byte {
	tag := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tpid), vid)
	return append(append(append([]byte{}, f[:12]...), tag...), f[12:]...)
}

// TestSegmentVLAN: super-frames of a VLAN interface on the TAP (one or
// two tags) are cut like untagged ones, each segment keeping the tags;
// such frames are never coalesced.
func TestSegmentVLAN(t *testing.T) {
	for _, tags := range []int{1, 2} {
		for _, v6 := range []bool{false, true} {
			pl := payload(1448*3+5, 11)
			super := tcpFrame(v6, 9, 100, tcpACK|tcpPSH, pl, "partial")
			if tags == 2 {
				super = vlanTag(super, 0x8100, 7)
				super = vlanTag(super, 0x88a8, 42)
			} else {
				super = vlanTag(super, 0x8100, 42)
			}
			segs := segmentAll(t, super, gsoHdr(v6, 1448))
			if len(segs) != 4 {
				t.Fatalf("%d segments", len(segs))
			}
			var got []byte
			for _, sg := range segs {
				checkFrame(t, sg)
				if !bytes.Equal(sg[:12+4*tags], super[:12+4*tags]) {
					t.Fatal("tags changed")
				}
				ti, ok := parseTCP(sg, true)
				if !ok || ti.l2 != 14+4*tags {
					t.Fatalf("segment does not parse: %+v", ti)
				}
				got = append(got, sg[ti.hdrs:]...)
			}
			if !bytes.Equal(got, pl) {
				t.Fatal("payload differs")
			}
			if n, _ := coalesceRun(segs, make([]byte, superHdrMax)); n != 1 {
				t.Fatalf("tagged segments coalesced (%d)", n)
			}
		}
	}
}

// TestRoundTrip: segment → coalesce gives back the kernel's super-frame.
func TestRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, plen := range []int{1448 * 2, 1448*30 + 7, 1448 * 45} {
			gso := 1448
			if v6 {
				gso = 1428
			}
			pl := payload(plen, 7)
			super := tcpFrame(v6, 77, 12345, tcpACK|tcpPSH, pl, "partial")
			h := gsoHdr(v6, gso)
			segs := segmentAll(t, super, h)
			hdr := make([]byte, superHdrMax)
			n, hl := coalesceRun(segs, hdr)
			if n != len(segs) {
				t.Fatalf("v6=%v plen=%d: coalesced %d of %d", v6, plen, n, len(segs))
			}
			got := append([]byte{}, hdr[VnetHdrLen:hl]...)
			for _, s := range segs {
				got = append(got, s[hl-VnetHdrLen:]...)
			}
			if !bytes.Equal(got, super) {
				t.Fatalf("v6=%v plen=%d: round trip differs", v6, plen)
			}
			if gh := decodeVnetHdr(hdr); gh != h {
				t.Fatalf("virtio_net_hdr %+v, want %+v", gh, h)
			}
			// And the kernel's completion of NEEDS_CSUM gives a valid frame.
			if err := completeCsum(got, int(h.csumStart), int(h.csumOffset)); err != nil {
				t.Fatal(err)
			}
			checkFrame(t, got)
		}
	}
}

func TestCoalesceRules(t *testing.T) {
	seg := func(i int, flags byte, n int) []byte {
		return tcpFrame(false, uint16(10+i), uint32(1000+i*1448), flags, payload(n, uint64(i)), "full")
	}
	a := byte(tcpACK)
	udp := func() []byte {
		f := append(append([]byte{}, macB...), macA...)
		f = append(f, 0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, protoUDP, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2)
		return append(f, 0, 53, 0, 53, 0, 8, 0, 0)
	}
	mod := func(f []byte, fn func([]byte)) []byte { fn(f); return f }
	tests := []struct {
		name   string
		frames [][]byte
		runs   []int
	}{
		{"three", [][]byte{seg(0, a, 1448), seg(1, a, 1448), seg(2, a|tcpPSH, 100)}, []int{3}},
		{"psh ends run", [][]byte{seg(0, a, 1448), seg(1, a|tcpPSH, 1448), seg(2, a, 1448)}, []int{2, 1}},
		{"psh first", [][]byte{seg(0, a|tcpPSH, 1448), seg(1, a, 1448)}, []int{1, 1}},
		{"short middle", [][]byte{seg(0, a, 1448), seg(1, a, 1000), seg(2, a, 1000)}, []int{2, 1}},
		{"longer later", [][]byte{seg(0, a, 1000), seg(1, a, 1448)}, []int{1, 1}},
		{"out of order", [][]byte{seg(0, a, 1448), seg(2, a, 1448), seg(1, a, 1448)}, []int{1, 1, 1}},
		{"udp", [][]byte{udp(), udp()}, []int{1, 1}},
		{"udp between", [][]byte{seg(0, a, 1448), udp(), seg(1, a, 1448)}, []int{1, 1, 1}},
		{"fin", [][]byte{seg(0, a, 1448), seg(1, a|tcpFIN, 1448)}, []int{1, 1}},
		{"syn", [][]byte{seg(0, a|tcpSYN, 1448), seg(1, a, 1448)}, []int{1, 1}},
		{"pure ack", [][]byte{seg(0, a, 0), seg(0, a, 0)}, []int{1, 1}},
		{"other ack", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+8]++ })}, []int{1, 1}},
		{"other window", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+14]++ })}, []int{1, 1}},
		{"other tsval", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+27]++ })}, []int{1, 1}},
		{"other port", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[14+20+1]++ })}, []int{1, 1}},
		{"other tos", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[15] = 3 })}, []int{1, 1}},
		{"other mac", [][]byte{seg(0, a, 1448), mod(seg(1, a, 1448), func(f []byte) { f[0] ^= 2 })}, []int{1, 1}},
		{"padded", [][]byte{seg(0, a, 1448), append(seg(1, a, 1448), 0)}, []int{1, 1}},
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
			hdr := make([]byte, superHdrMax)
			var runs []int
			for i := 0; i < len(tt.frames); {
				n, _ := coalesceRun(tt.frames[i:], hdr)
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

func TestCompleteCsum(t *testing.T) {
	// TCP with the pseudo-header sum in place, as with NEEDS_CSUM.
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 1, 1, tcpACK, payload(333, 3), "partial")
		start := 14 + 20
		if v6 {
			start = 14 + 40
		}
		if err := completeCsum(f, start, 16); err != nil {
			t.Fatal(err)
		}
		checkFrame(t, f)
	}
	f := make([]byte, 40)
	if completeCsum(f, 14, 30) == nil || completeCsum(f, 4, 0) == nil {
		t.Fatal("out-of-range csum_start/offset accepted")
	}
}

func TestParseGSOErrors(t *testing.T) {
	f := tcpFrame(false, 1, 1, tcpACK, payload(3000, 1), "partial")
	h := gsoHdr(false, 1448)
	if _, err := parseGSO(f, vnetHdr{gsoType: vnetGSOUDP, gsoSize: 1448}); err != ErrGSOType {
		t.Fatalf("UDP GSO: %v", err)
	}
	if _, err := parseGSO(f, gsoHdr(true, 1448)); err != ErrGSOPacket {
		t.Fatalf("v6 type on v4: %v", err)
	}
	h.gsoSize = 0
	if _, err := parseGSO(f, h); err != ErrGSOPacket {
		t.Fatalf("gso_size 0: %v", err)
	}
	if _, err := parseGSO(f[:50], gsoHdr(false, 1448)); err != ErrGSOPacket {
		t.Fatalf("truncated: %v", err)
	}
}

// FuzzDecode feeds arbitrary virtio_net_hdr + frame bytes through Read's
// decoder: it must not panic, and every segment it produces is a valid
// TCP frame no longer than the headers plus gso_size.
func FuzzDecode(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		fr := tcpFrame(v6, 1, 1, tcpACK|tcpPSH, payload(4000, 2), "partial")
		h := make([]byte, VnetHdrLen)
		gsoHdr(v6, 1400).encode(h)
		f.Add(append(h, fr...))
		f.Add(append(append([]byte{}, h...), vlanTag(fr, 0x8100, 5)...))
		vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16}.encode(h)
		f.Add(append(h, fr...))
	}
	scratch := make([]byte, 65536)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < VnetHdrLen+14 || len(b) > VnetHdrLen+65535 {
			return
		}
		h := decodeVnetHdr(b)
		frame := append([]byte{}, b[VnetHdrLen:]...)
		if h.gsoType == vnetGSONone {
			if h.flags&vnetFlagNeedsCsum != 0 {
				_ = completeCsum(frame, int(h.csumStart), int(h.csumOffset))
			}
			return
		}
		g, err := parseGSO(frame, h)
		if err != nil {
			return
		}
		var total int
		for i := g.nseg - 1; i >= 0; i-- {
			dst := scratch
			if i == 0 {
				dst = frame
			}
			n := g.segment(dst, frame, i)
			if n > g.hdrs+g.gso || n <= g.hdrs {
				t.Fatalf("segment %d: %d bytes, headers %d, gso %d", i, n, g.hdrs, g.gso)
			}
			total += n - g.hdrs
			checkFrame(t, dst[:n])
		}
		if total != g.plen {
			t.Fatalf("segments carry %d bytes, super-frame %d", total, g.plen)
		}
	})
}
