package fence

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// pair returns the two fragments of inner, sent by src on fence with Seq
// seq, split for a UDP/IPv4 1500 uplink.
func pair(t testing.TB, src OuterMAC, fence uint32, seq uint8, inner []byte) (first, last Frame) {
	t.Helper()
	var fg Fragmenter
	fg.seq.Store(uint32(seq))
	fr := encap(testParams, inner, BroadcastMAC, src, HeaderFields{Fence: fence})
	first, last, err := fg.Split(fr, MaxEncapLenUDP(1500, false), make([]byte, 1500))
	if err != nil || last == nil {
		t.Fatalf("Split(%d bytes) = %v, last %v", len(inner), err, last != nil)
	}
	return first, last
}

// step is one Add and what it must return.
type step struct {
	fr      Frame
	at      time.Duration // since t0
	want    []byte        // delivered inner frame; nil = nothing
	wantErr error
}

func runSteps(t *testing.T, r *Reassembler, steps []step) {
	t.Helper()
	out := make([]byte, MaxInnerLen)
	for i, s := range steps {
		got, done, err := r.Add(s.fr, t0.Add(s.at), out)
		if err != s.wantErr {
			t.Fatalf("step %d: Add err = %v, want %v", i, err, s.wantErr)
		}
		if done != (s.want != nil) {
			t.Fatalf("step %d: done = %v, want %v", i, done, s.want != nil)
		}
		if !bytes.Equal(got, s.want) {
			t.Fatalf("step %d: delivered %d bytes, want %d bytes (a different frame)", i, len(got), len(s.want))
		}
	}
}

func TestReassembly(t *testing.T) {
	x := ipv4UDPFrame(1500, 0x10)
	y := ipv4UDPFrame(1500, 0x20) // same length as x, other content
	z := ipv4UDPFrame(1480, 0x30) // shorter
	xf, xl := pair(t, hostA, 1, 3, x)
	yf, yl := pair(t, hostA, 1, 3, y) // same key as x
	zf, zl := pair(t, hostA, 1, 4, z)
	bxf, bxl := pair(t, hostB, 1, 3, x) // same Seq, other host
	x2f, x2l := pair(t, hostA, 2, 3, x) // same Seq, other fence
	small := encap(testParams, ipv4UDPFrame(60, 1), BroadcastMAC, hostA, HeaderFields{Fence: 1})

	// A last fragment of x that claims to be one byte longer than its first.
	long := make(Frame, len(xf)+1)
	copy(long, xl[:EncapLen])
	// A last fragment of z, relabelled with x's Seq: same length check
	// passes (it is short), but the IPv4 length of x's first says 1500.
	zAsX := append(Frame(nil), zl...)
	zAsX.Header().SetFragType(Last, 3)

	tests := []struct {
		name  string
		steps []step
		stats ReassemblyStats
	}{
		{"in order", []step{{xf, 0, nil, nil}, {xl, 0, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1}},
		{"whole passes", []step{{small, 0, small.Inner(), nil}},
			ReassemblyStats{Whole: 1}},
		// One pending first per (host, Seq): x2f (host A, Seq 3, fence 2)
		// comes after xf (host A, Seq 3, fence 1) has completed.
		{"interleaved hosts, fences, seqs", []step{
			{xf, 0, nil, nil}, {bxf, 0, nil, nil}, {zf, 0, nil, nil},
			{small, 0, small.Inner(), nil},
			{zl, 0, z, nil}, {bxl, 0, x, nil}, {xl, 0, x, nil},
			{x2f, 0, nil, nil}, {x2l, 0, x, nil},
		}, ReassemblyStats{Whole: 1, Firsts: 4, Completed: 4}},
		{"reordered: last before first", []step{{xl, 0, nil, ErrOrphan}, {xf, 0, nil, nil}, {xl, 0, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1, Orphans: 1}},
		{"lost first", []step{{xl, 0, nil, ErrOrphan}},
			ReassemblyStats{Orphans: 1}},
		{"lost last expires", []step{{xf, 0, nil, nil}, {zf, time.Second + 1, nil, nil}, {xl, time.Second + 1, nil, ErrOrphan}},
			ReassemblyStats{Firsts: 2, Orphans: 1, Expired: 1}},
		{"last at exactly the timeout", []step{{xf, 0, nil, nil}, {xl, time.Second, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1}},
		{"duplicated first and last", []step{{xf, 0, nil, nil}, {xf, 0, nil, nil}, {xl, 0, x, nil}, {xl, 0, nil, ErrOrphan}},
			ReassemblyStats{Firsts: 2, Replaced: 1, Completed: 1, Orphans: 1}},
		{"new first with same key replaces", []step{{xf, 0, nil, nil}, {yf, 0, nil, nil}, {yl, 0, y, nil}, {xl, 0, nil, ErrOrphan}},
			ReassemblyStats{Firsts: 2, Replaced: 1, Completed: 1, Orphans: 1}},
		{"forged last from another host", []step{{xf, 0, nil, nil}, {bxl, 0, nil, ErrOrphan}, {xl, 0, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1, Orphans: 1}},
		{"forged last for another fence", []step{{xf, 0, nil, nil}, {x2l, 0, nil, ErrOrphan}, {xl, 0, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1, Orphans: 1}},
		{"last longer than first", []step{{xf, 0, nil, nil}, {long, 0, nil, ErrMismatch}, {xl, 0, x, nil}},
			ReassemblyStats{Firsts: 1, Completed: 1, Mismatched: 1}},
		{"IP length disagrees: both dropped", []step{{xf, 0, nil, nil}, {zAsX, 0, nil, ErrMismatch}, {xl, 0, nil, ErrOrphan}},
			ReassemblyStats{Firsts: 1, Mismatched: 1, Orphans: 1}},
		{"reserved frag type", []step{{mustFT(small, FragReserved), 0, nil, ErrFragType}},
			ReassemblyStats{Invalid: 1}},
		{"short", []step{{small[:10], 0, nil, ErrShort}},
			ReassemblyStats{Invalid: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReassembler(ReassemblyConfig{})
			runSteps(t, r, tt.steps)
			if got := r.Stats(); got != tt.stats {
				t.Errorf("Stats() = %+v\nwant       %+v", got, tt.stats)
			}
		})
	}
}

func mustFT(f Frame, ft FragType) Frame {
	g := append(Frame(nil), f...)
	g.Header().SetFragType(ft, 0)
	return g
}

func TestReassemblySameSeqOtherFenceReplaces(t *testing.T) {
	// Seq is per sending host, across fences: a first with the same host
	// and Seq on another fence means the pending one is 16 frames old.
	x := ipv4UDPFrame(1500, 1)
	xf, xl := pair(t, hostA, 1, 3, x)
	x2f, x2l := pair(t, hostA, 2, 3, x)
	r := NewReassembler(ReassemblyConfig{})
	runSteps(t, r, []step{{xf, 0, nil, nil}, {x2f, 0, nil, nil}, {xl, 0, nil, ErrOrphan}, {x2l, 0, x, nil}})
	if got := r.Stats().Replaced; got != 1 {
		t.Errorf("Replaced = %d, want 1", got)
	}
}

func TestReassemblySeqWrap(t *testing.T) {
	frames := make([][]byte, 40)
	firsts := make([]Frame, 40)
	lasts := make([]Frame, 40)
	var fg Fragmenter
	for i := range frames {
		frames[i] = ipv4UDPFrame(1500+i, byte(i)) // distinct lengths and contents
		fr := encap(testParams, frames[i], BroadcastMAC, hostA, HeaderFields{Fence: 1})
		f, l, err := fg.Split(fr, 1472, make([]byte, 1472))
		if err != nil {
			t.Fatal(err)
		}
		firsts[i], lasts[i] = f, l
		if got, want := f.Header().Seq(), uint8(i%16); got != want {
			t.Fatalf("frame %d Seq %d, want %d", i, got, want)
		}
	}
	t.Run("stale first evicted by window", func(t *testing.T) {
		// Frame 0's last is lost; frames 1..15 complete; frame 16 (Seq 0
		// again) loses its first: its last must not join frame 0's first.
		r := NewReassembler(ReassemblyConfig{})
		steps := []step{{firsts[0], 0, nil, nil}}
		for i := 1; i < 16; i++ {
			steps = append(steps, step{firsts[i], 0, nil, nil}, step{lasts[i], 0, frames[i], nil})
		}
		steps = append(steps, step{lasts[16], 0, nil, ErrOrphan})
		for i := 17; i < 40; i++ {
			steps = append(steps, step{firsts[i], 0, nil, nil}, step{lasts[i], 0, frames[i], nil})
		}
		runSteps(t, r, steps)
		if got := r.Stats().EvictedWindow; got != 1 {
			t.Errorf("EvictedWindow = %d, want 1", got)
		}
	})
	t.Run("all between lost: IP length refuses the glue", func(t *testing.T) {
		// Worst case inside the timeout: frame 0's first pending, frames
		// 1..15 and frame 16's first lost. Frame 16's last carries Seq 0.
		r := NewReassembler(ReassemblyConfig{})
		runSteps(t, r, []step{{firsts[0], 0, nil, nil}, {lasts[16], 0, nil, ErrMismatch}, {lasts[0], 0, nil, ErrOrphan}})
	})
	t.Run("reordered firsts within window", func(t *testing.T) {
		// Firsts of 5 and 4 swapped (Seq 5 then 4: 4 is 1 behind — kept;
		// 5 is 1 ahead of 4 — kept).
		r := NewReassembler(ReassemblyConfig{})
		runSteps(t, r, []step{
			{firsts[5], 0, nil, nil}, {firsts[4], 0, nil, nil},
			{lasts[4], 0, frames[4], nil}, {lasts[5], 0, frames[5], nil},
		})
	})
}

func TestReassemblyBounds(t *testing.T) {
	x := ipv4UDPFrame(1500, 0)
	t.Run("per host", func(t *testing.T) {
		r := NewReassembler(ReassemblyConfig{MaxPerHost: 3})
		var fs, ls [5]Frame
		for i := range fs {
			fs[i], ls[i] = pair(t, hostA, 1, uint8(i), x)
		}
		bf, bl := pair(t, hostB, 1, 0, x)
		runSteps(t, r, []step{
			{fs[0], 0, nil, nil}, {bf, 0, nil, nil}, {fs[1], 0, nil, nil}, {fs[2], 0, nil, nil},
			{fs[3], 0, nil, nil}, // evicts host A's oldest (Seq 0), not host B's
			{ls[0], 0, nil, ErrOrphan}, {bl, 0, x, nil},
			{ls[1], 0, x, nil}, {ls[2], 0, x, nil}, {ls[3], 0, x, nil},
		})
		if got := r.Stats().EvictedHost; got != 1 {
			t.Errorf("EvictedHost = %d, want 1", got)
		}
	})
	t.Run("total", func(t *testing.T) {
		r := NewReassembler(ReassemblyConfig{MaxPerHost: 4, MaxTotal: 4})
		var fs, ls [6]Frame
		for i := range fs {
			fs[i], ls[i] = pair(t, MakeOuterMAC(DefaultOUI, 1, uint16(10+i)), 1, 0, x)
		}
		var steps []step
		for i := range fs {
			steps = append(steps, step{fs[i], time.Duration(i), nil, nil})
		}
		steps = append(steps, step{ls[0], 10, nil, ErrOrphan}, step{ls[1], 10, nil, ErrOrphan})
		for i := 2; i < 6; i++ {
			steps = append(steps, step{ls[i], 10, x, nil})
		}
		runSteps(t, r, steps)
		if got := r.Stats().EvictedTotal; got != 2 {
			t.Errorf("EvictedTotal = %d, want 2", got)
		}
		if got := r.Pending(); got != 0 {
			t.Errorf("Pending = %d, want 0", got)
		}
	})
	t.Run("expire", func(t *testing.T) {
		r := NewReassembler(ReassemblyConfig{Timeout: 50 * time.Millisecond})
		for i := range 5 {
			f, _ := pair(t, hostA, 1, uint8(i), x)
			runSteps(t, r, []step{{f, time.Duration(i) * 10 * time.Millisecond, nil, nil}})
		}
		if n := r.Expire(t0.Add(75 * time.Millisecond)); n != 3 {
			t.Errorf("Expire = %d, want 3", n)
		}
		if n := r.Pending(); n != 2 {
			t.Errorf("Pending = %d, want 2", n)
		}
		if n := r.Expire(t0.Add(time.Hour)); n != 2 {
			t.Errorf("Expire = %d, want 2", n)
		}
		if got := r.Stats().Expired; got != 5 {
			t.Errorf("Expired = %d, want 5", got)
		}
	})
}

func TestReassemblyShortOut(t *testing.T) {
	x := ipv4UDPFrame(1500, 0)
	f, l := pair(t, hostA, 1, 0, x)
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 1499)
	if _, _, err := r.Add(f, t0, out); err != nil {
		t.Fatal(err)
	}
	if _, done, err := r.Add(l, t0, out); err != io.ErrShortBuffer || done {
		t.Fatalf("Add with short out = %v, %v; want io.ErrShortBuffer", done, err)
	}
	got, done, err := r.Add(l, t0, make([]byte, 1500))
	if err != nil || !done || !bytes.Equal(got, x) {
		t.Fatalf("Add after short out = %d bytes, %v, %v; want the frame", len(got), done, err)
	}
}

func TestReassemblyPaddedLast(t *testing.T) {
	// A sender that cuts "as large as fits" leaves a 10-byte last
	// fragment; on a raw uplink the NIC pads it to 60 bytes with zeros.
	x := ipv4UDPFrame(1454+10, 7)
	fr := encap(testParams, x, BroadcastMAC, hostA, HeaderFields{Fence: 1})
	first := append(Frame(nil), fr[:1472]...)
	first.Header().SetFragType(First, 9)
	last := make(Frame, MinEthernetLen)
	copy(last, fr[:EncapLen])
	copy(last[EncapLen:], fr[1472:])
	last.Header().SetFragType(Last, 9)
	r := NewReassembler(ReassemblyConfig{})
	runSteps(t, r, []step{{first, 0, nil, nil}, {last, 0, x, nil}})

	// The same padding on a last that is not minimum size is refused.
	long := append(last, 0)
	runSteps(t, r, []step{{first, 0, nil, nil}, {long, 0, nil, ErrMismatch}})
}

func TestIPFrameLen(t *testing.T) {
	v6 := make([]byte, 14+40+8)
	v6[12], v6[13] = 0x86, 0xdd
	v6[14] = 0x60
	v6[14+5] = 8
	tagged := append([]byte(nil), ipv4UDPFrame(100, 0)...)
	tagged = append(tagged[:12], append([]byte{0x81, 0x00, 0x00, 0x05}, tagged[12:]...)...)
	jumbo := append([]byte(nil), v6...)
	jumbo[14+5] = 0
	tests := []struct {
		name string
		b    []byte
		want int
	}{
		{"ipv4", ipv4UDPFrame(100, 0), 100},
		{"ipv6", v6, 62},
		{"vlan ipv4", tagged, 104},
		{"ipv6 jumbogram", jumbo, -1},
		{"arp", append(make([]byte, 12), 0x08, 0x06, 0, 1), -1},
		{"ipv4 truncated", ipv4UDPFrame(100, 0)[:30], -1},
		{"ipv4 wrong version", func() []byte { b := ipv4UDPFrame(100, 0); b[14] = 0x65; return b }(), -1},
		{"short", []byte{1, 2}, -1},
	}
	for _, tt := range tests {
		if got := ipFrameLen(tt.b); got != tt.want {
			t.Errorf("%s: ipFrameLen = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestReassemblyConcurrent(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	concurrently(t, 4, func(g int) error {
		src := MakeOuterMAC(DefaultOUI, 1, uint16(100+g))
		var fg Fragmenter
		out := make([]byte, MaxInnerLen)
		scratch := make([]byte, 1472)
		for i := range 200 {
			x := ipv4UDPFrame(1455+i%40, byte(g*50+i))
			fr := encap(testParams, x, BroadcastMAC, src, HeaderFields{Fence: uint32(g + 1)})
			f, l, err := fg.Split(fr, 1472, scratch)
			if err == nil {
				_, _, err = r.Add(f, t0, out)
			}
			var got []byte
			if err == nil {
				got, _, err = r.Add(l, t0, out)
			}
			if err == nil && !bytes.Equal(got, x) {
				err = fmt.Errorf("goroutine %d frame %d: wrong frame", g, i)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if got := r.Stats().Completed; got != 800 {
		t.Errorf("Completed = %d, want 800", got)
	}
}
