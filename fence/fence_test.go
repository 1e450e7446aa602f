package fence

import (
	"bytes"
	"errors"
	"testing"
)

func TestOUIValid(t *testing.T) {
	tests := []struct {
		oui  OUI
		want bool
	}{
		{DefaultOUI, true},
		{OUI{0x02, 0, 0}, true},
		{OUI{0x52, 0x54, 0x00}, true},
		{OUI{0x00, 0x00, 0x5e}, false}, // universally administered (IANA)
		{OUI{0x03, 0xfe, 0x0c}, false}, // multicast
		{OUI{0x01, 0x00, 0x5e}, false}, // IPv4 multicast prefix
		{OUI{0xff, 0xff, 0xff}, false}, // broadcast
	}
	for _, tt := range tests {
		t.Run(tt.oui.String(), func(t *testing.T) {
			if got := tt.oui.Valid(); got != tt.want {
				t.Errorf("%v.Valid() = %v, want %v", tt.oui, got, tt.want)
			}
		})
	}
}

func TestOuterMAC(t *testing.T) {
	m := MakeOuterMAC(DefaultOUI, 1, 0x02c2)
	if want := (OuterMAC{0x02, 0xfe, 0x0c, 0x01, 0x02, 0xc2}); m != want {
		t.Fatalf("MakeOuterMAC = %x, want %x", m, want)
	}
	if got := m.OUI(); got != DefaultOUI {
		t.Errorf("OUI() = %v, want %v", got, DefaultOUI)
	}
	if got := m.Installation(); got != 1 {
		t.Errorf("Installation() = %d, want 1", got)
	}
	if got := m.HostID(); got != 0x02c2 {
		t.Errorf("HostID() = %#x, want 0x2c2", got)
	}
	if got, want := m.String(), "02:fe:0c:01:02:c2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if m.IsBroadcast() || !BroadcastMAC.IsBroadcast() {
		t.Errorf("IsBroadcast wrong")
	}
	if got, want := (Params{OUI: OUI{0x06, 1, 2}, Installation: 9}).OuterMAC(0xabcd).String(), "06:01:02:09:ab:cd"; got != want {
		t.Errorf("Params.OuterMAC = %q, want %q", got, want)
	}
}

func TestFragTypeString(t *testing.T) {
	for ft, want := range map[FragType]string{Whole: "Whole", First: "First", Last: "Last", FragReserved: "FragReserved", 7: "FragType(7)"} {
		if got := ft.String(); got != want {
			t.Errorf("FragType(%d).String() = %q, want %q", uint8(ft), got, want)
		}
	}
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name string
		f    HeaderFields
		want string // hand-computed per DESIGN 3.3
	}{
		{"whole fence 1", HeaderFields{Version: 1, Fence: 1}, "40 00 00 01"},
		{"control", HeaderFields{Version: 1, Fence: 0}, "40 00 00 00"},
		{"first seq 3", HeaderFields{Version: 1, FragType: First, Seq: 3, Fence: 1}, "53 00 00 01"},
		{"last seq 3", HeaderFields{Version: 1, FragType: Last, Seq: 3, Fence: 1}, "63 00 00 01"},
		{"last seq 15 max fence", HeaderFields{Version: 1, FragType: Last, Seq: 15, Fence: MaxFenceID}, "6f ff ff fe"},
		{"version 2 reserved FT", HeaderFields{Version: 2, FragType: FragReserved, Seq: 0, Fence: 0x123456}, "b0 12 34 56"},
		{"version 3", HeaderFields{Version: 3, Fence: ReservedFence}, "c0 ff ff ff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := make(Header, HeaderLen)
			h.Encode(&tt.f)
			if want := mustHex(t, tt.want); !bytes.Equal(h, want) {
				t.Fatalf("Encode(%+v) = % x, want % x", tt.f, []byte(h), want)
			}
			if got := h.Fields(); got != tt.f {
				t.Errorf("Fields() = %+v, want %+v", got, tt.f)
			}
			if got := tt.f.AppendTo([]byte{0xaa}); !bytes.Equal(got[1:], h) || got[0] != 0xaa {
				t.Errorf("AppendTo = % x, want aa % x", got, []byte(h))
			}
		})
	}
	t.Run("truncates", func(t *testing.T) {
		h := make(Header, HeaderLen)
		h.Encode(&HeaderFields{Version: 5, FragType: 6, Seq: 0x1f, Fence: 0x1000002})
		if got, want := h.Fields(), (HeaderFields{Version: 1, FragType: Last, Seq: 15, Fence: 2}); got != want {
			t.Errorf("Fields() = %+v, want %+v", got, want)
		}
	})
	t.Run("SetFragType", func(t *testing.T) {
		h := Header(mustHex(t, "40 ab cd ef"))
		h.SetFragType(Last, 0x17)
		if got, want := h.Fields(), (HeaderFields{Version: 1, FragType: Last, Seq: 7, Fence: 0xabcdef}); got != want {
			t.Errorf("Fields() = %+v, want %+v", got, want)
		}
	})
}

func TestEncap(t *testing.T) {
	inner := ipv4UDPFrame(60, 0)
	buf := make([]byte, 64+len(inner)+10)
	copy(buf[64:], inner)
	p := Params{OUI: OUI{0x06, 0x11, 0x22}, Installation: 7, EtherType: 0x88b6}
	src := p.OuterMAC(0x0102)
	fr := p.Encap(buf, 64, len(inner), BroadcastMAC, src, HeaderFields{FragType: Whole, Fence: 0x0a0b0c})
	want := mustHex(t, `
		ffff ffff ffff   0611 2207 0102   88b6
		400a 0b0c`)
	want = append(want, inner...)
	if !bytes.Equal(fr, want) {
		t.Fatalf("Encap =\n% x\nwant\n% x", []byte(fr), want)
	}
	if &fr[0] != &buf[64-EncapLen] || &fr.Inner()[0] != &buf[64] {
		t.Errorf("Encap copied: frame does not alias the buffer at offset-%d", EncapLen)
	}
	if got, err := p.Parse(fr); err != nil || len(got) != len(fr) {
		t.Errorf("Parse(Encap(...)) = %d bytes, %v; want %d bytes, nil", len(got), err, len(fr))
	}
	if got := fr.Dst(); got != BroadcastMAC {
		t.Errorf("Dst() = %v, want broadcast", got)
	}
	if got := fr.Src(); got != src {
		t.Errorf("Src() = %v, want %v", got, src)
	}
	if got := fr.Type(); got != 0x88b6 {
		t.Errorf("Type() = %#x, want 0x88b6", got)
	}
	if got := fr.Header().Fence(); got != 0x0a0b0c {
		t.Errorf("Fence() = %#x, want 0xa0b0c", got)
	}
}

func TestParse(t *testing.T) {
	inner := ipv4UDPFrame(100, 1)
	good := func() Frame {
		return encap(testParams, inner, hostB, hostA, HeaderFields{Version: 1, Fence: 5})
	}
	mod := func(f func(b Frame)) []byte { b := good(); f(b); return b }
	tests := []struct {
		name   string
		p      Params
		b      []byte
		want   error
		wantIn int // inner length when valid
	}{
		{"valid unicast", testParams, good(), nil, 100},
		{"valid broadcast", testParams, mod(func(b Frame) { copy(b, BroadcastMAC[:]) }), nil, 100},
		{"valid control fence 0", testParams, mod(func(b Frame) { b.Header().Encode(&HeaderFields{Version: 1}) }), nil, 100},
		{"valid first", testParams, mod(func(b Frame) { b.Header().SetFragType(First, 4) }), nil, 100},
		{"valid last 1 byte", testParams, mod(func(b Frame) { b.Header().SetFragType(Last, 4) })[:EncapLen+1], nil, 1},
		{"valid whole with seq", testParams, mod(func(b Frame) { b.Header().SetFragType(Whole, 9) }), nil, 100},
		{"valid max fence", testParams, mod(func(b Frame) { b.Header().Encode(&HeaderFields{Version: 1, Fence: MaxFenceID}) }), nil, 100},
		{"valid whole 14", testParams, good()[:EncapLen+14], nil, 14},
		{"valid custom params", Params{OUI: OUI{0x06, 0, 0}, Installation: 3, EtherType: 0x9000},
			encap(Params{OUI: OUI{0x06, 0, 0}, Installation: 3, EtherType: 0x9000}, inner,
				MakeOuterMAC(OUI{0x06, 0, 0}, 3, 9), MakeOuterMAC(OUI{0x06, 0, 0}, 3, 8), HeaderFields{Fence: 1}), nil, 100},

		{"empty", testParams, nil, ErrShort, 0},
		{"17 bytes", testParams, good()[:17], ErrShort, 0},
		{"too big", testParams, append(good(), make([]byte, MaxInnerLen)...), ErrTooBig, 0},
		{"ethertype", testParams, mod(func(b Frame) { b[12], b[13] = 0x08, 0x00 }), ErrEtherType, 0},
		{"ethertype custom vs default", Params{Installation: 1, EtherType: 0x88b6}, good(), ErrEtherType, 0},
		{"src OUI", testParams, mod(func(b Frame) { b[6] = 0x06 }), ErrOUI, 0},
		{"src OUI byte 3", testParams, mod(func(b Frame) { b[8] = 0x0d }), ErrOUI, 0},
		{"src installation", testParams, mod(func(b Frame) { b[9] = 2 }), ErrInstallation, 0},
		{"src host 0", testParams, mod(func(b Frame) { b[10], b[11] = 0, 0 }), ErrHostID, 0},
		{"src host ffff", testParams, mod(func(b Frame) { b[10], b[11] = 0xff, 0xff }), ErrHostID, 0},
		{"dst other installation", testParams, mod(func(b Frame) { b[3] = 2 }), ErrDst, 0},
		{"dst other OUI", testParams, mod(func(b Frame) { b[0] = 0x06 }), ErrDst, 0},
		{"dst multicast", testParams, mod(func(b Frame) { copy(b, []byte{0x01, 0x00, 0x5e, 0, 0, 1}) }), ErrDst, 0},
		{"version 0", testParams, mod(func(b Frame) { b[14] &^= 0xc0 }), ErrVersion, 0},
		{"version 2 (sealed)", testParams, mod(func(b Frame) { b[14] = b[14]&^0xc0 | 0x80 }), ErrVersion, 0},
		{"version 3", testParams, mod(func(b Frame) { b[14] |= 0xc0 }), ErrVersion, 0},
		{"frag type 3", testParams, mod(func(b Frame) { b.Header().SetFragType(FragReserved, 0) }), ErrFragType, 0},
		{"fence ffffff", testParams, mod(func(b Frame) { b[15], b[16], b[17] = 0xff, 0xff, 0xff }), ErrReservedFence, 0},
		{"runt whole 13", testParams, good()[:EncapLen+13], ErrRunt, 0},
		{"runt whole 0", testParams, good()[:EncapLen], ErrRunt, 0},
		{"runt first 13", testParams, mod(func(b Frame) { b.Header().SetFragType(First, 1) })[:EncapLen+13], ErrRunt, 0},
		{"runt last 0", testParams, mod(func(b Frame) { b.Header().SetFragType(Last, 1) })[:EncapLen], ErrRunt, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr, err := tt.p.Parse(tt.b)
			if err != tt.want {
				t.Fatalf("Parse = %v, want %v", err, tt.want)
			}
			if err != nil {
				if fr != nil {
					t.Errorf("Parse returned a frame with error %v", err)
				}
				return
			}
			if got := len(fr.Inner()); got != tt.wantIn {
				t.Errorf("len(Inner()) = %d, want %d", got, tt.wantIn)
			}
			if len(fr) != len(tt.b) || &fr[0] != &tt.b[0] {
				t.Errorf("Parse does not alias its input")
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		p    Params
		want error
	}{
		{Params{}, nil},
		{Params{OUI: OUI{0x06, 1, 2}, EtherType: 0x0600}, nil},
		{Params{OUI: OUI{0x00, 0x00, 0x5e}}, ErrInvalidOUI},
		{Params{OUI: OUI{0x03, 0, 0}}, ErrInvalidOUI},
		{Params{EtherType: 0x05dc}, ErrInvalidEtherType},
	}
	for _, tt := range tests {
		if got := tt.p.Validate(); !errors.Is(got, tt.want) {
			t.Errorf("%+v.Validate() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestMaxEncapLen(t *testing.T) {
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"raw 1500", MaxEncapLenRaw(1500), 1514},
		{"raw 9000", MaxEncapLenRaw(9000), 9014},
		{"udp4 1500", MaxEncapLenUDP(1500, false), 1472},
		{"udp6 1500", MaxEncapLenUDP(1500, true), 1452},
		{"udp4 576", MaxEncapLenUDP(576, false), 548},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	// DESIGN 3.4: inner frames up to 1454 bytes travel whole over UDP/IPv4 at 1500.
	if got := MaxEncapLenUDP(1500, false) - EncapLen; got != 1454 {
		t.Errorf("max whole inner over UDP/IPv4 at 1500 = %d, want 1454", got)
	}
	// Raw: 4 + len(inner) <= MTU.
	if got := MaxEncapLenRaw(1500) - EncapLen; got != 1496 {
		t.Errorf("max whole inner over raw at 1500 = %d, want 1496", got)
	}
}

func TestOPI(t *testing.T) {
	o := MakeOPI(1, 0x000100)
	if got, want := o.String(), "01:00:01:00"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if o.Installation() != 1 || o.Fence() != 0x100 {
		t.Errorf("OPI fields = %d, %#x; want 1, 0x100", o.Installation(), o.Fence())
	}
	fr := encap(testParams, ipv4UDPFrame(60, 0), BroadcastMAC, hostA, HeaderFields{Fence: 0xabcdef})
	if got, want := fr.OPI(), (OPI{1, 0xab, 0xcd, 0xef}); got != want {
		t.Errorf("Frame.OPI() = %v, want %v", got, want)
	}
}

// TestValidFenceID checks the one definition of the fence ID range (DESIGN
// 1). The reserved and too-big cases moved here from the switch's
// TestConfigErrors when the switch stopped keeping its own copy of the range.
func TestValidFenceID(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   uint32
		want bool
	}{
		{"control 0", ControlFence, false},
		{"first", MinFenceID, true},
		{"1", 1, true},
		{"last", MaxFenceID, true},
		{"0xfffffe", 0xFFFFFE, true},
		{"reserved", ReservedFence, false},
		{"0xffffff", 0xFFFFFF, false},
		{"too big for 24 bits", 0x1000000, false},
		{"max uint32", 0xFFFFFFFF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidFenceID(tc.id); got != tc.want {
				t.Errorf("ValidFenceID(%#x) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}
