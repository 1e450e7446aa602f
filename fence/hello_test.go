package fence

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// helloEqual compares hellos treating nil and empty lists as equal.
func helloEqual(a, b *Hello) bool {
	return a.Version == b.Version && a.HostID == b.HostID && a.Instance == b.Instance && a.Name == b.Name &&
		len(a.Fences) == len(b.Fences) && len(a.Gateways) == len(b.Gateways) &&
		(len(a.Fences) == 0 || reflect.DeepEqual(a.Fences, b.Fences)) &&
		(len(a.Gateways) == 0 || reflect.DeepEqual(a.Gateways, b.Gateways))
}

func TestHelloEncoding(t *testing.T) {
	tests := []struct {
		name string
		h    Hello
		want string // hand-written per the package doc
	}{
		{"empty", Hello{Version: 1},
			"01 01 0000  0000000000000000  00 00 0000 0000"},
		{"lab1", Hello{Version: 1, HostID: 0x02c2, Instance: 0x0123456789abcdef, Name: "lab1", Fences: []uint32{1, 2, 0xabcdef}, Gateways: []uint32{1}},
			"01 01 02c2  0123456789abcdef  04 00 0003 0001  6c616231  000001 000002 abcdef  000001"},
		{"version 0 sent as 1", Hello{HostID: 1},
			"01 01 0001  0000000000000000  00 00 0000 0000"},
		{"utf-8 name", Hello{Version: 1, HostID: 0xfffe, Name: "hé", Gateways: []uint32{MaxFenceID}},
			"01 01 fffe  0000000000000000  03 00 0000 0001  68c3a9  fffffe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.h.Validate(); err != nil {
				t.Fatalf("Validate = %v", err)
			}
			got := tt.h.AppendTo([]byte{0xee})
			want := append([]byte{0xee}, mustHex(t, tt.want)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendTo =\n% x\nwant\n% x", got, want)
			}
			if n := tt.h.Len(); n != len(got)-1 {
				t.Errorf("Len() = %d, want %d", n, len(got)-1)
			}
			var h Hello
			if err := h.Decode(got[1:]); err != nil {
				t.Fatalf("Decode = %v", err)
			}
			wantH := tt.h
			if wantH.Version == 0 {
				wantH.Version = HelloVersion
			}
			if !helloEqual(&h, &wantH) {
				t.Errorf("Decode = %+v, want %+v", h, wantH)
			}
		})
	}
}

func TestHelloDecodeDirty(t *testing.T) {
	dirty := Hello{Version: 9, HostID: 7, Instance: 99, Name: "stale", Fences: []uint32{5, 6, 7, 8}, Gateways: []uint32{9}}
	clean := Hello{Version: 1, HostID: 0x0102}
	b := clean.AppendTo(nil)
	if err := dirty.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !helloEqual(&dirty, &clean) {
		t.Errorf("Decode into a dirty struct = %+v, want %+v", dirty, clean)
	}
	// An error zeroes the struct too.
	dirty = Hello{Version: 9, HostID: 7, Instance: 99, Name: "stale", Fences: []uint32{5}, Gateways: []uint32{9}}
	if err := dirty.Decode(b[:5]); err != ErrHelloShort {
		t.Fatalf("Decode(short) = %v, want ErrHelloShort", err)
	}
	if !helloEqual(&dirty, &Hello{}) {
		t.Errorf("after a failed Decode: %+v, want zero", dirty)
	}
}

func TestHelloDecodeErrors(t *testing.T) {
	good := (&Hello{HostID: 3, Name: "h", Fences: []uint32{1, 2}, Gateways: []uint32{2}}).AppendTo(nil)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"good", good, nil},
		{"trailing padding ignored", append(append([]byte(nil), good...), make([]byte, 30)...), nil},
		{"later version", mod(func(b []byte) []byte { b[1] = 7; return append(b, 1, 2, 3) }), nil},
		{"empty", nil, ErrHelloShort},
		{"header 17", good[:17], ErrHelloShort},
		{"name cut", good[:18], ErrHelloShort},
		{"gateway cut", good[:len(good)-1], ErrHelloShort},
		{"type", mod(func(b []byte) []byte { b[0] = 2; return b }), ErrHelloType},
		{"version 0", mod(func(b []byte) []byte { b[1] = 0; return b }), ErrHelloVersion},
		{"name too long", mod(func(b []byte) []byte { b[12] = MaxHelloName + 1; return append(b, make([]byte, 100)...) }), ErrHelloBounds},
		{"too many fences", mod(func(b []byte) []byte { b[14], b[15] = 1, 1; return b }), ErrHelloBounds},
		{"too many gateways", mod(func(b []byte) []byte { b[16], b[17] = 0xff, 0xff; return b }), ErrHelloBounds},
		{"name not utf-8", mod(func(b []byte) []byte { b[18] = 0xff; return b }), ErrHelloName},
		{"fence 0", mod(func(b []byte) []byte { b[19], b[20], b[21] = 0, 0, 0; return b }), ErrHelloFence},
		{"gateway ffffff", mod(func(b []byte) []byte { copy(b[len(b)-3:], []byte{0xff, 0xff, 0xff}); return b }), ErrHelloFence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Hello
			if err := h.Decode(tt.b); err != tt.want {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHelloValidate(t *testing.T) {
	many := make([]uint32, MaxHelloFences+1)
	for i := range many {
		many[i] = uint32(i + 1)
	}
	tests := []struct {
		name string
		h    Hello
		want error
	}{
		{"ok", Hello{Name: strings.Repeat("x", MaxHelloName), Fences: many[:MaxHelloFences], Gateways: many[:MaxHelloGateways]}, nil},
		{"long name", Hello{Name: strings.Repeat("x", MaxHelloName+1)}, ErrHelloBounds},
		{"many fences", Hello{Fences: many}, ErrHelloBounds},
		{"many gateways", Hello{Gateways: many}, ErrHelloBounds},
		{"bad utf-8", Hello{Name: "\xff"}, ErrHelloName},
		{"fence 0", Hello{Fences: []uint32{0}}, ErrHelloFence},
		{"gateway reserved", Hello{Gateways: []uint32{ReservedFence}}, ErrHelloFence},
		{"fence > 24 bits", Hello{Fences: []uint32{1 << 24}}, ErrHelloFence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Validate(); got != tt.want {
				t.Errorf("Validate = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("max length", func(t *testing.T) {
		h := tests[0].h
		if got := len(h.AppendTo(nil)); got != MaxHelloLen || MaxHelloLen != 1042 {
			t.Errorf("largest hello = %d bytes, MaxHelloLen %d, want 1042", got, MaxHelloLen)
		}
		// It travels whole over UDP/IPv6 at the IPv6 minimum MTU.
		fr := encap(testParams, h.AppendTo(nil), BroadcastMAC, hostA, HeaderFields{Fence: ControlFence})
		var fg Fragmenter
		if _, last, err := fg.Split(fr, MaxEncapLenUDP(1280, true), make([]byte, 1500)); err != nil || last != nil {
			t.Errorf("Split(largest hello, UDP/IPv6 1280) = %v, split %v; want whole", err, last != nil)
		}
	})
	t.Run("AppendTo truncates", func(t *testing.T) {
		h := Hello{Name: strings.Repeat("y", 100), Fences: many, Gateways: many}
		var d Hello
		if err := d.Decode(h.AppendTo(nil)); err != nil {
			t.Fatalf("Decode(AppendTo(oversized)) = %v", err)
		}
		if len(d.Name) != MaxHelloName || len(d.Fences) != MaxHelloFences || len(d.Gateways) != MaxHelloGateways {
			t.Errorf("decoded %d, %d, %d; want %d, %d, %d", len(d.Name), len(d.Fences), len(d.Gateways),
				MaxHelloName, MaxHelloFences, MaxHelloGateways)
		}
	})
}

func TestControlType(t *testing.T) {
	if _, err := ControlType(nil); err != ErrHelloShort {
		t.Errorf("ControlType(nil) = %v, want ErrHelloShort", err)
	}
	if got, err := ControlType((&Hello{}).AppendTo(nil)); got != ControlHello || err != nil {
		t.Errorf("ControlType(hello) = %d, %v; want %d, nil", got, err, ControlHello)
	}
}
