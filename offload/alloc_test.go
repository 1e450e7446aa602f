package offload

import (
	"testing"

	ot "github.com/corralnet/corral/offload/offloadtest"
)

var sinkInt int

// TestSegmentCoalesceNoAllocs: cutting a super-frame (at once, and over
// several calls through Pending) and coalescing the segments back
// allocate nothing (STYLE 4.4).
func TestSegmentCoalesceNoAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		super := tcpFrame(v6, 1, 1, ot.ACK|ot.PSH, ot.Payload(1400*40, 1), "partial")
		s := mustParseSuper(t, super, v6, 1400)
		frames := make([][]byte, s.Segments)
		for i := range frames {
			frames[i] = make([]byte, 2048)
		}
		hdr := make([]byte, MaxHeadersLen)
		if a := testing.AllocsPerRun(50, func() {
			s, err := ParseSuper(super, v6, 1400)
			if err != nil {
				t.Fatal(err)
			}
			for i := range frames {
				frames[i] = frames[i][:cap(frames[i])]
				n, err := s.Segment(frames[i], super, i)
				if err != nil {
					t.Fatal(err)
				}
				frames[i] = frames[i][:n]
			}
			n, c := Coalesce(frames, hdr)
			if n != s.Segments {
				t.Fatalf("coalesced %d of %d", n, s.Segments)
			}
			sinkInt += c.HdrLen
		}); a != 0 {
			t.Fatalf("v6=%v: segment+coalesce: %v allocations per run, want 0", v6, a)
		}

		var p Pending
		p.Buf() // the one allocation, on first use
		dst := make([]byte, 2048)
		if a := testing.AllocsPerRun(50, func() {
			n := copy(p.Buf(), super)
			s, err := ParseSuper(p.Buf()[:n], v6, 1400)
			if err != nil {
				t.Fatal(err)
			}
			p.Start(s, n)
			for p.Remaining() > 0 {
				m, err := p.Next(dst)
				if err != nil {
					t.Fatal(err)
				}
				sinkInt += m
			}
		}); a != 0 {
			t.Fatalf("v6=%v: Pending: %v allocations per run, want 0", v6, a)
		}
	}
}

func BenchmarkSegment(b *testing.B) {
	super := tcpFrame(false, 1, 1, ot.ACK|ot.PSH, ot.Payload(1448*45, 1), "partial")
	s, err := ParseSuper(super, false, 1448)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(s.Payload))
	for b.Loop() {
		for i := 0; i < s.Segments; i++ {
			n, _ := s.Segment(dst, super, i)
			sinkInt += n
		}
	}
}

func BenchmarkCoalesce(b *testing.B) {
	var frames [][]byte
	for i := 0; i < 45; i++ {
		frames = append(frames, tcpFrame(false, uint16(i), uint32(i*1448), ot.ACK, ot.Payload(1448, uint64(i)), "full"))
	}
	hdr := make([]byte, MaxHeadersLen)
	b.ReportAllocs()
	for b.Loop() {
		n, _ := Coalesce(frames, hdr)
		sinkInt += n
	}
}
