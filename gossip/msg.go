package gossip

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/corralnet/corral/fence"
)

// MsgType is the first byte of every fence-state message.
type MsgType uint8

// Fence-state message types (see the package doc for the layouts).
const (
	// MsgUpdate carries one owner's MACs in one fence: a full set (Base 0)
	// or a delta from version Base to Seq.
	MsgUpdate MsgType = 1
	// MsgSyncHash carries the digest hash of the sender's table of a fence.
	MsgSyncHash MsgType = 2
	// MsgSyncDigest lists the (owner, version) pairs of the sender's table
	// of a fence.
	MsgSyncDigest MsgType = 3
	// MsgPull asks for the full sets of some owners in a fence.
	MsgPull MsgType = 4
)

// Fence-state message format constants.
const (
	// MsgVersion is the message format version this package writes.
	MsgVersion = 1
	// MsgHeaderLen is the header every message starts with: type,
	// version, sender outer MAC, fence ID.
	MsgHeaderLen = 11
	// UpdateHeaderLen is the fixed part of an update.
	UpdateHeaderLen = MsgHeaderLen + 6 + 8 + 8 + 8 + 2 + 2
	// SyncHashLen is the length of a sync-hash message.
	SyncHashLen = MsgHeaderLen + 2 + 8
	// SyncDigestHeaderLen is the fixed part of a digest.
	SyncDigestHeaderLen = MsgHeaderLen + 1 + 2
	// PullHeaderLen is the fixed part of a pull.
	PullHeaderLen = MsgHeaderLen + 2
	// DigestEntryLen is the length of one digest entry: owner, version.
	DigestEntryLen = 6 + 8
	// MaxMsgMACs is the most MACs (added plus removed) one update carries.
	MaxMsgMACs = 4096
	// MaxMsgOwners is the most owners one digest or pull lists: the most
	// hosts one fence can have in a host's table.
	MaxMsgOwners = 1024
	// MaxMsgLen is the longest message this package writes or accepts.
	MaxMsgLen = UpdateHeaderLen + 6*MaxMsgMACs

	msgOffsetType    = 0
	msgOffsetVersion = 1
	msgOffsetSender  = 2
	msgOffsetFence   = 8
	macLen           = 6
)

// Message decode errors.
var (
	ErrMsgShort   = errors.New("gossip: fence-state message truncated")
	ErrMsgType    = errors.New("gossip: unknown fence-state message type")
	ErrMsgVersion = errors.New("gossip: unsupported fence-state message version")
	ErrMsgBounds  = errors.New("gossip: fence-state message exceeds its bounds")
	ErrMsgFence   = errors.New("gossip: fence-state message names an invalid fence ID")
)

// DigestEntry is one owner's version in a [MsgSyncDigest].
type DigestEntry struct {
	Owner [6]byte
	Seq   uint64
}

// Message is one fence-state message, exchanged only among the hosts of
// its fence. Which fields are used depends on Type; Decode zeroes the
// others. Its wire format is in the package doc.
type Message struct {
	Type    MsgType
	Version uint8 // 0 is written as MsgVersion
	// Sender is the outer MAC of the host that sent the message.
	Sender [6]byte
	// Fence is the fence the message is about.
	Fence uint32

	// Update: the owner of the MACs (the sender, or another host whose
	// state the sender forwards), the owner's metadata instance, the
	// version the delta applies to (0: Add is the full set), the new
	// version, and the MACs added and removed.
	Owner    [6]byte
	Instance uint64
	Base     uint64
	Seq      uint64
	Add      [][6]byte
	Del      [][6]byte

	// SyncHash: how many owners the sender's table has, and their hash.
	Count uint16
	Hash  uint64

	// SyncDigest: Reply is set on the answer to a digest (it is not
	// answered again); Digest lists the sender's owners and versions.
	Reply  bool
	Digest []DigestEntry

	// Pull: the owners whose full sets the sender asks for.
	Owners [][6]byte
}

// Len returns the encoded length of m.
func (m *Message) Len() int {
	switch m.Type {
	case MsgUpdate:
		return UpdateHeaderLen + macLen*(len(m.Add)+len(m.Del))
	case MsgSyncHash:
		return SyncHashLen
	case MsgSyncDigest:
		return SyncDigestHeaderLen + DigestEntryLen*len(m.Digest)
	case MsgPull:
		return PullHeaderLen + macLen*len(m.Owners)
	}
	return MsgHeaderLen
}

// Validate reports whether m is within the bounds of the format.
func (m *Message) Validate() error {
	if !fence.ValidFenceID(m.Fence) {
		return ErrMsgFence
	}
	switch m.Type {
	case MsgUpdate:
		if len(m.Add)+len(m.Del) > MaxMsgMACs {
			return ErrMsgBounds
		}
	case MsgSyncHash:
	case MsgSyncDigest:
		if len(m.Digest) > MaxMsgOwners {
			return ErrMsgBounds
		}
	case MsgPull:
		if len(m.Owners) > MaxMsgOwners {
			return ErrMsgBounds
		}
	default:
		return ErrMsgType
	}
	return nil
}

// AppendTo appends the encoded message to b and returns the extended
// slice. Call [Message.Validate] first.
func (m *Message) AppendTo(b []byte) []byte {
	v := m.Version
	if v == 0 {
		v = MsgVersion
	}
	b = append(b, byte(m.Type), v)
	b = append(b, m.Sender[:]...)
	b = append(b, byte(m.Fence>>16), byte(m.Fence>>8), byte(m.Fence))
	switch m.Type {
	case MsgUpdate:
		b = append(b, m.Owner[:]...)
		b = binary.BigEndian.AppendUint64(b, m.Instance)
		b = binary.BigEndian.AppendUint64(b, m.Base)
		b = binary.BigEndian.AppendUint64(b, m.Seq)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Add)))
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Del)))
		b = appendMACs(b, m.Add)
		b = appendMACs(b, m.Del)
	case MsgSyncHash:
		b = binary.BigEndian.AppendUint16(b, m.Count)
		b = binary.BigEndian.AppendUint64(b, m.Hash)
	case MsgSyncDigest:
		var flags byte
		if m.Reply {
			flags = 1
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Digest)))
		for _, e := range m.Digest {
			b = append(b, e.Owner[:]...)
			b = binary.BigEndian.AppendUint64(b, e.Seq)
		}
	case MsgPull:
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Owners)))
		b = appendMACs(b, m.Owners)
	}
	return b
}

func appendMACs(b []byte, macs [][6]byte) []byte {
	for _, m := range macs {
		b = append(b, m[:]...)
	}
	return b
}

// Decode parses the message in b, overwriting every field of m (reusing
// the capacity of its slices). It accepts any version >= 1 (a later
// version only appends fields; trailing bytes are ignored). On error m is
// zeroed.
func (m *Message) Decode(b []byte) error {
	err := m.decode(b)
	if err != nil {
		m.reset()
	}
	return err
}

func (m *Message) reset() {
	*m = Message{Add: m.Add[:0], Del: m.Del[:0], Digest: m.Digest[:0], Owners: m.Owners[:0]}
}

func (m *Message) decode(b []byte) error {
	if len(b) < MsgHeaderLen {
		return ErrMsgShort
	}
	if len(b) > MaxMsgLen {
		return ErrMsgBounds
	}
	t := MsgType(b[msgOffsetType])
	if t < MsgUpdate || t > MsgPull {
		return ErrMsgType
	}
	if b[msgOffsetVersion] < MsgVersion {
		return ErrMsgVersion
	}
	f := uint32(b[msgOffsetFence])<<16 | uint32(b[msgOffsetFence+1])<<8 | uint32(b[msgOffsetFence+2])
	if !fence.ValidFenceID(f) {
		return ErrMsgFence
	}
	m.reset()
	m.Type, m.Version, m.Fence = t, b[msgOffsetVersion], f
	copy(m.Sender[:], b[msgOffsetSender:])
	p := b[MsgHeaderLen:]
	switch t {
	case MsgUpdate:
		if len(p) < UpdateHeaderLen-MsgHeaderLen {
			return ErrMsgShort
		}
		copy(m.Owner[:], p)
		m.Instance = binary.BigEndian.Uint64(p[6:])
		m.Base = binary.BigEndian.Uint64(p[14:])
		m.Seq = binary.BigEndian.Uint64(p[22:])
		na := int(binary.BigEndian.Uint16(p[30:]))
		nd := int(binary.BigEndian.Uint16(p[32:]))
		if na+nd > MaxMsgMACs {
			return ErrMsgBounds
		}
		p = p[34:]
		if len(p) < macLen*(na+nd) {
			return ErrMsgShort
		}
		m.Add, p = decodeMACs(m.Add, p, na)
		m.Del, _ = decodeMACs(m.Del, p, nd)
	case MsgSyncHash:
		if len(p) < SyncHashLen-MsgHeaderLen {
			return ErrMsgShort
		}
		m.Count = binary.BigEndian.Uint16(p)
		m.Hash = binary.BigEndian.Uint64(p[2:])
	case MsgSyncDigest:
		if len(p) < SyncDigestHeaderLen-MsgHeaderLen {
			return ErrMsgShort
		}
		m.Reply = p[0]&1 != 0
		n := int(binary.BigEndian.Uint16(p[1:]))
		if n > MaxMsgOwners {
			return ErrMsgBounds
		}
		p = p[3:]
		if len(p) < DigestEntryLen*n {
			return ErrMsgShort
		}
		for range n {
			var e DigestEntry
			copy(e.Owner[:], p)
			e.Seq = binary.BigEndian.Uint64(p[6:])
			m.Digest = append(m.Digest, e)
			p = p[DigestEntryLen:]
		}
	case MsgPull:
		if len(p) < PullHeaderLen-MsgHeaderLen {
			return ErrMsgShort
		}
		n := int(binary.BigEndian.Uint16(p))
		if n > MaxMsgOwners {
			return ErrMsgBounds
		}
		p = p[2:]
		if len(p) < macLen*n {
			return ErrMsgShort
		}
		m.Owners, _ = decodeMACs(m.Owners, p, n)
	}
	return nil
}

func decodeMACs(dst [][6]byte, p []byte, n int) ([][6]byte, []byte) {
	for range n {
		dst = append(dst, [6]byte(p[:macLen]))
		p = p[macLen:]
	}
	return dst, p
}

var msgTypeNames = [...]string{"", "update", "sync-hash", "sync-digest", "pull"}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && t != 0 {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}
