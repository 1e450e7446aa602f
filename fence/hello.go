package fence

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// Control message types: the first byte of every control payload (fence 0).
const (
	// ControlHello is the type of a [Hello].
	ControlHello = 1
)

// Hello format constants (see the package doc for the layout).
const (
	// HelloVersion is the hello format version this package writes.
	HelloVersion = 1
	// HelloHeaderLen is the fixed part of a hello, before the name.
	HelloHeaderLen = 18
	// MaxHelloName is the longest host name a hello carries, in bytes.
	MaxHelloName = 64
	// MaxHelloFences is the most fence IDs a hello lists.
	MaxHelloFences = 256
	// MaxHelloGateways is the most gateway fence IDs a hello lists.
	MaxHelloGateways = 64
	// MaxHelloLen is the longest hello this package writes:
	// 18 + 64 + 3·(256+64) = 1042 bytes, so that a hello always travels
	// whole: 18 + 1042 fits UDP over IPv6 at its minimum MTU, 1280.
	MaxHelloLen = HelloHeaderLen + MaxHelloName + 3*(MaxHelloFences+MaxHelloGateways)

	// HelloProbeVersion is the version of a probe: a hello that appends
	// a cookie and an echo (8 bytes each) after the gateway list, used to
	// confirm that an address is reachable before it is trusted.
	HelloProbeVersion = 2
	// HelloProbeLen is the length of a probe without name and fences.
	HelloProbeLen = HelloHeaderLen + helloProbeTrailer

	helloProbeTrailer   = 16
	helloOffsetType     = 0
	helloOffsetVersion  = 1
	helloOffsetHostID   = 2
	helloOffsetInstance = 4
	helloOffsetNameLen  = 12
	helloOffsetFlags    = 13
	helloOffsetFences   = 14
	helloOffsetGateways = 16
	helloFenceIDLen     = 3
)

// Hello decode errors.
var (
	ErrHelloShort   = errors.New("fence: hello truncated")
	ErrHelloType    = errors.New("fence: control message is not a hello")
	ErrHelloVersion = errors.New("fence: unsupported hello version")
	ErrHelloBounds  = errors.New("fence: hello exceeds its bounds")
	ErrHelloName    = errors.New("fence: hello host name is not UTF-8")
	ErrHelloFence   = errors.New("fence: hello lists an invalid fence ID")
)

// ControlType returns the type byte of control payload b (the inner part of
// a fence-0 frame), or [ErrHelloShort] if b is empty.
func ControlType(b []byte) (uint8, error) {
	if len(b) == 0 {
		return 0, ErrHelloShort
	}
	return b[helloOffsetType], nil
}

// Hello is the control-channel announcement a host sends to its peers
// (DESIGN 4.5, 4.6). Its wire format is in the package doc.
type Hello struct {
	// Version is the hello format version; 0 is sent as [HelloVersion].
	Version uint8
	// HostID is the sender's host ID (the low 16 bits of its outer MAC).
	HostID uint16
	// Instance is a random number the sender picks at start. Two hellos
	// with the same outer MAC and different instances come from two hosts
	// claiming one MAC (or a restart); a host recognises its own hello
	// looped back by a multicast group.
	Instance uint64
	// Name is the sender's host name, at most [MaxHelloName] bytes of UTF-8.
	Name string
	// Fences are the fence IDs the sender has local ports for, at most
	// [MaxHelloFences], each 1…[MaxFenceID].
	Fences []uint32
	// Gateways are the fence IDs the sender serves a gateway on, at most
	// [MaxHelloGateways], each 1…[MaxFenceID].
	Gateways []uint32
	// Cookie and Echo (version >= 2 only; zero: none) make a probe: a
	// host that receives a datagram from an address it has not confirmed
	// answers with a probe carrying a Cookie bound to that address; the
	// address is confirmed when a probe from it echoes the cookie (Echo).
	Cookie, Echo uint64
}

// IsProbe reports whether h is a probe (a cookie or an echo): not an
// announcement of fences.
func (h *Hello) IsProbe() bool { return h.Cookie != 0 || h.Echo != 0 }

// Validate reports whether h is within the bounds of the format.
func (h *Hello) Validate() error {
	if len(h.Name) > MaxHelloName || len(h.Fences) > MaxHelloFences || len(h.Gateways) > MaxHelloGateways {
		return ErrHelloBounds
	}
	if !utf8.ValidString(h.Name) {
		return ErrHelloName
	}
	for _, list := range [2][]uint32{h.Fences, h.Gateways} {
		for _, f := range list {
			if f == ControlFence || f > MaxFenceID {
				return ErrHelloFence
			}
		}
	}
	return nil
}

// Len returns the encoded length of h.
func (h *Hello) Len() int {
	n := HelloHeaderLen + min(len(h.Name), MaxHelloName) +
		helloFenceIDLen*(min(len(h.Fences), MaxHelloFences)+min(len(h.Gateways), MaxHelloGateways))
	if h.IsProbe() {
		n += helloProbeTrailer
	}
	return n
}

// AppendTo appends the encoded hello to b and returns the extended slice.
// Call [Hello.Validate] first: AppendTo truncates a name or lists beyond
// the bounds and writes only the low 24 bits of each fence ID.
func (h *Hello) AppendTo(b []byte) []byte {
	name := h.Name
	if len(name) > MaxHelloName {
		name = name[:MaxHelloName]
	}
	fences := h.Fences[:min(len(h.Fences), MaxHelloFences)]
	gateways := h.Gateways[:min(len(h.Gateways), MaxHelloGateways)]
	v := h.Version
	if v == 0 {
		v = HelloVersion
	}
	if h.IsProbe() {
		v = max(v, HelloProbeVersion) // the trailer needs version 2
	}
	b = append(b, ControlHello, v)
	b = binary.BigEndian.AppendUint16(b, h.HostID)
	b = binary.BigEndian.AppendUint64(b, h.Instance)
	b = append(b, uint8(len(name)), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(fences)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(gateways)))
	b = append(b, name...)
	for _, list := range [2][]uint32{fences, gateways} {
		for _, f := range list {
			b = append(b, byte(f>>16), byte(f>>8), byte(f))
		}
	}
	if h.IsProbe() {
		b = binary.BigEndian.AppendUint64(b, h.Cookie)
		b = binary.BigEndian.AppendUint64(b, h.Echo)
	}
	return b
}

// Decode parses the hello in b, overwriting every field of h (reusing the
// capacity of h.Fences and h.Gateways). Bytes after the last gateway are
// ignored: they are Ethernet padding or fields a later version appends.
// It accepts any version >= 1 (a later version only appends fields) and
// rejects a hello beyond the bounds, with a name that is not UTF-8 or with
// fence ID 0 or 0xFFFFFF. On error h is zeroed.
func (h *Hello) Decode(b []byte) error {
	if err := h.decode(b); err != nil {
		*h = Hello{Fences: h.Fences[:0], Gateways: h.Gateways[:0]}
		return err
	}
	return nil
}

func (h *Hello) decode(b []byte) error {
	if len(b) < HelloHeaderLen {
		return ErrHelloShort
	}
	if b[helloOffsetType] != ControlHello {
		return ErrHelloType
	}
	if b[helloOffsetVersion] < HelloVersion {
		return ErrHelloVersion
	}
	nameLen := int(b[helloOffsetNameLen])
	nf := int(binary.BigEndian.Uint16(b[helloOffsetFences:]))
	ng := int(binary.BigEndian.Uint16(b[helloOffsetGateways:]))
	if nameLen > MaxHelloName || nf > MaxHelloFences || ng > MaxHelloGateways {
		return ErrHelloBounds
	}
	if len(b) < HelloHeaderLen+nameLen+helloFenceIDLen*(nf+ng) {
		return ErrHelloShort
	}
	name := b[HelloHeaderLen : HelloHeaderLen+nameLen]
	if !utf8.Valid(name) {
		return ErrHelloName
	}
	h.Version = b[helloOffsetVersion]
	h.HostID = binary.BigEndian.Uint16(b[helloOffsetHostID:])
	h.Instance = binary.BigEndian.Uint64(b[helloOffsetInstance:])
	if h.Name != string(name) { // no allocation when unchanged
		h.Name = string(name)
	}
	p := b[HelloHeaderLen+nameLen:]
	var err error
	if h.Fences, p, err = decodeFenceIDs(h.Fences[:0], p, nf); err != nil {
		return err
	}
	if h.Gateways, p, err = decodeFenceIDs(h.Gateways[:0], p, ng); err != nil {
		return err
	}
	h.Cookie, h.Echo = 0, 0
	if h.Version >= HelloProbeVersion && len(p) >= helloProbeTrailer {
		h.Cookie = binary.BigEndian.Uint64(p)
		h.Echo = binary.BigEndian.Uint64(p[8:])
	}
	return nil
}

func decodeFenceIDs(dst []uint32, p []byte, n int) ([]uint32, []byte, error) {
	for range n {
		f := uint32(p[0])<<16 | uint32(p[1])<<8 | uint32(p[2])
		if f == ControlFence || f == ReservedFence {
			return dst, p, ErrHelloFence
		}
		dst = append(dst, f)
		p = p[helloFenceIDLen:]
	}
	return dst, p, nil
}
