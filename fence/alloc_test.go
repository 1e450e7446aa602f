package fence

import (
	"testing"
	"time"
)

var (
	sinkFrame Frame
	sinkBytes []byte
	sinkErr   error
)

func TestNoAllocs(t *testing.T) {
	inner := ipv4UDPFrame(1500, 0)
	whole := encap(testParams, inner[:1000], hostB, hostA, HeaderFields{Fence: 1})
	buf := make([]byte, 64+len(inner))
	copy(buf[64:], inner)
	scratch := make([]byte, 1472)
	out := make([]byte, MaxInnerLen)
	var fg Fragmenter
	r := NewReassembler(ReassemblyConfig{})
	now := time.Unix(5000, 0)

	tests := []struct {
		name string
		fn   func()
	}{
		{"Parse", func() { sinkFrame, sinkErr = testParams.Parse(whole) }},
		{"Parse drop", func() { sinkFrame, sinkErr = Params{Installation: 2}.Parse(whole) }},
		{"Encap", func() {
			sinkFrame = testParams.Encap(buf, 64, len(inner), hostB, hostA, HeaderFields{Fence: 1})
		}},
		{"Split", func() {
			fr := testParams.Encap(buf, 64, len(inner), hostB, hostA, HeaderFields{Fence: 1})
			_, sinkFrame, sinkErr = fg.Split(fr, 1472, scratch)
		}},
		{"Header", func() {
			h := whole.Header()
			h.Encode(&HeaderFields{Version: 1, Fence: h.Fence()})
			sinkBytes = h
		}},
		{"reassemble pair", func() {
			fr := testParams.Encap(buf, 64, len(inner), hostB, hostA, HeaderFields{Fence: 1})
			first, last, _ := fg.Split(fr, 1472, scratch)
			if _, _, err := r.Add(first, now, out); err != nil {
				panic(err)
			}
			got, done, err := r.Add(last, now, out)
			if !done || err != nil || len(got) != 1500 {
				panic("reassembly failed")
			}
			sinkBytes = got
			now = now.Add(time.Millisecond)
		}},
		{"orphan last", func() {
			fr := testParams.Encap(buf, 64, len(inner), hostB, hostA, HeaderFields{Fence: 1})
			_, last, _ := fg.Split(fr, 1472, scratch)
			sinkBytes, _, sinkErr = r.Add(last, now, out)
		}},
		{"whole through reassembler", func() { sinkBytes, _, sinkErr = r.Add(whole, now, out) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn() // warm up pooled buffers
			if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
				t.Errorf("%s: %v allocations per run, want 0", tt.name, n)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	fr := encap(testParams, ipv4UDPFrame(1500, 0), hostB, hostA, HeaderFields{Fence: 1})
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		sinkFrame, sinkErr = testParams.Parse(fr)
	}
}

func BenchmarkEncap(b *testing.B) {
	buf := make([]byte, 64+1500)
	b.ReportAllocs()
	for b.Loop() {
		sinkFrame = testParams.Encap(buf, 64, 1500, hostB, hostA, HeaderFields{Fence: 1})
	}
}

func BenchmarkSplitReassemble(b *testing.B) {
	inner := ipv4UDPFrame(1500, 0)
	buf := make([]byte, 64+len(inner))
	copy(buf[64:], inner)
	scratch := make([]byte, 1472)
	out := make([]byte, MaxInnerLen)
	var fg Fragmenter
	r := NewReassembler(ReassemblyConfig{})
	now := time.Unix(5000, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(inner)))
	for b.Loop() {
		fr := testParams.Encap(buf, 64, len(inner), hostB, hostA, HeaderFields{Fence: 1})
		first, last, _ := fg.Split(fr, 1472, scratch)
		r.Add(first, now, out)
		sinkBytes, _, sinkErr = r.Add(last, now, out)
	}
}
