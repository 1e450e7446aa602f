package fence

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

func addSeeds(f *testing.F, target string) {
	for _, args := range fuzzSeeds(f)[target] {
		f.Add(args...)
	}
}

// FuzzParse: Parse never panics, and a frame it accepts re-encodes to the
// same bytes with Encap (decode then encode is the identity) and
// satisfies every documented check.
func FuzzParse(f *testing.F) {
	addSeeds(f, "FuzzParse")
	params := []Params{testParams, {}, {OUI: OUI{0x06, 0, 0}, Installation: 0xff, EtherType: 0x9000}}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range params {
			fr, err := p.Parse(b)
			if err != nil {
				if fr != nil {
					t.Fatalf("Parse returned a frame and %v", err)
				}
				continue
			}
			h := fr.Header()
			switch {
			case h.Version() != Version, h.FragType() == FragReserved, h.Fence() == ReservedFence,
				fr.Src().OUI() != p.oui(), fr.Src().Installation() != p.Installation,
				fr.Src().HostID() == 0, fr.Src().HostID() == 0xffff,
				fr.Type() != p.etherType(),
				h.FragType() != Last && len(fr.Inner()) < MinInnerLen, len(fr.Inner()) < 1:
				t.Fatalf("Parse accepted an invalid frame: % x", b)
			}
			re := make([]byte, len(b))
			copy(re[EncapLen:], fr.Inner())
			got := p.Encap(re, EncapLen, len(fr.Inner()), fr.Dst(), fr.Src(), h.Fields())
			if !bytes.Equal(got, b) {
				t.Fatalf("Encap(Parse(b)) = % x, want % x", []byte(got), b)
			}
		}
	})
}

// FuzzHeader: decode(encode(x)) == x for in-range fields, and
// encode(decode(b)) == b for any 4 bytes.
func FuzzHeader(f *testing.F) {
	addSeeds(f, "FuzzHeader")
	f.Fuzz(func(t *testing.T, b []byte, ver, ft, seq uint8, fence uint32) {
		if len(b) >= HeaderLen {
			h := Header(b[:HeaderLen])
			fields := h.Fields()
			got := make(Header, HeaderLen)
			got.Encode(&fields)
			if !bytes.Equal(got, h) {
				t.Fatalf("Encode(Fields(% x)) = % x", []byte(h), []byte(got))
			}
		}
		in := HeaderFields{Version: ver & 3, FragType: FragType(ft & 3), Seq: seq & SeqMask, Fence: fence & 0xffffff}
		h := make(Header, HeaderLen)
		h.Encode(&in)
		if out := h.Fields(); out != in {
			t.Fatalf("Fields(Encode(%+v)) = %+v", in, out)
		}
		if binary.BigEndian.Uint32(h)&0xffffff != in.Fence {
			t.Fatalf("fence not in the low 24 bits: % x", []byte(h))
		}
	})
}

// FuzzHelloDecode: Decode never panics; an accepted hello re-encodes and
// decodes to the same value, re-encoding is stable, and decoding into a
// dirty struct gives the same result as into a fresh one.
func FuzzHelloDecode(f *testing.F) {
	addSeeds(f, "FuzzHelloDecode")
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hello
		err := h.Decode(b)
		dirty := Hello{Version: 3, HostID: 9, Instance: 1, Name: "dirty", Fences: []uint32{1, 2, 3}, Gateways: []uint32{4}}
		if err2 := dirty.Decode(b); err2 != err || !helloEqual(&dirty, &h) {
			t.Fatalf("Decode into a dirty struct = %+v, %v; into a fresh one %+v, %v", dirty, err2, h, err)
		}
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("decoded hello does not validate: %v", err)
		}
		enc := h.AppendTo(nil)
		if len(enc) > MaxHelloLen || len(enc) > len(b) || // the flags byte is ignored, written as 0
			!bytes.Equal(enc[2:helloOffsetFlags], b[2:helloOffsetFlags]) || !bytes.Equal(enc[helloOffsetFlags+1:], b[helloOffsetFlags+1:len(enc)]) {
			t.Fatalf("AppendTo(Decode(b)) = % x, not a prefix of % x", enc, b)
		}
		var h2 Hello
		if err := h2.Decode(enc); err != nil || !helloEqual(&h, &h2) {
			t.Fatalf("Decode(AppendTo(h)) = %+v, %v; want %+v", h2, err, h)
		}
		if enc2 := h2.AppendTo(nil); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding not stable: % x then % x", enc, enc2)
		}
	})
}

// FuzzSplit: any frame that fits two fragments splits into fragments
// within maxLen that reassemble to the original.
func FuzzSplit(f *testing.F) {
	addSeeds(f, "FuzzSplit")
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, MaxInnerLen)
	f.Fuzz(func(t *testing.T, innerLen, maxLen uint16) {
		n, m := int(innerLen), int(maxLen)
		if n < MinInnerLen {
			return
		}
		inner := make([]byte, n)
		for i := range inner {
			inner[i] = byte(i*31 + n)
		}
		fr := encap(testParams, inner, BroadcastMAC, hostA, HeaderFields{Fence: 77})
		var fg Fragmenter
		first, last, err := fg.Split(fr, m, make([]byte, max(m, 0)))
		if err != nil {
			if err != ErrTooBig || (n+EncapLen > m && n <= 2*(m-EncapLen) && m-EncapLen >= MinInnerLen) {
				t.Fatalf("Split(%d, %d) = %v", n, m, err)
			}
			return
		}
		if last == nil {
			if n+EncapLen > m {
				t.Fatalf("Split(%d, %d) did not split", n, m)
			}
			return
		}
		if len(first) > m || len(last) > m || len(first.Inner()) < MinInnerLen {
			t.Fatalf("Split(%d, %d): fragments %d, %d", n, m, len(first), len(last))
		}
		if len(first) != m {
			t.Fatalf("Split(%d, %d): first fragment %d bytes, want as large as fits (%d)", n, m, len(first), m)
		}
		now := time.Unix(0, 0)
		if _, _, err := r.Add(first, now, out); err != nil {
			t.Fatal(err)
		}
		got, done, err := r.Add(last, now, out)
		if err != nil || !done || !bytes.Equal(got, inner) {
			t.Fatalf("Split(%d, %d) reassembled to %d bytes, %v", n, m, len(got), err)
		}
	})
}

// FuzzReassembler drives a Reassembler with fragments of frames that two
// honest senders (hosts A and B) actually sent — duplicated, reordered and
// lost as the input says — plus forged frames from host G built from raw
// input bytes, and clock jumps. Invariant: whatever it delivers for a
// fragment or frame from A or B is exactly the frame that sender sent with
// that Seq (whole frames: that frame) — never a mix; and it never panics.
//
// Input: byte 0 = number of frames per sender (1..16, so each sender's Seq
// does not wrap); then one size byte per frame; then ops of 2 bytes: op,
// arg. op%4 == 0,1: deliver fragment/frame arg of the honest set; 2: clock
// += arg*10ms; 3: forge arg%64 raw bytes from the rest of the input, with
// host G's source MAC, through Parse.
func FuzzReassembler(f *testing.F) {
	addSeeds(f, "FuzzReassembler")
	hostG := MakeOuterMAC(DefaultOUI, 1, 0x0666)
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) < 1 {
			return
		}
		nFrames := int(script[0]%16) + 1
		script = script[1:]
		type sent struct {
			src   OuterMAC
			fence uint32
			inner []byte
			fr    Frame
		}
		var pieces []sent
		for s, src := range []OuterMAC{hostA, hostB} {
			var fg Fragmenter
			for i := range nFrames {
				size := 0
				if i < len(script) {
					size = int(script[i])
				}
				var inner []byte
				n := 1455 + size*5 // 1455 … 2730: two fragments at 1472
				if size%5 == 0 {
					n = 60 + size // whole
				}
				if size%2 == 0 {
					inner = ipv4UDPFrame(n, byte(i+s*16))
				} else { // not IP: only the keying protects it
					inner = make([]byte, n)
					for j := range inner {
						inner[j] = byte(j + i*7 + s*50)
					}
				}
				fence := uint32(1 + (i+s)%2)
				fr := encap(testParams, inner, BroadcastMAC, src, HeaderFields{Fence: fence})
				first, last, err := fg.Split(fr, 1472, make([]byte, 1472))
				if err != nil {
					t.Fatal(err)
				}
				pieces = append(pieces, sent{src, fence, inner, first})
				if last != nil {
					pieces = append(pieces, sent{src, fence, inner, last})
				}
			}
		}
		if len(script) > nFrames {
			script = script[nFrames:]
		} else {
			script = nil
		}
		r := NewReassembler(ReassemblyConfig{MaxPerHost: 4, MaxTotal: 6, Timeout: 100 * time.Millisecond})
		out := make([]byte, MaxInnerLen)
		now := time.Unix(1000, 0)
		for len(script) >= 2 {
			op, arg := script[0], script[1]
			script = script[2:]
			switch op % 4 {
			case 0, 1:
				p := pieces[int(arg)%len(pieces)]
				if _, err := testParams.Parse(p.fr); err != nil {
					t.Fatalf("honest fragment does not parse: %v", err)
				}
				got, done, err := r.Add(p.fr, now, out)
				if done != (err == nil && got != nil) {
					t.Fatalf("done %v with %d bytes, err %v", done, len(got), err)
				}
				if done && !bytes.Equal(got, p.inner) {
					t.Fatalf("delivered %d bytes for a piece of a %d-byte frame from %v fence %d: not the frame sent",
						len(got), len(p.inner), p.src, p.fence)
				}
			case 2:
				now = now.Add(time.Duration(arg) * 10 * time.Millisecond)
			case 3:
				n := min(int(arg)%64, len(script))
				raw := make([]byte, EncapLen+n)
				copy(raw, pieces[int(arg)%len(pieces)].fr[:EncapLen])
				copy(raw[EncapLen:], script[:n])
				if n > 0 { // let the input choose the fence header too
					raw[14] = 0x40 | script[0]&0x3f
				}
				script = script[n:]
				copy(raw[FrameOffsetSrc:], hostG[:])
				fr, err := testParams.Parse(raw)
				if err != nil {
					continue
				}
				got, done, err := r.Add(fr, now, out)
				if done && (err != nil || len(got) > MaxInnerLen) {
					t.Fatalf("forged frame: done with %d bytes, %v", len(got), err)
				}
			}
			if p := r.Pending(); p > 6 {
				t.Fatalf("Pending = %d > MaxTotal 6", p)
			}
		}
	})
}
