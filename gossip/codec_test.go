package gossip

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/")

var (
	goldenMeta = Meta{Version: 1, Installation: 1, OuterMAC: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x02, 0xc2},
		Instance: 0x0123456789abcdef, DataAddrs: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:7407"),
			netip.MustParseAddrPort("[2001:db8::a]:7407")}, Fences: []uint32{1, 2, 0xabcdef}, Gateways: []uint32{5}}
	goldenUpdate = Message{Type: MsgUpdate, Version: 1, Sender: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x03}, Fence: 1,
		Owner: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x02, 0xc2}, Instance: 0x0123456789abcdef, Base: 7, Seq: 8,
		Add: [][6]byte{{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}}, Del: [][6]byte{{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}}}
	goldenDigest = Message{Type: MsgSyncDigest, Version: 1, Sender: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x03}, Fence: 0x000100,
		Digest: []DigestEntry{{Owner: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x03}, Seq: 1}, {Owner: [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x02, 0xc2}, Seq: 2}}}
)

// goldenFiles are the golden vectors, with their encoding written by
// hand field by field (see the package doc).
var goldenFiles = map[string]string{
	"meta.hex": `01 01 02fe0c0102c2 00 02 0123456789abcdef 0003 0001 0000
		04 c000020a 1cef
		06 20010db800000000000000000000000a 1cef
		000001 000002 abcdef
		000005`,
	"update.hex": `01 01 02fe0c010003 000001
		02fe0c0102c2 0123456789abcdef 0000000000000007 0000000000000008 0001 0001
		00005e005301 00005e005302`,
	"digest.hex": `03 01 02fe0c010003 000100 00 0002
		02fe0c010003 0000000000000001
		02fe0c0102c2 0000000000000002`,
}

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	enc := map[string][]byte{
		"meta.hex":   goldenMeta.AppendTo(nil),
		"update.hex": goldenUpdate.AppendTo(nil),
		"digest.hex": goldenDigest.AppendTo(nil),
	}
	for name, b := range enc {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustHex(t, string(file)); !bytes.Equal(got, b) {
			t.Errorf("%s: encoder wrote %x, file has %x", name, b, got)
		}
		if want := mustHex(t, goldenFiles[name]); !bytes.Equal(b, want) {
			t.Errorf("%s: encoder wrote\n%x, hand-written layout is\n%x", name, b, want)
		}
	}
	var m Meta
	if err := m.Decode(enc["meta.hex"]); err != nil || !reflect.DeepEqual(m, goldenMeta) {
		t.Errorf("meta decode = %+v, %v", m, err)
	}
	var msg Message
	if err := msg.Decode(enc["update.hex"]); err != nil || !reflect.DeepEqual(msg, goldenUpdate) {
		t.Errorf("update decode = %+v, %v", msg, err)
	}
}

func TestMetaCodec(t *testing.T) {
	good := goldenMeta.AppendTo(nil)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	many := Meta{OuterMAC: [6]byte{2, 0, 0, 0, 0, 1}, DataAddrs: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:7407")}}
	for i := range MaxMetaFences + 1 {
		many.Fences = append(many.Fences, uint32(i+1))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"golden", good, nil},
		{"short header", good[:MetaHeaderLen-1], ErrMetaShort},
		{"short fences", good[:len(good)-1], ErrMetaShort},
		{"trailing bytes of a later version", append(mod(func(b []byte) []byte { b[0] = 2; return b }), 0xff), nil},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b }), ErrMetaVersion},
		{"too many addrs", mod(func(b []byte) []byte { b[metaOffsetAddrs] = MaxDataAddrs + 1; return b }), ErrMetaBounds},
		{"too many fences", mod(func(b []byte) []byte { b[metaOffsetFences] = 0xff; return b }), ErrMetaBounds},
		{"bad family", mod(func(b []byte) []byte { b[MetaHeaderLen] = 5; return b }), ErrMetaAddr},
		{"port 0", mod(func(b []byte) []byte { b[MetaHeaderLen+5], b[MetaHeaderLen+6] = 0, 0; return b }), ErrMetaAddr},
		{"fence 0", mod(func(b []byte) []byte { copy(b[MetaHeaderLen+26:], []byte{0, 0, 0}); return b }), ErrMetaFence},
		{"unsorted", mod(func(b []byte) []byte { copy(b[MetaHeaderLen+26:], []byte{0, 0, 9}); return b }), ErrMetaFence},
		{"reserved fence", mod(func(b []byte) []byte { copy(b[len(b)-3:], []byte{0xff, 0xff, 0xff}); return b }), ErrMetaFence},
		{"over 512 bytes", append(bytes.Clone(good), make([]byte, MaxMetaLen)...), ErrMetaBounds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Decode into a dirty struct: every field must be written.
			m := Meta{Version: 9, Installation: 9, Instance: 9, Leaving: true, DataAddrs: []netip.AddrPort{{}},
				Fences: []uint32{77}, Gateways: []uint32{78}}
			err := m.Decode(tc.b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Decode = %v, want %v", err, tc.err)
			}
			if err != nil {
				if m.Version != 0 || len(m.Fences) != 0 || m.Leaving {
					t.Errorf("Decode left %+v after an error", m)
				}
				return
			}
			if !reflect.DeepEqual(m.Fences, goldenMeta.Fences) || m.Leaving || m.OuterMAC != goldenMeta.OuterMAC {
				t.Errorf("Decode = %+v", m)
			}
		})
	}
	if err := many.Validate(); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("Validate with %d fences = %v, want ErrMetaTooLarge", len(many.Fences), err)
	}
	many.Fences = many.Fences[:MaxMetaFences]
	if err := many.Validate(); err != nil || many.Len() > MaxMetaLen {
		t.Errorf("Validate with %d fences = %v (len %d)", len(many.Fences), err, many.Len())
	}
}

func TestMessageCodec(t *testing.T) {
	for _, m := range []Message{
		goldenUpdate,
		goldenDigest,
		{Type: MsgSyncHash, Version: 1, Sender: [6]byte{2, 0, 0, 0, 0, 1}, Fence: 3, Count: 5, Hash: 0xfeedface},
		{Type: MsgPull, Version: 1, Sender: [6]byte{2, 0, 0, 0, 0, 1}, Fence: 3, Owners: [][6]byte{{2, 0, 0, 0, 0, 2}}},
		{Type: MsgUpdate, Version: 1, Sender: [6]byte{2, 0, 0, 0, 0, 1}, Fence: 0xfffffe, Seq: 1, Add: make([][6]byte, MaxMsgMACs)},
	} {
		t.Run(m.Type.String(), func(t *testing.T) {
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			b := m.AppendTo(nil)
			if len(b) != m.Len() {
				t.Errorf("Len = %d, encoded %d", m.Len(), len(b))
			}
			got := Message{Count: 9, Hash: 9, Base: 9, Add: [][6]byte{{1}}, Del: [][6]byte{{1}}, Owners: [][6]byte{{1}}, Digest: []DigestEntry{{}}}
			if err := got.Decode(b); err != nil {
				t.Fatal(err)
			}
			want := m
			normalize(&want)
			normalize(&got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode(AppendTo(m)) = %+v, want %+v", got, want)
			}
			for i := range len(b) - 1 {
				if err := got.Decode(b[:i]); err == nil {
					t.Errorf("Decode of %d of %d bytes succeeded", i, len(b))
					break
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"type 0", []byte{0, 1, 2, 0, 0, 0, 0, 1, 0, 0, 1}, ErrMsgType},
		{"type 5", []byte{5, 1, 2, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}, ErrMsgType},
		{"version 0", []byte{2, 0, 2, 0, 0, 0, 0, 1, 0, 0, 1}, ErrMsgVersion},
		{"fence 0", []byte{2, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0}, ErrMsgFence},
		{"fence ffffff", []byte{2, 1, 2, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff}, ErrMsgFence},
		{"digest over bound", append([]byte{3, 1, 2, 0, 0, 0, 0, 1, 0, 0, 1, 0}, 0xff, 0xff), ErrMsgBounds},
		{"pull over bound", append([]byte{4, 1, 2, 0, 0, 0, 0, 1, 0, 0, 1}, 0xff, 0xff), ErrMsgBounds},
		{"too long", make([]byte, MaxMsgLen+1), ErrMsgBounds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := m.Decode(tc.b); !errors.Is(err, tc.err) {
				t.Errorf("Decode = %v, want %v", err, tc.err)
			}
		})
	}
}

// normalize makes empty slices nil for comparison.
func normalize(m *Message) {
	if len(m.Add) == 0 {
		m.Add = nil
	}
	if len(m.Del) == 0 {
		m.Del = nil
	}
	if len(m.Digest) == 0 {
		m.Digest = nil
	}
	if len(m.Owners) == 0 {
		m.Owners = nil
	}
}

func FuzzMeta(f *testing.F) {
	f.Add(goldenMeta.AppendTo(nil))
	f.Add((&Meta{OuterMAC: [6]byte{2, 0, 0, 0, 0, 1}}).AppendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if m.Decode(b) != nil {
			return
		}
		if err := m.Validate(); err != nil && !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("decoded metadata does not validate: %v", err)
		}
		e := m.AppendTo(nil)
		var m2 Meta
		if err := m2.Decode(e); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode = %+v, %v; want %+v", m2, err, m)
		}
		if e2 := m2.AppendTo(nil); !bytes.Equal(e, e2) {
			t.Fatal("encoding not stable")
		}
	})
}

func FuzzMessage(f *testing.F) {
	for _, m := range []Message{goldenUpdate, goldenDigest} {
		f.Add(m.AppendTo(nil))
	}
	f.Add((&Message{Type: MsgSyncHash, Fence: 1}).AppendTo(nil))
	f.Add((&Message{Type: MsgPull, Fence: 1, Owners: [][6]byte{{1}}}).AppendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if m.Decode(b) != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded message does not validate: %v", err)
		}
		e := m.AppendTo(nil)
		var m2 Message
		if err := m2.Decode(e); err != nil {
			t.Fatal(err)
		}
		normalize(&m)
		normalize(&m2)
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode = %+v; want %+v", m2, m)
		}
		if e2 := m2.AppendTo(nil); !bytes.Equal(e, e2) {
			t.Fatal("encoding not stable")
		}
	})
}
