package fence

import (
	"encoding/binary"
	"errors"
)

// Wire constants (DESIGN.md section 3).
const (
	// EtherType is the default fence EtherType, 0x88B5 (IEEE Std 802
	// "local experimental EtherType 1").
	EtherType = 0x88B5

	// OuterHeaderLen is the length of the outer Ethernet header:
	// destination MAC, source MAC, type.
	OuterHeaderLen = 14
	// HeaderLen is the length of the fence header.
	HeaderLen = 4
	// EncapLen is the encapsulation overhead: outer Ethernet header plus
	// fence header (18 bytes).
	EncapLen = OuterHeaderLen + HeaderLen

	// Version is the fence header version of basic, unsealed frames.
	// Sealed frames (DESIGN 3.6) are [SealedVersion].
	Version = 1

	// ControlFence is the fence ID of the control channel (hellos).
	ControlFence = 0
	// ReservedFence is the fence ID that is never valid on the wire.
	ReservedFence = 0xFFFFFF
	// MinFenceID and MaxFenceID bound the IDs of user fences (DESIGN 1:
	// 0 is the control channel, 0xFFFFFF reserved). This is the one
	// definition of the range; every package that checks a fence ID uses
	// [ValidFenceID].
	MinFenceID = 1
	MaxFenceID = 0xFFFFFE

	// DefaultUDPPort is the default UDP port of the UDP uplink.
	DefaultUDPPort = 7407

	// MinInnerLen is the shortest inner frame (an Ethernet header): whole
	// frames and first fragments with less are runts.
	MinInnerLen = 14
	// MaxInnerLen is the longest inner frame this package encapsulates or
	// reassembles (vswitch.MaxFrameSize).
	MaxInnerLen = 65536

	// MaxPayloadLen is the longest payload after the fence header: a
	// sealed [MaxInnerLen] frame with its [SealOverhead].
	MaxPayloadLen = MaxInnerLen + SealOverhead

	// MinEthernetLen is the shortest Ethernet frame on a wire, without FCS.
	// Shorter frames are padded with zeros by the sender's NIC, which is
	// why [Fragmenter.Split] never makes a last fragment shorter than this.
	MinEthernetLen = 60

	// IPv4HeaderLen and IPv6HeaderLen are the IP header lengths (no
	// options) used by [MaxEncapLenUDP]; UDPHeaderLen is the UDP header.
	IPv4HeaderLen = 20
	IPv6HeaderLen = 40
	UDPHeaderLen  = 8
)

// Offsets into an encapsulated [Frame].
const (
	FrameOffsetDst    = 0
	FrameOffsetSrc    = 6
	FrameOffsetType   = 12
	FrameOffsetHeader = OuterHeaderLen
	FrameOffsetInner  = EncapLen
)

// Offsets into an [OuterMAC].
const (
	OuterMACOffsetOUI          = 0
	OuterMACOffsetInstallation = 3
	OuterMACOffsetHostID       = 4
)

// Drop reasons. [Params.Parse] returns exactly one of these per rejected
// frame, so callers can count drops by reason with errors.Is or ==.
var (
	// ErrShort: the frame is shorter than [EncapLen].
	ErrShort = errors.New("fence: frame shorter than encapsulation header")
	// ErrEtherType: the outer type is not the installation's fence EtherType.
	ErrEtherType = errors.New("fence: wrong EtherType")
	// ErrOUI: the outer source MAC does not carry the installation's OUI.
	ErrOUI = errors.New("fence: outer source has wrong OUI")
	// ErrInstallation: the outer source MAC names another installation.
	ErrInstallation = errors.New("fence: outer source has wrong installation ID")
	// ErrHostID: the outer source host ID is 0 or 0xFFFF (never assigned).
	ErrHostID = errors.New("fence: outer source has invalid host ID")
	// ErrDst: the outer destination is neither broadcast nor a host of the
	// installation.
	ErrDst = errors.New("fence: outer destination is not broadcast or a host of this installation")
	// ErrVersion: the fence header version is not [Version] (or, with
	// [Params].Sealed, not [SealedVersion]).
	ErrVersion = errors.New("fence: unsupported fence header version")
	// ErrFragType: the fragment type is 3 (reserved).
	ErrFragType = errors.New("fence: reserved fragment type")
	// ErrReservedFence: the fence ID is 0xFFFFFF.
	ErrReservedFence = errors.New("fence: reserved fence ID")
	// ErrRunt: the inner frame (whole or first fragment) is shorter than
	// [MinInnerLen], or a last fragment is empty.
	ErrRunt = errors.New("fence: inner frame too short")
	// ErrTooBig: the inner frame is longer than [MaxInnerLen], or (Split)
	// does not fit two fragments.
	ErrTooBig = errors.New("fence: frame too big")
)

// OUI is the 3-byte prefix of every outer MAC of an installation.
type OUI [3]byte

// DefaultOUI is the default fence OUI, 02:fe:0c: locally administered,
// unicast.
var DefaultOUI = OUI{0x02, 0xfe, 0x0c}

// Valid reports whether o is a locally administered (U/L bit set) unicast
// (I/G bit clear) prefix, as DESIGN 3.2 requires.
func (o OUI) Valid() bool { return o[0]&0x02 != 0 && o[0]&0x01 == 0 }

// String returns o as "02:fe:0c".
func (o OUI) String() string { return string(appendColonHex(make([]byte, 0, 8), o[:])) }

// OuterMAC is a host's address on the uplink: OUI(3) · installation ID(1) ·
// host ID(2), DESIGN 3.2.
type OuterMAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff, the outer destination of floods.
var BroadcastMAC = OuterMAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// MakeOuterMAC returns the outer MAC of host hostID in installation
// installation.
func MakeOuterMAC(oui OUI, installation uint8, hostID uint16) OuterMAC {
	var m OuterMAC
	copy(m[OuterMACOffsetOUI:], oui[:])
	m[OuterMACOffsetInstallation] = installation
	binary.BigEndian.PutUint16(m[OuterMACOffsetHostID:], hostID)
	return m
}

// OUI returns the first three bytes of m.
func (m OuterMAC) OUI() OUI { return OUI{m[0], m[1], m[2]} }

// Installation returns the installation ID byte of m.
func (m OuterMAC) Installation() uint8 { return m[OuterMACOffsetInstallation] }

// HostID returns the 16-bit host ID of m.
func (m OuterMAC) HostID() uint16 { return binary.BigEndian.Uint16(m[OuterMACOffsetHostID:]) }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m OuterMAC) IsBroadcast() bool { return m == BroadcastMAC }

// AppendTo appends m as "02:fe:0c:01:02:c2" to b.
func (m OuterMAC) AppendTo(b []byte) []byte { return appendColonHex(b, m[:]) }

// String returns m as "02:fe:0c:01:02:c2".
func (m OuterMAC) String() string { return string(m.AppendTo(make([]byte, 0, 17))) }

// appendColonHex appends x as two lower-case hex digits a byte, separated
// by colons ("02:fe:0c").
func appendColonHex(b, x []byte) []byte {
	for i, c := range x {
		if i > 0 {
			b = append(b, ':')
		}
		b = appendHexByte(b, c)
	}
	return b
}

// appendHexByte appends x as two lower-case hex digits.
func appendHexByte(b []byte, x byte) []byte {
	const hex = "0123456789abcdef"
	return append(b, hex[x>>4], hex[x&0xf])
}

//go:generate stringer -type=FragType

// FragType is the 2-bit fragment type of the fence header.
type FragType uint8

const (
	// Whole is an unfragmented frame.
	Whole FragType = 0
	// First is the first of two fragments.
	First FragType = 1
	// Last is the second (last) of two fragments.
	Last FragType = 2
	// FragReserved is reserved; frames carrying it are dropped.
	FragReserved FragType = 3
)

// Bit layout of the fence header's first byte (DESIGN 3.3).
const (
	headerVersionShift = 6    // 2 bits: version
	headerFragShift    = 4    // 2 bits: fragment type
	headerSeqMask      = 0x0f // 4 bits: Seq
	// SeqMask is the largest Seq value; Seq counts modulo SeqMask+1.
	SeqMask = headerSeqMask
)

// Header is a view of the 4-byte fence header (DESIGN 3.3), network byte
// order:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---+---+-------+-----------------------------------------------+
//	|Ver| FT|  Seq  |                  Fence ID                     |
//	+---+---+-------+-----------------------------------------------+
//
// Accessors do no bounds checks beyond Go's: the caller has checked that
// len(h) >= [HeaderLen] (for example with [Params.Parse]).
type Header []byte

// HeaderFields is the decoded form of a [Header], the input of
// [Header.Encode].
type HeaderFields struct {
	Version  uint8    // 2 bits
	FragType FragType // 2 bits
	Seq      uint8    // 4 bits
	Fence    uint32   // 24 bits
}

// Version returns the 2-bit version.
func (h Header) Version() uint8 { return h[0] >> headerVersionShift }

// FragType returns the 2-bit fragment type.
func (h Header) FragType() FragType { return FragType(h[0]>>headerFragShift) & 3 }

// Seq returns the 4-bit fragment sequence number.
func (h Header) Seq() uint8 { return h[0] & headerSeqMask }

// Fence returns the 24-bit fence ID.
func (h Header) Fence() uint32 { return uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3]) }

// SetFragType sets the fragment type and Seq, leaving version and fence.
func (h Header) SetFragType(ft FragType, seq uint8) {
	h[0] = h[0]&^(3<<headerFragShift|headerSeqMask) | uint8(ft&3)<<headerFragShift | seq&headerSeqMask
}

// Fields returns the decoded header.
func (h Header) Fields() HeaderFields {
	return HeaderFields{Version: h.Version(), FragType: h.FragType(), Seq: h.Seq(), Fence: h.Fence()}
}

// Encode writes f into h. Each field is truncated to its width (Version
// and FragType to 2 bits, Seq to 4, Fence to 24); a zero Version is
// written as 0 (use [Version]).
func (h Header) Encode(f *HeaderFields) {
	_ = h[3]
	h[0] = (f.Version&3)<<headerVersionShift | uint8(f.FragType&3)<<headerFragShift | f.Seq&headerSeqMask
	h[1] = byte(f.Fence >> 16)
	h[2] = byte(f.Fence >> 8)
	h[3] = byte(f.Fence)
}

// AppendTo appends the 4 encoded bytes of f to b.
func (f HeaderFields) AppendTo(b []byte) []byte {
	var h [HeaderLen]byte
	Header(h[:]).Encode(&f)
	return append(b, h[:]...)
}

// Frame is a view of a whole encapsulated frame (DESIGN 3.1):
//
//	+------------------+------------------+----------+---------------+----------------------+
//	| outer dst MAC (6)| outer src MAC (6)| type (2) | fence hdr (4) | inner Ethernet frame |
//	+------------------+------------------+----------+---------------+----------------------+
//
// Accessors do no bounds checks beyond Go's: the frame came from
// [Params.Parse] or [Params.Encap].
type Frame []byte

// Dst returns the outer destination MAC.
func (f Frame) Dst() OuterMAC { return OuterMAC(f[FrameOffsetDst : FrameOffsetDst+6]) }

// Src returns the outer source MAC.
func (f Frame) Src() OuterMAC { return OuterMAC(f[FrameOffsetSrc : FrameOffsetSrc+6]) }

// Type returns the outer EtherType.
func (f Frame) Type() uint16 { return binary.BigEndian.Uint16(f[FrameOffsetType:]) }

// Header returns the fence header.
func (f Frame) Header() Header { return Header(f[FrameOffsetHeader:FrameOffsetInner]) }

// Inner returns the inner Ethernet frame (or, for a fragment, its piece of
// it; for fence 0, the control payload). It aliases f.
func (f Frame) Inner() []byte { return f[FrameOffsetInner:] }

// Params are the installation-wide parameters a host needs to build and
// check frames. The zero value means installation 0 with the default OUI
// and EtherType.
type Params struct {
	OUI          OUI    // zero means [DefaultOUI]
	Installation uint8  // installation ID
	EtherType    uint16 // zero means [EtherType]
	// Sealed selects the sealed uplink (DESIGN 3.6): Parse accepts only
	// version-2 frames (and drops version 1); otherwise only version 1.
	Sealed bool
}

func (p Params) oui() OUI {
	if p.OUI == (OUI{}) {
		return DefaultOUI
	}
	return p.OUI
}

func (p Params) etherType() uint16 {
	if p.EtherType == 0 {
		return EtherType
	}
	return p.EtherType
}

// Errors of [Params.Validate].
var (
	ErrInvalidOUI       = errors.New("fence: OUI must be locally administered unicast")
	ErrInvalidEtherType = errors.New("fence: EtherType must be >= 0x0600")
)

// Validate reports whether p is usable: the OUI (after defaulting) is
// locally administered unicast and the EtherType is a type (>= 0x0600),
// not a length.
func (p Params) Validate() error {
	if !p.oui().Valid() {
		return ErrInvalidOUI
	}
	if p.etherType() < 0x0600 {
		return ErrInvalidEtherType
	}
	return nil
}

// OuterMAC returns the outer MAC of host hostID under p.
func (p Params) OuterMAC(hostID uint16) OuterMAC {
	return MakeOuterMAC(p.oui(), p.Installation, hostID)
}

// Parse checks that b is a valid encapsulated frame of this installation
// (version 1, or version 2 with Sealed) and returns it as a [Frame] aliasing b. It checks, in this
// order, and returns the first failure as its sentinel error:
//
//   - length >= [EncapLen] ([ErrShort]); inner <= [MaxInnerLen], sealed
//     payload <= [MaxPayloadLen] ([ErrTooBig]);
//   - outer type == the fence EtherType ([ErrEtherType]);
//   - outer source: the installation's OUI ([ErrOUI]) and installation ID
//     ([ErrInstallation]), host ID not 0 or 0xFFFF ([ErrHostID]);
//   - outer destination: broadcast or a MAC of the installation ([ErrDst]);
//   - version == [Version] ([ErrVersion]); with Sealed, version ==
//     [SealedVersion] instead;
//   - fragment type != 3 ([ErrFragType]);
//   - fence ID != 0xFFFFFF ([ErrReservedFence]);
//   - inner length >= [MinInnerLen] for whole frames and first fragments,
//     >= 1 for last fragments ([ErrRunt]); a whole sealed frame's payload
//     >= [MinSealedPayloadLen].
//
// Fence 0 (control) is valid here; whether the host has the fence is the
// caller's check. The Seq of a whole frame is not checked (senders write
// 0). Parse does not allocate.
func (p Params) Parse(b []byte) (Frame, error) {
	if len(b) < EncapLen {
		return nil, ErrShort
	}
	if n := len(b) - EncapLen; n > MaxInnerLen && (!p.Sealed || n > MaxPayloadLen) {
		return nil, ErrTooBig
	}
	f := Frame(b)
	if f.Type() != p.etherType() {
		return nil, ErrEtherType
	}
	oui := p.oui()
	if b[FrameOffsetSrc] != oui[0] || b[FrameOffsetSrc+1] != oui[1] || b[FrameOffsetSrc+2] != oui[2] {
		return nil, ErrOUI
	}
	if b[FrameOffsetSrc+OuterMACOffsetInstallation] != p.Installation {
		return nil, ErrInstallation
	}
	if id := binary.BigEndian.Uint16(b[FrameOffsetSrc+OuterMACOffsetHostID:]); id == 0 || id == 0xFFFF {
		return nil, ErrHostID
	}
	if !f.Dst().IsBroadcast() && (b[FrameOffsetDst] != oui[0] || b[FrameOffsetDst+1] != oui[1] ||
		b[FrameOffsetDst+2] != oui[2] || b[FrameOffsetDst+OuterMACOffsetInstallation] != p.Installation) {
		return nil, ErrDst
	}
	h := f.Header()
	wantVersion, minLen := uint8(Version), MinInnerLen
	if p.Sealed {
		wantVersion, minLen = SealedVersion, MinSealedPayloadLen
	}
	if h.Version() != wantVersion {
		return nil, ErrVersion
	}
	ft := h.FragType()
	if ft == FragReserved {
		return nil, ErrFragType
	}
	if h.Fence() == ReservedFence {
		return nil, ErrReservedFence
	}
	switch ft {
	case First:
		minLen = MinInnerLen
	case Last:
		minLen = 1
	}
	if len(b)-EncapLen < minLen {
		return nil, ErrRunt
	}
	return f, nil
}

// Encap writes the outer Ethernet header (dst, src, the fence EtherType)
// and the fence header f into b[offset-EncapLen:offset], in front of the
// inner frame at b[offset:offset+innerLen], and returns the encapsulated
// frame b[offset-EncapLen : offset+innerLen]. It does not copy the inner
// frame and does not allocate. A zero f.Version is written as [Version].
// It panics if offset < EncapLen or offset+innerLen > len(b) (the caller
// reserves headroom, see vswitch.Headroom).
func (p Params) Encap(b []byte, offset, innerLen int, dst, src OuterMAC, f HeaderFields) Frame {
	fr := Frame(b[offset-EncapLen : offset+innerLen])
	copy(fr[FrameOffsetDst:], dst[:])
	copy(fr[FrameOffsetSrc:], src[:])
	binary.BigEndian.PutUint16(fr[FrameOffsetType:], p.etherType())
	if f.Version == 0 {
		f.Version = Version
	}
	fr.Header().Encode(&f)
	return fr
}

// MaxEncapLenRaw returns the longest encapsulated frame (outer header
// included) a raw uplink with interface MTU mtu carries whole: the fence
// header and inner frame must fit the MTU (4 + len(inner) <= mtu), the
// outer Ethernet header is not counted in the MTU.
func MaxEncapLenRaw(mtu int) int { return mtu + OuterHeaderLen }

// MaxEncapLenUDP returns the longest encapsulated frame (outer header
// included, it is the datagram payload) a UDP uplink with path MTU mtu
// carries whole: mtu - IP header - 8 (1472 for IPv4 at 1500).
func MaxEncapLenUDP(mtu int, ipv6 bool) int {
	if ipv6 {
		return mtu - IPv6HeaderLen - UDPHeaderLen
	}
	return mtu - IPv4HeaderLen - UDPHeaderLen
}

// OPI is a fence's outer prefix identifier (DESIGN 3.2): installation ID ·
// 24-bit fence ID, 4 bytes. It names a fence uniquely on an uplink segment
// in logs, the admin API and captures.
type OPI [4]byte

// MakeOPI returns the OPI of fence in installation (only the low 24 bits of
// fence are used).
func MakeOPI(installation uint8, fence uint32) OPI {
	return OPI{installation, byte(fence >> 16), byte(fence >> 8), byte(fence)}
}

// Installation returns the installation ID of o.
func (o OPI) Installation() uint8 { return o[0] }

// Fence returns the fence ID of o.
func (o OPI) Fence() uint32 { return uint32(o[1])<<16 | uint32(o[2])<<8 | uint32(o[3]) }

// String returns o as "01:00:01:00" (installation 1, fence 0x100).
func (o OPI) String() string { return string(appendColonHex(make([]byte, 0, 11), o[:])) }

// OPI returns the OPI of the frame's fence in the installation of its
// outer source.
func (f Frame) OPI() OPI { return MakeOPI(f.Src().Installation(), f.Header().Fence()) }

// ValidFenceID reports whether id is a user fence ID: 1 … 0xFFFFFE.
func ValidFenceID(id uint32) bool { return id >= MinFenceID && id <= MaxFenceID }
