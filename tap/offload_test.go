package tap

import (
	"bytes"
	"testing"

	ot "github.com/corralnet/corral/offload/offloadtest"
)

// The segmentation and coalescing rules themselves are tested in package
// offload; these tests cover the virtio_net_hdr side: decoding the
// kernel's GSO request, encoding ours, and what Read does with bad input.

// tcpFrame builds a test frame (offloadtest.TCPFrame); csum: "full"
// (valid checksum) or "partial" (the pseudo-header sum, as the kernel
// leaves it with NEEDS_CSUM).
func tcpFrame(v6 bool, id uint16, seq uint32, flags byte, payload []byte, csum string) []byte {
	return ot.TCPFrame(ot.Fields{IPv6: v6, ID: id, Seq: seq, Flags: flags, Payload: payload, Partial: csum == "partial"})
}

// checkFrame verifies an ordinary TCP or UDP frame: IPv4 header checksum,
// lengths, L4 checksum (offloadtest.Check).
func checkFrame(t *testing.T, f []byte) {
	t.Helper()
	if err := ot.Check(f); err != nil {
		t.Fatal(err)
	}
}

func payload(n int, seed uint64) []byte { return ot.Payload(n, seed) }

func gsoHdr(v6 bool, gso int) vnetHdr {
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 14 + 20 + 32, gsoSize: uint16(gso), csumStart: 14 + 20, csumOffset: 16}
	if v6 {
		h.gsoType, h.hdrLen, h.csumStart = vnetGSOTCPv6, 14+40+32, 14+40
	}
	return h
}

// segmentAll cuts a super-frame as Read does when all segments fit.
func segmentAll(t *testing.T, super []byte, h vnetHdr) [][]byte {
	t.Helper()
	g, err := parseGSO(super, h)
	if err != nil {
		t.Fatal(err)
	}
	src := append([]byte{}, super...)
	out := make([][]byte, g.Segments)
	for i := 1; i < g.Segments; i++ {
		b := make([]byte, 65536)
		n, err := g.Segment(b, src, i)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b[:n]
	}
	n, err := g.Segment(src, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	out[0] = src[:n]
	return out
}

// TestRoundTrip: segment → coalesce gives back the kernel's super-frame
// and its virtio_net_hdr.
func TestRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, plen := range []int{1448 * 2, 1448*30 + 7, 1448 * 45} {
			gso := 1448
			if v6 {
				gso = 1428
			}
			pl := payload(plen, 7)
			super := tcpFrame(v6, 77, 12345, ot.ACK|ot.PSH, pl, "partial")
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
	// Nothing to coalesce: n = 1, no header.
	one := tcpFrame(false, 1, 1, ot.ACK, payload(100, 1), "full")
	if n, hl := coalesceRun([][]byte{one, ot.UDPFrame()}, make([]byte, superHdrMax)); n != 1 || hl != 0 {
		t.Fatalf("coalesceRun of TCP+UDP = %d, %d; want 1, 0", n, hl)
	}
}

func TestCompleteCsum(t *testing.T) {
	// TCP with the pseudo-header sum in place, as with NEEDS_CSUM.
	for _, v6 := range []bool{false, true} {
		f := tcpFrame(v6, 1, 1, ot.ACK, payload(333, 3), "partial")
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
	if completeCsum(f, 14, 30) != ErrVnetHdr || completeCsum(f, 4, 0) != ErrVnetHdr {
		t.Fatal("out-of-range csum_start/offset accepted")
	}
}

func TestParseGSOErrors(t *testing.T) {
	f := tcpFrame(false, 1, 1, ot.ACK, payload(3000, 1), "partial")
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
	if _, err := parseGSO(tcpFrame(false, 1, 1, ot.ACK, nil, "partial"), gsoHdr(false, 1448)); err != ErrGSOPacket {
		t.Fatalf("no payload: %v", err)
	}
	ecn := gsoHdr(false, 1448)
	ecn.gsoType |= vnetGSOECN
	if g, err := parseGSO(f, ecn); err != nil || g.Segments != 3 {
		t.Fatalf("TCPv4|ECN: %d segments, %v; want 3, nil", g.Segments, err)
	}
}

// FuzzDecode feeds arbitrary virtio_net_hdr + frame bytes through Read's
// decoder: it must not panic, and every segment it produces is a valid
// TCP frame no longer than the headers plus gso_size.
func FuzzDecode(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		fr := tcpFrame(v6, 1, 1, ot.ACK|ot.PSH, payload(4000, 2), "partial")
		h := make([]byte, VnetHdrLen)
		gsoHdr(v6, 1400).encode(h)
		f.Add(append(h, fr...))
		f.Add(append(append([]byte{}, h...), ot.VLANTag(fr, 0x8100, 5)...))
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
		for i := g.Segments - 1; i >= 0; i-- {
			dst := scratch
			if i == 0 {
				dst = frame
			}
			n, err := g.Segment(dst, frame, i)
			if err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
			if n > g.Len()+g.MSS || n <= g.Len() {
				t.Fatalf("segment %d: %d bytes, headers %d, gso %d", i, n, g.Len(), g.MSS)
			}
			total += n - g.Len()
			checkFrame(t, dst[:n])
		}
		if total != g.Payload {
			t.Fatalf("segments carry %d bytes, super-frame %d", total, g.Payload)
		}
	})
}
