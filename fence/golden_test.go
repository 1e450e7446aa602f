package fence

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/ and the fuzz seed corpora in testdata/fuzz/")

// goldenHello is the hello of the control vector.
var goldenHello = Hello{Version: 1, HostID: 0x02c2, Instance: 0x0123456789abcdef, Name: "lab1",
	Fences: []uint32{1, 2, 0xabcdef}, Gateways: []uint32{1}}

// goldenVectors builds the golden vectors with this package's encoder.
// TestGoldenDecode checks the files against DESIGN section 3 by hand.
func goldenVectors(t testing.TB) map[string][]byte {
	v := map[string][]byte{}
	// A whole frame: host 02:fe:0c:01:02:c2 to host 02:fe:0c:01:00:03,
	// fence 1, a 64-byte IPv4/UDP inner frame.
	v["whole.hex"] = encap(testParams, ipv4UDPFrame(64, 0), hostB, hostA, HeaderFields{Fence: 1})

	// A 1500-byte inner frame flooded on fence 0x000100 over UDP/IPv4 at
	// MTU 1500, Seq 3.
	var fg Fragmenter
	fg.seq.Store(3)
	fr := encap(testParams, ipv4UDPFrame(1500, 0), BroadcastMAC, hostA, HeaderFields{Fence: 0x000100})
	first, last, err := fg.Split(fr, MaxEncapLenUDP(1500, false), make([]byte, 1472))
	if err != nil {
		t.Fatal(err)
	}
	v["frag-first.hex"], v["frag-last.hex"] = first, last

	// A sealed whole frame (DESIGN 3.6): host 0x02c2 to host 0x0003,
	// fence 1, key ID 1 = DeriveFenceKey(goldenSecret, 1, 1), counter
	// 1000, AES-256-GCM, the inner frame of whole.hex.
	k, err := DeriveFenceKey([]byte(goldenSecret), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(SealConfig{Params: sealedParams, HostID: 0x02c2, Keys: []FenceKey{{ID: 1, Fence: 1, Key: k}}, Counter: 999})
	if err != nil {
		t.Fatal(err)
	}
	sb := make([]byte, SealedHeaderLen+64+SealTagLen)
	copy(sb[SealedHeaderLen:], ipv4UDPFrame(64, 0))
	if v["sealed.hex"], err = s.Encap(sb, SealedHeaderLen, 64, hostB, 1); err != nil {
		t.Fatal(err)
	}

	// A control frame (fence 0) carrying a hello, flooded.
	v["hello.hex"] = encap(testParams, goldenHello.AppendTo(nil), BroadcastMAC, hostA, HeaderFields{Fence: ControlFence})

	// Sealed as a host does with a 32-byte installation secret (bytes
	// 0x00 … 0x1f, goldenSecret32), AES-256-GCM, from host 0x02c2: its key
	// ID is KeyID(secret) and every fence key is DeriveFenceKey(secret,
	// 1, fence).
	// - the 1500-byte frame of frag-*.hex, flooded on fence 0x000100,
	//   counter 2000, split for UDP/IPv4 at MTU 1500 with Seq 3;
	// - the hello of hello.hex on fence 0, flooded, counter 3000.
	secret := goldenSecret32()
	id := KeyID(secret)
	kf, err := DeriveFenceKey(secret, 1, 0x000100)
	if err != nil {
		t.Fatal(err)
	}
	k0, err := DeriveFenceKey(secret, 1, ControlFence)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewSealer(SealConfig{Params: sealedParams, HostID: 0x02c2, Counter: 1999,
		Keys: []FenceKey{{ID: id, Fence: 0x000100, Key: kf}, {ID: id, Fence: ControlFence, Key: k0}}})
	if err != nil {
		t.Fatal(err)
	}
	big := ipv4UDPFrame(1500, 0)
	bb := make([]byte, SealedHeaderLen+len(big)+SealTagLen)
	copy(bb[SealedHeaderLen:], big)
	sf, err := s2.Encap(bb, SealedHeaderLen, len(big), BroadcastMAC, 0x000100)
	if err != nil {
		t.Fatal(err)
	}
	var sfg Fragmenter
	sfg.seq.Store(3)
	sfirst, slast, err := sfg.Split(sf, MaxEncapLenUDP(1500, false), make([]byte, 1472))
	if err != nil {
		t.Fatal(err)
	}
	v["sealed-frag-first.hex"], v["sealed-frag-last.hex"] = sfirst, slast
	s2.counter.Store(2999)
	hello := goldenHello.AppendTo(make([]byte, SealedHeaderLen, SealedHeaderLen+128))
	hb := append(hello, make([]byte, SealTagLen)...)
	if v["sealed-hello.hex"], err = s2.Encap(hb, SealedHeaderLen, len(hello)-SealedHeaderLen, BroadcastMAC, ControlFence); err != nil {
		t.Fatal(err)
	}
	return v
}

// goldenSecret32 is the installation secret of the sealed fragment and
// hello vectors: the 32 bytes 0x00 … 0x1f.
func goldenSecret32() []byte {
	b := make([]byte, SealKeyLen)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update ./fence/)", err)
	}
	return mustHex(t, string(b))
}

func TestGolden(t *testing.T) {
	for name, b := range goldenVectors(t) {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, formatHex(b), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got := readGolden(t, name); !bytes.Equal(got, b) {
			t.Errorf("%s: encoder output differs from the golden vector (run with -update if the change is intended)\ngot  % x\nwant % x", name, b, got)
		}
	}
	if *update {
		writeFuzzSeeds(t)
	}
}

// TestGoldenDecode reads the golden vectors and checks them field by field
// against values written by hand from DESIGN section 3.
func TestGoldenDecode(t *testing.T) {
	check := func(t *testing.T, what string, got []byte, wantHex string) {
		t.Helper()
		if want := mustHex(t, wantHex); !bytes.Equal(got, want) {
			t.Errorf("%s = % x, want % x", what, got, want)
		}
	}
	t.Run("whole", func(t *testing.T) {
		b := readGolden(t, "whole.hex")
		if len(b) != 18+64 {
			t.Fatalf("length %d, want 82", len(b))
		}
		check(t, "outer dst", b[0:6], "02 fe 0c 01 00 03")
		check(t, "outer src", b[6:12], "02 fe 0c 01 02 c2")
		check(t, "type", b[12:14], "88 b5")
		check(t, "fence header (Ver 1, whole, Seq 0, fence 1)", b[14:18], "40 00 00 01")
		check(t, "inner Ethernet header", b[18:32], "00 00 5e 00 53 02  00 00 5e 00 53 01  08 00")
		check(t, "inner IPv4 version/len", b[32:36], "45 00 00 32") // 64 - 14 = 50
		fr, err := testParams.Parse(b)
		if err != nil {
			t.Fatalf("Parse = %v", err)
		}
		if h := fr.Header(); h.Version() != 1 || h.FragType() != Whole || h.Seq() != 0 || h.Fence() != 1 {
			t.Errorf("header = %+v, want Ver 1 Whole Seq 0 fence 1", h.Fields())
		}
	})
	t.Run("fragments", func(t *testing.T) {
		f := readGolden(t, "frag-first.hex")
		l := readGolden(t, "frag-last.hex")
		// DESIGN 3.4: 18 + inner <= 1500 - 20 - 8 = 1472; 1454 inner bytes in the first.
		if len(f) != 1472 || len(l) != 18+46 {
			t.Fatalf("lengths %d, %d; want 1472, 64", len(f), len(l))
		}
		for _, b := range [][]byte{f, l} {
			check(t, "outer dst", b[0:6], "ff ff ff ff ff ff")
			check(t, "outer src", b[6:12], "02 fe 0c 01 02 c2")
			check(t, "type", b[12:14], "88 b5")
		}
		check(t, "first header (Ver 1, FT 1, Seq 3, fence 0x100)", f[14:18], "53 00 01 00")
		check(t, "last header (Ver 1, FT 2, Seq 3, fence 0x100)", l[14:18], "63 00 01 00")
		check(t, "inner start", f[18:36], "00 00 5e 00 53 02  00 00 5e 00 53 01  08 00  45 00 05 ce") // IPv4 total 1486
		// UDP payload byte i is i mod 256; inner offset 1454 is payload
		// byte 1454 - 42 = 1412 = 0x584, so the last carries 84 … b1.
		check(t, "last inner", l[18:], `84 85 86 87 88 89 8a 8b 8c 8d 8e 8f 90 91 92 93
			94 95 96 97 98 99 9a 9b 9c 9d 9e 9f a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af b0 b1`)
		check(t, "first inner end", f[1468:1472], "80 81 82 83")
		r := NewReassembler(ReassemblyConfig{})
		out := make([]byte, MaxInnerLen)
		for i, b := range [][]byte{f, l} {
			fr, err := testParams.Parse(b)
			if err != nil {
				t.Fatalf("Parse(fragment %d) = %v", i, err)
			}
			inner, done, err := r.Add(fr, t0, out)
			if err != nil || done != (i == 1) {
				t.Fatalf("Add(fragment %d) = %v, %v", i, done, err)
			}
			if done && len(inner) != 1500 {
				t.Errorf("reassembled %d bytes, want 1500", len(inner))
			}
		}
	})
	t.Run("sealed", func(t *testing.T) {
		// Checked independently once with Python's cryptography package:
		// AESGCM(key).decrypt(nonce = 01 02c2 00 00000000000003e8,
		// data = b[27:], associated_data = b[0:18]) == inner of whole.hex.
		b := readGolden(t, "sealed.hex")
		if len(b) != 18+1+8+64+16 {
			t.Fatalf("length %d, want 107", len(b))
		}
		check(t, "outer", b[0:14], "02 fe 0c 01 00 03  02 fe 0c 01 02 c2  88 b5")
		check(t, "fence header (Ver 2, whole, Seq 0, fence 1)", b[14:18], "80 00 00 01")
		check(t, "key ID", b[18:19], "01")
		check(t, "counter", b[19:27], "00 00 00 00 00 00 03 e8")
		check(t, "fence key", func() []byte { k, _ := DeriveFenceKey([]byte(goldenSecret), 1, 1); return k[:] }(), goldenFenceKey)
		k, _ := DeriveFenceKey([]byte(goldenSecret), 1, 1)
		r, err := NewSealer(SealConfig{Params: sealedParams, HostID: 3, Keys: []FenceKey{{ID: 1, Fence: 1, Key: k}}})
		if err != nil {
			t.Fatal(err)
		}
		fr, err := sealedParams.Parse(b)
		if err != nil {
			t.Fatalf("Parse = %v", err)
		}
		inner, _, err := r.Open(NewReplayTable(0), fr.Dst(), fr.Src(), fr.Header().Fence(), fr.Inner())
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		check(t, "inner", inner, string(formatHex(readGolden(t, "whole.hex")[18:])))
	})
	t.Run("sealed fragments", func(t *testing.T) {
		// Checked independently with Python's cryptography package (HKDF
		// and AESGCM): key = HKDF-SHA256(00…1f, info "corral fence key
		// v2" 01 000100), nonce = 01 02c2 00 00000000000007d0, AD =
		// first[0:14] · 80 00 01 00, ciphertext = first[27:] · last[18:].
		f := readGolden(t, "sealed-frag-first.hex")
		l := readGolden(t, "sealed-frag-last.hex")
		// 18 + 9 + 1500 + 16 = 1543 bytes sealed: a 1472-byte first and
		// the 71 remaining bytes after the headers of the last.
		if len(f) != 1472 || len(l) != 18+71 {
			t.Fatalf("lengths %d, %d; want 1472, 89", len(f), len(l))
		}
		for _, b := range [][]byte{f, l} {
			check(t, "outer", b[0:14], "ff ff ff ff ff ff  02 fe 0c 01 02 c2  88 b5")
		}
		check(t, "first header (Ver 2, FT 1, Seq 3, fence 0x100)", f[14:18], "93 00 01 00")
		check(t, "last header (Ver 2, FT 2, Seq 3, fence 0x100)", l[14:18], "a3 00 01 00")
		check(t, "key ID", f[18:19], fmt.Sprintf("%02x", goldenKeyID32))
		check(t, "counter", f[19:27], "00 00 00 00 00 00 07 d0")
		if bytes.Contains(f, ipv4UDPFrame(1500, 0)[14:60]) {
			t.Errorf("plaintext visible in the sealed first fragment")
		}
		openGoldenFragments(t, f, l, 0x000100, ipv4UDPFrame(1500, 0))
	})
	t.Run("sealed hello", func(t *testing.T) {
		// Independently: key = HKDF(…, info … 01 000000), nonce = 01 02c2
		// 00 0000000000000bb8, AD = b[0:14] · 80 00 00 00.
		b := readGolden(t, "sealed-hello.hex")
		if want := 18 + 9 + goldenHello.Len() + 16; len(b) != want {
			t.Fatalf("length %d, want %d", len(b), want)
		}
		check(t, "outer", b[0:14], "ff ff ff ff ff ff  02 fe 0c 01 02 c2  88 b5")
		check(t, "fence header (Ver 2, whole, control)", b[14:18], "80 00 00 00")
		check(t, "key ID", b[18:19], fmt.Sprintf("%02x", goldenKeyID32))
		check(t, "counter", b[19:27], "00 00 00 00 00 00 0b b8")
		r := goldenReceiver(t, ControlFence)
		fr, err := sealedParams.Parse(b)
		if err != nil {
			t.Fatalf("Parse = %v", err)
		}
		inner, _, err := r.Open(NewReplayTable(0), fr.Dst(), fr.Src(), ControlFence, fr.Inner())
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		var h Hello
		if err := h.Decode(inner); err != nil || !helloEqual(&h, &goldenHello) {
			t.Fatalf("Decode = %+v, %v; want the golden hello", h, err)
		}
		check(t, "hello", inner, string(formatHex(readGolden(t, "hello.hex")[18:])))
	})
	t.Run("hello", func(t *testing.T) {
		b := readGolden(t, "hello.hex")
		check(t, "outer", b[0:14], "ff ff ff ff ff ff  02 fe 0c 01 02 c2  88 b5")
		check(t, "fence header (control)", b[14:18], "40 00 00 00")
		check(t, "hello", b[18:], `
			01 01 02 c2
			01 23 45 67 89 ab cd ef
			04 00 00 03 00 01
			6c 61 62 31
			00 00 01  00 00 02  ab cd ef
			00 00 01`)
		// Type 1 (hello), version 1, host ID 0x02c2; instance; name
		// length 4, flags 0, 3 fences, 1 gateway; "lab1"; fences 1, 2,
		// 0xabcdef; gateway 1.
		fr, err := testParams.Parse(b)
		if err != nil {
			t.Fatalf("Parse = %v", err)
		}
		var h Hello
		if err := h.Decode(fr.Inner()); err != nil {
			t.Fatalf("Decode = %v", err)
		}
		want := Hello{Version: 1, HostID: 0x02c2, Instance: 0x0123456789abcdef, Name: "lab1",
			Fences: []uint32{1, 2, 0xabcdef}, Gateways: []uint32{1}}
		if !helloEqual(&h, &want) {
			t.Errorf("Decode = %+v, want %+v", h, want)
		}
	})
}

const goldenSecret = "0123456789abcdef-installation-secret"

// goldenKeyID and goldenKeyID32 are KeyID(goldenSecret) and
// KeyID(goldenSecret32()), computed independently with Python's hmac and
// hashlib (RFC 5869 by hand).
const (
	goldenKeyID   = 0x2a
	goldenKeyID32 = 0xea
)

// goldenReceiver is host 0x0003 holding the keys of fence derived from
// goldenSecret32.
func goldenReceiver(t testing.TB, fence uint32) *Sealer {
	t.Helper()
	secret := goldenSecret32()
	k, err := DeriveFenceKey(secret, 1, fence)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewSealer(SealConfig{Params: sealedParams, HostID: 3, Keys: []FenceKey{{ID: KeyID(secret), Fence: fence, Key: k}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openGoldenFragments reassembles first and last, opens the result with
// goldenReceiver and checks that it is want.
func openGoldenFragments(t testing.TB, first, last []byte, fence uint32, want []byte) {
	t.Helper()
	ra := NewReassembler(ReassemblyConfig{})
	out := make([]byte, MaxPayloadLen)
	var payload []byte
	for i, b := range [][]byte{first, last} {
		fr, err := sealedParams.Parse(b)
		if err != nil {
			t.Fatalf("Parse(fragment %d) = %v", i, err)
		}
		p, done, err := ra.Add(fr, t0, out)
		if err != nil || done != (i == 1) {
			t.Fatalf("Add(fragment %d) = %v, %v", i, done, err)
		}
		payload = p
	}
	inner, _, err := goldenReceiver(t, fence).Open(NewReplayTable(0), Frame(last).Dst(), Frame(last).Src(), fence, payload)
	if err != nil {
		t.Fatalf("Open(reassembled) = %v", err)
	}
	if !bytes.Equal(inner, want) {
		t.Fatalf("opened %d bytes, not the frame that was sealed", len(inner))
	}
}

// fuzzSeeds are the seed inputs of each fuzz target, built from the golden
// vectors; they are both added with f.Add and checked in under
// testdata/fuzz/<target>/ (written by -update).
func fuzzSeeds(t testing.TB) map[string]map[string][]any {
	v := goldenVectors(t)
	hello := v["hello.hex"][EncapLen:]
	return map[string]map[string][]any{
		"FuzzParse": {
			"whole": {v["whole.hex"]}, "first": {v["frag-first.hex"]}, "last": {v["frag-last.hex"]}, "hello": {v["hello.hex"]},
		},
		"FuzzHeader": {
			"whole": {v["whole.hex"][14:18], uint8(1), uint8(0), uint8(0), uint32(1)},
			"first": {v["frag-first.hex"][14:18], uint8(1), uint8(1), uint8(3), uint32(0x100)},
			"last":  {v["frag-last.hex"][14:18], uint8(1), uint8(2), uint8(3), uint32(0x100)},
		},
		"FuzzHelloDecode": {
			"golden": {hello}, "empty": {(&Hello{HostID: 1}).AppendTo(nil)},
		},
		"FuzzReassembler": {
			// n frames, sizes, then ops (see FuzzReassembler).
			"inorder":   {[]byte{3, 10, 200, 30, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5}},
			"reordered": {[]byte{5, 1, 2, 3, 4, 5, 0, 3, 0, 2, 0, 1, 5, 20, 0, 0, 7, 0, 0, 9, 6, 30, 7, 8}},
			"golden":    {append([]byte{16, 255, 0, 0, 6, 60}, v["frag-first.hex"][:60]...)},
		},
		"FuzzSealedOpen": {
			"golden": {v["sealed.hex"]}, "short": {v["sealed.hex"][:30]},
		},
		"FuzzSealedFragments": {
			"golden":  {v["sealed-frag-first.hex"], v["sealed-frag-last.hex"]},
			"swapped": {v["sealed-frag-last.hex"], v["sealed-frag-first.hex"]},
		},
		"FuzzSealedHello": {
			"golden": {v["sealed-hello.hex"]}, "short": {v["sealed-hello.hex"][:40]},
		},
		"FuzzSplit": {
			"udp4": {uint16(1500), uint16(1472)}, "raw": {uint16(9000), uint16(9014)}, "pad": {uint16(1455), uint16(1472)},
		},
	}
}

func writeFuzzSeeds(t testing.TB) {
	for target, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, args := range seeds {
			var b bytes.Buffer
			b.WriteString("go test fuzz v1\n")
			for _, a := range args {
				switch a := a.(type) {
				case []byte:
					fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(a)))
				default:
					fmt.Fprintf(&b, "%T(%d)\n", a, a)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
