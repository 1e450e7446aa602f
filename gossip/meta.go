package gossip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"

	"github.com/corralnet/corral/fence"
)

// Node metadata format constants (see the package doc for the layout).
const (
	// MetaVersion is the metadata format version this package writes.
	MetaVersion = 1
	// MetaHeaderLen is the fixed part of the metadata.
	MetaHeaderLen = 24
	// MaxMetaLen is the longest metadata memberlist carries
	// (memberlist.MetaMaxSize).
	MaxMetaLen = 512
	// MaxDataAddrs is the most data addresses a host announces.
	MaxDataAddrs = 4
	// MaxMetaFences is the most fence plus gateway IDs the metadata can
	// hold: with one IPv4 data address, (512 − 24 − 7) / 3 = 160.
	// Every IPv6 address takes 19 bytes, an IPv4 one 7, out of that room.
	MaxMetaFences = (MaxMetaLen - MetaHeaderLen - metaAddr4Len) / fenceIDLen

	metaOffsetVersion  = 0
	metaOffsetInst     = 1
	metaOffsetOuter    = 2
	metaOffsetFlags    = 8
	metaOffsetAddrs    = 9
	metaOffsetInstance = 10
	metaOffsetFences   = 18
	metaOffsetGateways = 20
	// bytes 22, 23: reserved, zero.
	fenceIDLen   = 3
	metaAddr4Len = 1 + 4 + 2
	metaAddr6Len = 1 + 16 + 2
)

// Metadata decode and encode errors.
var (
	ErrMetaShort    = errors.New("gossip: node metadata truncated")
	ErrMetaVersion  = errors.New("gossip: unsupported node metadata version")
	ErrMetaBounds   = errors.New("gossip: node metadata exceeds its bounds")
	ErrMetaAddr     = errors.New("gossip: node metadata has an invalid data address")
	ErrMetaFence    = errors.New("gossip: node metadata lists an invalid or unsorted fence ID")
	ErrMetaTooLarge = errors.New("gossip: fences and data addresses do not fit the 512-byte node metadata")
)

// Meta is the memberlist node metadata of one corral host: who it is on
// the uplink and which fences it has. Its wire format is in the package
// doc; it is versioned and bounded by [MaxMetaLen].
type Meta struct {
	// Version is the format version; 0 is written as [MetaVersion].
	Version uint8
	// Installation is the host's installation ID.
	Installation uint8
	// OuterMAC is the host's outer MAC (DESIGN 3.2).
	OuterMAC [6]byte
	// Instance is a random number the host picks at start: a new value
	// under the same name is a restart, whose fence state replaces the
	// old one's at once.
	Instance uint64
	// DataAddrs are where the host's uplink receives frames, at most
	// [MaxDataAddrs].
	DataAddrs []netip.AddrPort
	// Fences are the fences the host has local ports for, sorted, unique,
	// each a valid fence ID.
	Fences []uint32
	// Gateways are the fences whose gateway the host serves, sorted,
	// unique.
	Gateways []uint32
	// Leaving is set by a host that is leaving the cluster on purpose, so
	// that the others list it as left rather than dead (memberlist's
	// events do not tell the two apart).
	Leaving bool
}

// Meta flags (byte 8).
const metaFlagLeaving = 1

// Len returns the encoded length of m.
func (m *Meta) Len() int {
	n := MetaHeaderLen + fenceIDLen*(len(m.Fences)+len(m.Gateways))
	for _, a := range m.DataAddrs {
		n += addrLen(a)
	}
	return n
}

func addrLen(a netip.AddrPort) int {
	if a.Addr().Is4() {
		return metaAddr4Len
	}
	return metaAddr6Len
}

// Validate reports whether m is within the bounds of the format.
func (m *Meta) Validate() error {
	if len(m.DataAddrs) > MaxDataAddrs {
		return ErrMetaBounds
	}
	for _, a := range m.DataAddrs {
		if !validDataAddr(a) {
			return ErrMetaAddr
		}
	}
	for _, l := range [2][]uint32{m.Fences, m.Gateways} {
		if !validFenceList(l) {
			return ErrMetaFence
		}
	}
	if m.Len() > MaxMetaLen {
		return ErrMetaTooLarge
	}
	return nil
}

func validDataAddr(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && a.Addr().Zone() == "" && !a.Addr().Is4In6()
}

func validFenceList(l []uint32) bool {
	for i, f := range l {
		if !fence.ValidFenceID(f) || (i > 0 && l[i-1] >= f) {
			return false
		}
	}
	return true
}

// AppendTo appends the encoded metadata to b and returns the extended
// slice. Call [Meta.Validate] first: AppendTo writes whatever m holds.
func (m *Meta) AppendTo(b []byte) []byte {
	v := m.Version
	if v == 0 {
		v = MetaVersion
	}
	b = append(b, v, m.Installation)
	b = append(b, m.OuterMAC[:]...)
	var flags byte
	if m.Leaving {
		flags |= metaFlagLeaving
	}
	b = append(b, flags, uint8(len(m.DataAddrs)))
	b = binary.BigEndian.AppendUint64(b, m.Instance)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Fences)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Gateways)))
	b = append(b, 0, 0)
	for _, a := range m.DataAddrs {
		if ip := a.Addr(); ip.Is4() {
			v4 := ip.As4()
			b = append(b, 4)
			b = append(b, v4[:]...)
		} else {
			v6 := ip.As16()
			b = append(b, 6)
			b = append(b, v6[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, a.Port())
	}
	for _, l := range [2][]uint32{m.Fences, m.Gateways} {
		b = appendFenceIDs(b, l)
	}
	return b
}

func appendFenceIDs(b []byte, l []uint32) []byte {
	for _, f := range l {
		b = append(b, byte(f>>16), byte(f>>8), byte(f))
	}
	return b
}

// Decode parses the metadata in b, overwriting every field of m (reusing
// the capacity of its slices). It accepts any version >= 1: a later
// version only appends fields, and bytes after the last gateway are
// ignored. On error m is zeroed.
func (m *Meta) Decode(b []byte) error {
	if err := m.decode(b); err != nil {
		*m = Meta{DataAddrs: m.DataAddrs[:0], Fences: m.Fences[:0], Gateways: m.Gateways[:0]}
		return err
	}
	return nil
}

func (m *Meta) decode(b []byte) error {
	if len(b) < MetaHeaderLen {
		return ErrMetaShort
	}
	if len(b) > MaxMetaLen {
		return ErrMetaBounds
	}
	if b[metaOffsetVersion] < MetaVersion {
		return ErrMetaVersion
	}
	na := int(b[metaOffsetAddrs])
	nf := int(binary.BigEndian.Uint16(b[metaOffsetFences:]))
	ng := int(binary.BigEndian.Uint16(b[metaOffsetGateways:]))
	if na > MaxDataAddrs || nf+ng > MaxMetaLen/fenceIDLen {
		return ErrMetaBounds
	}
	m.Version = b[metaOffsetVersion]
	m.Installation = b[metaOffsetInst]
	copy(m.OuterMAC[:], b[metaOffsetOuter:])
	m.Leaving = b[metaOffsetFlags]&metaFlagLeaving != 0
	m.Instance = binary.BigEndian.Uint64(b[metaOffsetInstance:])
	p := b[MetaHeaderLen:]
	m.DataAddrs = m.DataAddrs[:0]
	for range na {
		if len(p) < 1 {
			return ErrMetaShort
		}
		var l int
		switch p[0] {
		case 4:
			l = metaAddr4Len
		case 6:
			l = metaAddr6Len
		default:
			return ErrMetaAddr
		}
		if len(p) < l {
			return ErrMetaShort
		}
		ip, _ := netip.AddrFromSlice(p[1 : l-2])
		a := netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p[l-2:]))
		if !validDataAddr(a) {
			return ErrMetaAddr
		}
		m.DataAddrs = append(m.DataAddrs, a)
		p = p[l:]
	}
	if len(p) < fenceIDLen*(nf+ng) {
		return ErrMetaShort
	}
	m.Fences, p = decodeFenceIDs(m.Fences[:0], p, nf)
	m.Gateways, _ = decodeFenceIDs(m.Gateways[:0], p, ng)
	if !validFenceList(m.Fences) || !validFenceList(m.Gateways) {
		return ErrMetaFence
	}
	return nil
}

func decodeFenceIDs(dst []uint32, p []byte, n int) ([]uint32, []byte) {
	for range n {
		dst = append(dst, uint32(p[0])<<16|uint32(p[1])<<8|uint32(p[2]))
		p = p[fenceIDLen:]
	}
	return dst, p
}

// Has reports whether the metadata names fence id among its fences or
// gateways (a host serving a fence's gateway has that fence).
func (m *Meta) Has(id uint32) bool {
	_, ok := slices.BinarySearch(m.Fences, id)
	if !ok {
		_, ok = slices.BinarySearch(m.Gateways, id)
	}
	return ok
}
