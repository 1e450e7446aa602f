package fence

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestSplit(t *testing.T) {
	udp4 := MaxEncapLenUDP(1500, false) // 1472
	tests := []struct {
		name      string
		inner     int
		maxLen    int
		scratch   int
		wantErr   error
		wantFirst int // encapsulated lengths; wantLast 0 = not split
		wantLast  int
	}{
		{"fits exactly", 1454, udp4, udp4, nil, 1472, 0},
		{"small", 60, udp4, 0, nil, 78, 0},
		{"1500 over udp4 1500", 1500, udp4, udp4, nil, 1472, 64},
		{"1455: first as large as fits, last short", 1455, udp4, udp4, nil, 1472, 19},
		{"1496: last exactly 60", 1496, udp4, udp4, nil, 1472, 60},
		{"two full", 2 * 1454, udp4, udp4, nil, 1472, 1472},
		{"needs three", 2*1454 + 1, udp4, udp4, ErrTooBig, 0, 0},
		{"jumbo over raw 9000", 9000, MaxEncapLenRaw(9000), 9014, nil, 9014, 22},
		{"maxLen too small", 40, EncapLen + 13, 100, ErrTooBig, 0, 0},
		{"tiny maxLen", 30, EncapLen + 20, 100, nil, EncapLen + 20, EncapLen + 10},
		{"scratch too small", 1500, udp4, 63, io.ErrShortBuffer, 0, 0},
		{"scratch just enough", 1500, udp4, 64, nil, 1472, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := make([]byte, tt.inner)
			for i := range inner {
				inner[i] = byte(i * 7)
			}
			fr := encap(testParams, inner, hostB, hostA, HeaderFields{Version: 1, Fence: 42})
			orig := append([]byte(nil), fr...)
			var fg Fragmenter
			first, last, err := fg.Split(fr, tt.maxLen, make([]byte, tt.scratch))
			if err != tt.wantErr {
				t.Fatalf("Split err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !bytes.Equal(fr, orig) {
					t.Errorf("Split changed the frame on error")
				}
				if fg.seq.Load() != 0 {
					t.Errorf("Split used a Seq on error")
				}
				return
			}
			if len(first) != tt.wantFirst || len(last) != tt.wantLast {
				t.Fatalf("Split lengths = %d, %d; want %d, %d", len(first), len(last), tt.wantFirst, tt.wantLast)
			}
			if tt.wantLast == 0 {
				if &first[0] != &fr[0] || !bytes.Equal(first, orig) {
					t.Errorf("Split of a fitting frame did not return it unchanged")
				}
				return
			}
			if len(first) > tt.maxLen || len(last) > tt.maxLen {
				t.Errorf("fragment exceeds maxLen %d", tt.maxLen)
			}
			for i, f := range []Frame{first, last} {
				if _, err := testParams.Parse(f); err != nil {
					t.Errorf("fragment %d does not parse: %v", i, err)
				}
				if !bytes.Equal(f[:OuterHeaderLen], orig[:OuterHeaderLen]) {
					t.Errorf("fragment %d outer header % x, want % x", i, f[:OuterHeaderLen], orig[:OuterHeaderLen])
				}
			}
			if got, want := first.Header().Fields(), (HeaderFields{Version: 1, FragType: First, Seq: 0, Fence: 42}); got != want {
				t.Errorf("first header %+v, want %+v", got, want)
			}
			if got, want := last.Header().Fields(), (HeaderFields{Version: 1, FragType: Last, Seq: 0, Fence: 42}); got != want {
				t.Errorf("last header %+v, want %+v", got, want)
			}
			if got := append(append([]byte(nil), first.Inner()...), last.Inner()...); !bytes.Equal(got, inner) {
				t.Errorf("first+last inner != original inner")
			}
		})
	}
}

func TestSplitSeq(t *testing.T) {
	var fg Fragmenter
	scratch := make([]byte, 1472)
	for i := range 40 {
		fr := encap(testParams, make([]byte, 1500), hostB, hostA, HeaderFields{Fence: 1})
		first, last, err := fg.Split(fr, 1472, scratch)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := first.Header().Seq(), uint8(i%16); got != want {
			t.Fatalf("frame %d: first Seq %d, want %d", i, got, want)
		}
		if got, want := last.Header().Seq(), uint8(i%16); got != want {
			t.Fatalf("frame %d: last Seq %d, want %d", i, got, want)
		}
		// Whole frames do not use a Seq.
		if _, l, _ := fg.Split(encap(testParams, make([]byte, 100), hostB, hostA, HeaderFields{Fence: 1}), 1472, scratch); l != nil {
			t.Fatal("small frame was split")
		}
	}
	t.Run("already a fragment", func(t *testing.T) {
		fr := encap(testParams, make([]byte, 1500), hostB, hostA, HeaderFields{FragType: First, Fence: 1})
		if _, _, err := fg.Split(fr, 1472, scratch); err != ErrFragType {
			t.Errorf("Split(first fragment) = %v, want ErrFragType", err)
		}
	})
}

// TestSplitReassemble: every size that fits two fragments at several MTUs
// comes back intact.
func TestSplitReassemble(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, MaxInnerLen)
	scratch := make([]byte, MaxInnerLen)
	var fg Fragmenter
	now := time.Unix(1000, 0)
	for _, maxLen := range []int{MaxEncapLenUDP(576, true), MaxEncapLenUDP(1500, false), MaxEncapLenRaw(1500), MaxEncapLenRaw(9000)} {
		for _, n := range []int{42, 100, maxLen - EncapLen, maxLen - EncapLen + 1, maxLen - EncapLen + 41, maxLen - EncapLen + 42, 1500, 2*(maxLen-EncapLen) - 1, 2 * (maxLen - EncapLen)} {
			if n < 42 || n > 2*(maxLen-EncapLen) {
				continue
			}
			for _, ip := range []bool{false, true} {
				var inner []byte
				if ip {
					inner = ipv4UDPFrame(n, byte(n))
				} else {
					inner = make([]byte, n)
					for i := range inner {
						inner[i] = byte(i ^ n)
					}
				}
				fr := encap(testParams, inner, hostB, hostA, HeaderFields{Fence: 3})
				first, last, err := fg.Split(fr, maxLen, scratch)
				if err != nil {
					t.Fatalf("maxLen %d inner %d: %v", maxLen, n, err)
				}
				got, done, err := r.Add(first, now, out)
				if last != nil {
					if err != nil || done {
						t.Fatalf("maxLen %d inner %d: Add(first) = %v, %v", maxLen, n, done, err)
					}
					got, done, err = r.Add(last, now, out)
				}
				if err != nil || !done || !bytes.Equal(got, inner) {
					t.Fatalf("maxLen %d inner %d ip %v: reassembled %d bytes, done %v, err %v; want the %d sent",
						maxLen, n, ip, len(got), done, err, n)
				}
			}
		}
	}
	if p := r.Pending(); p != 0 {
		t.Errorf("Pending() = %d, want 0", p)
	}
}

func TestErrorsDistinct(t *testing.T) {
	errs := []error{ErrShort, ErrEtherType, ErrOUI, ErrInstallation, ErrHostID, ErrDst, ErrVersion,
		ErrFragType, ErrReservedFence, ErrRunt, ErrTooBig, ErrOrphan, ErrMismatch}
	for i, a := range errs {
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}
