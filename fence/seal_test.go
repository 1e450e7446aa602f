package fence

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"
)

var sealedParams = Params{Installation: 1, Sealed: true}

func testKey(t testing.TB, id uint8, fence uint32) FenceKey {
	t.Helper()
	k, err := DeriveFenceKey([]byte("0123456789abcdef-installation-secret"), 1, fence)
	if err != nil {
		t.Fatal(err)
	}
	k[0] ^= id // distinct keys per ID
	return FenceKey{ID: id, Fence: fence, Key: k}
}

func newTestSealer(t testing.TB, host uint16, counter uint64, keys ...FenceKey) *Sealer {
	t.Helper()
	s, err := NewSealer(SealConfig{Params: sealedParams, HostID: host, Keys: keys, Counter: counter})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seal returns inner sealed on fence by s, from s's host to dst.
func seal(t testing.TB, s *Sealer, inner []byte, dst OuterMAC, fence uint32) Frame {
	t.Helper()
	b := make([]byte, SealedHeaderLen+len(inner)+SealTagLen)
	copy(b[SealedHeaderLen:], inner)
	fr, err := s.Encap(b, SealedHeaderLen, len(inner), dst, fence)
	if err != nil {
		t.Fatal(err)
	}
	return fr
}

func TestDeriveFenceKey(t *testing.T) {
	secret := []byte("0123456789abcdef-installation-secret")
	k1, _ := DeriveFenceKey(secret, 1, 1)
	k2, _ := DeriveFenceKey(secret, 1, 2)
	k1b, _ := DeriveFenceKey(secret, 2, 1)
	again, _ := DeriveFenceKey(secret, 1, 1)
	if k1 == k2 || k1 == k1b || k1 != again {
		t.Errorf("keys not distinct per fence/installation or not deterministic")
	}
	// Pin the derivation (HKDF-SHA256, info "corral fence key v2" · 01 · 000001)
	// so that it never changes silently: interoperability depends on it.
	if got, want := hex.EncodeToString(k1[:]), goldenFenceKey; got != want {
		t.Errorf("DeriveFenceKey = %s, want %s", got, want)
	}
	if _, err := DeriveFenceKey([]byte("short"), 1, 1); err == nil {
		t.Errorf("short secret accepted")
	}
}

func TestSealOpen(t *testing.T) {
	a := newTestSealer(t, 0x02c2, 1000, testKey(t, 1, 1), testKey(t, 1, 2))
	b := newTestSealer(t, 0x0003, 5000, testKey(t, 1, 1), testKey(t, 1, 2))
	c := newTestSealer(t, 0x0004, 1, testKey(t, 1, 2)) // has fence 2 only
	x := ipv4UDPFrame(200, 3)
	fr := seal(t, a, x, hostB, 1)

	t.Run("layout", func(t *testing.T) {
		if got, want := len(fr), EncapLen+SealOverhead+len(x); got != want {
			t.Fatalf("sealed length %d, want %d", got, want)
		}
		if got := fr.Header().Fields(); got != (HeaderFields{Version: 2, Fence: 1}) {
			t.Errorf("header %+v, want version 2 fence 1", got)
		}
		if !bytes.Equal(fr[14:18], []byte{0x80, 0, 0, 1}) {
			t.Errorf("fence header % x, want 80 00 00 01", fr[14:18])
		}
		if fr[18] != 1 {
			t.Errorf("key ID %d, want 1", fr[18])
		}
		if !bytes.Equal(fr[19:27], []byte{0, 0, 0, 0, 0, 0, 0x03, 0xe9}) {
			t.Errorf("counter % x, want 1001", fr[19:27])
		}
		if bytes.Contains(fr, x[14:60]) {
			t.Errorf("plaintext visible in the sealed frame")
		}
	})
	t.Run("open", func(t *testing.T) {
		in, err := sealedParams.Parse(append([]byte(nil), fr...))
		if err != nil {
			t.Fatalf("Parse(sealed) = %v", err)
		}
		got, err := b.Open(in.Dst(), in.Src(), in.Header().Fence(), in.Inner())
		if err != nil || !bytes.Equal(got, x) {
			t.Fatalf("Open = %d bytes, %v; want the inner frame", len(got), err)
		}
		if _, err := b.Open(in.Dst(), in.Src(), 1, append([]byte(nil), fr.Inner()...)); err != ErrReplay {
			t.Errorf("replayed Open = %v, want ErrReplay", err)
		}
	})
	t.Run("unsealed parse drops sealed and vice versa", func(t *testing.T) {
		if _, err := testParams.Parse(fr); err != ErrVersion {
			t.Errorf("Params{}.Parse(sealed) = %v, want ErrVersion", err)
		}
		plain := encap(testParams, x, hostB, hostA, HeaderFields{Fence: 1})
		if _, err := sealedParams.Parse(plain); err != ErrVersion {
			t.Errorf("Sealed Parse(plain) = %v, want ErrVersion", err)
		}
	})
	t.Run("host without the fence key", func(t *testing.T) {
		if _, err := c.Open(fr.Dst(), fr.Src(), 1, append([]byte(nil), fr.Inner()...)); err != ErrNoKey {
			t.Errorf("Open without key = %v, want ErrNoKey", err)
		}
		if _, err := c.Encap(make([]byte, 300), 64, 100, hostB, 1); err != ErrNoKey {
			t.Errorf("Encap without key = %v, want ErrNoKey", err)
		}
		// c cannot forge fence 1 with its fence-2 key: relabel a fence-2 frame.
		f2 := seal(t, c, x, hostB, 2)
		f2.Header().Encode(&HeaderFields{Version: 2, Fence: 1})
		if _, err := b.Open(f2.Dst(), f2.Src(), 1, f2.Inner()); err != ErrAuth {
			t.Errorf("relabelled fence = %v, want ErrAuth", err)
		}
	})
	t.Run("tampering", func(t *testing.T) {
		fresh := newTestSealer(t, 0x0003, 1, testKey(t, 1, 1))
		orig := seal(t, a, x, hostB, 1)
		authFailures, noKeys := uint64(0), uint64(0)
		for i := range orig {
			if i == 18 {
				continue // key ID: flips give ErrNoKey, checked below
			}
			if i == 14 {
				// Ver is Parse's check; FT and Seq are not authenticated
				// (fragmentation rewrites them); Open authenticates the
				// whole frame they describe.
				continue
			}
			m := append(Frame(nil), orig...)
			m[i] ^= 0x01
			if _, err := sealedParams.Parse(m); err != nil {
				continue // outer header checks catch it first
			}
			_, err := fresh.Open(m.Dst(), m.Src(), m.Header().Fence(), m.Inner())
			switch {
			case err == ErrAuth:
				authFailures++
			case err == ErrNoKey && i >= 15 && i < 18: // fence ID without a key
				noKeys++
			default:
				t.Fatalf("flipping byte %d: Open = %v, want ErrAuth", i, err)
			}
		}
		m := append(Frame(nil), orig...)
		m[18] = 7
		if _, err := fresh.Open(m.Dst(), m.Src(), 1, m.Inner()); err != ErrNoKey {
			t.Errorf("unknown key ID = %v, want ErrNoKey", err)
		}
		if _, err := fresh.Open(orig.Dst(), orig.Src(), 1, orig.Inner()[:SealOverhead-1]); err != ErrSealLen {
			t.Errorf("short = %v, want ErrSealLen", err)
		}
		if got := fresh.Stats(); got.AuthFailed != authFailures || got.NoKey != noKeys+1 || authFailures < uint64(len(orig)-20) {
			t.Errorf("Stats = %+v, want %d auth failures, %d no-key", got, authFailures, noKeys+1)
		}
	})
	t.Run("fragmented", func(t *testing.T) {
		big := ipv4UDPFrame(1500, 9)
		s := seal(t, a, big, BroadcastMAC, 2)
		var fg Fragmenter
		first, last, err := fg.Split(s, MaxEncapLenUDP(1500, false), make([]byte, 1500))
		if err != nil || last == nil {
			t.Fatalf("Split(sealed) = %v", err)
		}
		r := NewReassembler(ReassemblyConfig{})
		out := make([]byte, MaxInnerLen)
		if _, err := sealedParams.Parse(first); err != nil {
			t.Fatal(err)
		}
		if _, err := sealedParams.Parse(last); err != nil {
			t.Fatal(err)
		}
		r.Add(first, t0, out)
		payload, done, err := r.Add(last, t0, out)
		if !done || err != nil {
			t.Fatalf("reassembly = %v, %v", done, err)
		}
		got, err := b.Open(last.Dst(), last.Src(), 2, payload)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("Open(reassembled) = %d bytes, %v", len(got), err)
		}
	})
}

func TestSealKeyRotation(t *testing.T) {
	old, cur := testKey(t, 1, 1), testKey(t, 2, 1)
	sendOld, err := NewSealer(SealConfig{Params: sealedParams, HostID: 5, Keys: []FenceKey{old, cur}, SendKeyID: map[uint32]uint8{1: 1}})
	if err != nil {
		t.Fatal(err)
	}
	sendNew := newTestSealer(t, 6, 0, old, cur) // highest ID by default
	recv := newTestSealer(t, 7, 0, old, cur)
	recvNewOnly := newTestSealer(t, 8, 0, cur)
	x := ipv4UDPFrame(100, 1)
	fo, fn := seal(t, sendOld, x, BroadcastMAC, 1), seal(t, sendNew, x, BroadcastMAC, 1)
	if fo[18] != 1 || fn[18] != 2 {
		t.Fatalf("key IDs %d, %d; want 1, 2", fo[18], fn[18])
	}
	for _, tt := range []struct {
		name string
		s    *Sealer
		fr   Frame
		want error
	}{
		{"old key, both live", recv, fo, nil},
		{"new key, both live", recv, fn, nil},
		{"old key retired", recvNewOnly, fo, ErrNoKey},
		{"new key", recvNewOnly, fn, nil},
	} {
		fr := append(Frame(nil), tt.fr...)
		if _, err := tt.s.Open(fr.Dst(), fr.Src(), 1, fr.Inner()); err != tt.want {
			t.Errorf("%s: Open = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := NewSealer(SealConfig{Params: sealedParams, HostID: 5, Keys: []FenceKey{old}, SendKeyID: map[uint32]uint8{1: 9}}); err == nil {
		t.Errorf("SendKeyID naming a missing key accepted")
	}
	if _, err := NewSealer(SealConfig{Params: sealedParams, HostID: 5, Keys: []FenceKey{old, old}}); err == nil {
		t.Errorf("duplicate key accepted")
	}
}

func TestSealCustomAEAD(t *testing.T) {
	calls := 0
	s, err := NewSealer(SealConfig{Params: sealedParams, HostID: 9, Keys: []FenceKey{testKey(t, 1, 1)},
		NewAEAD: func(key []byte) (cipher.AEAD, error) { calls++; return NewAESGCM(key) }})
	if err != nil || calls != 1 {
		t.Fatalf("NewSealer = %v, NewAEAD called %d times", err, calls)
	}
	if _, err := NewSealer(SealConfig{Params: sealedParams, HostID: 9, Keys: []FenceKey{testKey(t, 1, 1)},
		NewAEAD: func(key []byte) (cipher.AEAD, error) { b, _ := NewAESGCM(key); return shortTag{b}, nil }}); err == nil {
		t.Errorf("AEAD with an 8-byte tag accepted")
	}
	_ = s
}

type shortTag struct{ cipher.AEAD }

func (shortTag) Overhead() int { return 8 }

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		c    uint64
		want bool
	}{
		{100, true}, {100, false}, {99, true}, {99, false}, {101, true}, {5000, true},
		{5000 - ReplayWindow, true}, {5000 - ReplayWindow - 1, false}, {4999, true}, {101, false},
		{1 << 40, true}, {5000, false}, {1<<40 - 1, true}, {1<<40 - 1, false}, {1<<40 + 64*40, true}, {1<<40 + 1, false},
	}
	for i, s := range steps {
		pre := w.check(s.c)
		if got := w.update(s.c); got != s.want || pre != s.want {
			t.Fatalf("step %d: counter %d: check %v, update %v; want %v", i, s.c, pre, got, s.want)
		}
	}
}

func TestSealNoAllocs(t *testing.T) {
	a := newTestSealer(t, 0x02c2, 1000, testKey(t, 1, 1))
	b := newTestSealer(t, 0x0003, 1, testKey(t, 1, 1))
	x := ipv4UDPFrame(1400, 3)
	buf := make([]byte, 64+len(x)+SealTagLen)
	fn := func() {
		copy(buf[64:], x)
		fr, err := a.Encap(buf, 64, len(x), hostB, 1)
		if err != nil {
			panic(err)
		}
		got, err := b.Open(fr.Dst(), fr.Src(), 1, fr.Inner())
		if err != nil || len(got) != len(x) {
			panic(err)
		}
		sinkBytes = got
	}
	fn()
	if n := testing.AllocsPerRun(500, fn); n != 0 {
		t.Errorf("seal+open: %v allocations per run, want 0", n)
	}
}

func BenchmarkSealOpen(b *testing.B) {
	a := newTestSealer(b, 0x02c2, 1000, testKey(b, 1, 1))
	r := newTestSealer(b, 0x0003, 1, testKey(b, 1, 1))
	x := ipv4UDPFrame(1400, 3)
	buf := make([]byte, 64+len(x)+SealTagLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(x)))
	for b.Loop() {
		fr, _ := a.Encap(buf, 64, len(x), hostB, 1)
		sinkBytes, sinkErr = r.Open(fr.Dst(), fr.Src(), 1, fr.Inner())
	}
}

// FuzzSealedOpen: mutations of a sealed whole frame never open, except the
// frame as sealed, which opens to the frame that was sealed. The Seq bits
// of a whole frame carry nothing and are not authenticated (fragmentation
// rewrites FT and Seq), so they may differ.
func FuzzSealedOpen(f *testing.F) {
	addSeeds(f, "FuzzSealedOpen")
	orig := goldenVectors(f)["sealed.hex"]
	x := ipv4UDPFrame(64, 0)
	k, err := DeriveFenceKey([]byte(goldenSecret), 1, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newTestSealer(t, 0x0003, 1, FenceKey{ID: 1, Fence: 1, Key: k})
		fr, err := sealedParams.Parse(b)
		if err != nil || fr.Header().FragType() != Whole {
			return // fragments go to the Reassembler first
		}
		in := append([]byte(nil), fr.Inner()...)
		got, err := r.Open(fr.Dst(), fr.Src(), fr.Header().Fence(), in)
		if err != nil {
			return
		}
		m := append([]byte(nil), b...)
		m[FrameOffsetHeader] &^= SeqMask
		if !bytes.Equal(m, orig) || !bytes.Equal(got, x) {
			t.Fatalf("a frame that was never sealed opened: % x", b)
		}
	})
}

// goldenFenceKey was computed independently with Python hmac/hashlib (RFC 5869 by hand).
const goldenFenceKey = "9a85b53e41e3a99a9a95d0338e92fcef59f9a33d2613cc57cf7976d6a40c7374"

func TestSealConcurrent(t *testing.T) {
	a := newTestSealer(t, 0x02c2, 0, testKey(t, 1, 1))
	b := newTestSealer(t, 0x0003, 0, testKey(t, 1, 1))
	x := ipv4UDPFrame(300, 5)
	concurrently(t, 4, func(int) error {
		buf := make([]byte, 64+len(x)+SealTagLen)
		for range 300 {
			copy(buf[64:], x)
			fr, err := a.Encap(buf, 64, len(x), hostB, 1)
			if err == nil {
				var got []byte
				got, err = b.Open(fr.Dst(), fr.Src(), 1, fr.Inner())
				if err == nil && !bytes.Equal(got, x) {
					err = errors.New("wrong plaintext")
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
