package fence

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Sealed frames (DESIGN 3.6), fence header version 2:
//
//	outer Ethernet (14) | fence header, Ver=2 (4) | key ID (1) | counter (8) | sealed inner frame | tag (16)
const (
	// SealedVersion is the fence header version of sealed frames.
	SealedVersion = 2
	// SealKeyLen is the length of a fence key (AES-256, ChaCha20).
	SealKeyLen = 32
	// SealNonceLen is the AEAD nonce length.
	SealNonceLen = 12
	// SealTagLen is the AEAD tag length.
	SealTagLen = 16
	// SealPrefixLen is key ID plus counter, between fence header and
	// ciphertext.
	SealPrefixLen = 1 + 8
	// SealOverhead is what sealing adds to an encapsulated frame: key ID,
	// counter and tag (25 bytes; it counts against the uplink MTU).
	SealOverhead = SealPrefixLen + SealTagLen
	// SealedHeaderLen is the headroom a sealed frame needs in front of the
	// inner frame: outer header, fence header, key ID, counter (27).
	SealedHeaderLen = EncapLen + SealPrefixLen
	// MinSealedPayloadLen is the shortest payload (after the fence header)
	// of a whole sealed frame: key ID, counter, a 14-byte inner frame, tag.
	MinSealedPayloadLen = SealOverhead + MinInnerLen

	// ReplayWindow is the number of counters below the highest seen that a
	// receiver still accepts once each (out-of-order delivery).
	ReplayWindow = 2048 - 64

	sealOffsetKeyID   = 0
	sealOffsetCounter = 1

	// HKDF info prefix of fence keys; the installation ID and the 24-bit
	// fence ID follow.
	fenceKeyInfo = "corral fence key v2"
)

// Sealing errors; each means the frame was dropped.
var (
	ErrNoKey   = errors.New("fence: no key for this key ID and fence")
	ErrAuth    = errors.New("fence: sealed frame failed authentication")
	ErrReplay  = errors.New("fence: sealed frame replayed or too old")
	ErrSealLen = errors.New("fence: sealed frame too short")
)

// DeriveFenceKey derives the key of fence from an installation secret with
// HKDF-SHA256 (RFC 5869): salt empty, info "corral fence key v2" ·
// installation ID · 24-bit fence ID (big-endian), 32 bytes. A host given
// only some fences' keys can neither read nor forge the others.
func DeriveFenceKey(secret []byte, installation uint8, fence uint32) ([SealKeyLen]byte, error) {
	var key [SealKeyLen]byte
	if len(secret) < 16 {
		return key, errors.New("fence: installation secret shorter than 16 bytes")
	}
	info := fenceKeyInfo + string([]byte{installation, byte(fence >> 16), byte(fence >> 8), byte(fence)})
	k, err := hkdf.Key(sha256.New, secret, nil, info, SealKeyLen)
	if err != nil {
		return key, err
	}
	copy(key[:], k)
	return key, nil
}

// NewAESGCM returns AES-256-GCM with key (the default AEAD).
func NewAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// FenceKey is one key a host holds: fence Fence, key ID ID.
type FenceKey struct {
	ID    uint8
	Fence uint32
	Key   [SealKeyLen]byte
}

// SealConfig configures a [Sealer].
type SealConfig struct {
	Params        // OUI, installation, EtherType
	HostID uint16 // this host's ID: with the installation, part of every nonce

	// Keys are the fence keys this host holds. It can send and receive
	// sealed frames only on those fences. Two keys of one fence with
	// different IDs may be live at once (rotation).
	Keys []FenceKey
	// SendKeyID maps a fence to the key ID used to send on it; a fence not
	// listed sends with its key of the highest ID.
	SendKeyID map[uint32]uint8
	// NewAEAD builds the AEAD from a 32-byte key; nil means AES-256-GCM
	// ([NewAESGCM]). For ChaCha20-Poly1305 pass
	// golang.org/x/crypto/chacha20poly1305.New. It must return a 12-byte
	// nonce, 16-byte tag AEAD.
	NewAEAD func(key []byte) (cipher.AEAD, error)
	// Counter is the first send counter; zero means the current Unix time
	// in nanoseconds, so a restarted host never reuses a (key, nonce) pair
	// as long as its clock does not go back and it sends fewer than one
	// frame per nanosecond on average.
	Counter uint64
}

type keyRef struct {
	id    uint8
	fence uint32
}

type replayKey struct {
	src   OuterMAC
	fence uint32
}

// Sealer seals outbound and opens inbound frames of one host (DESIGN 3.6).
// It is safe for concurrent use; the keys are fixed at construction (make
// a new Sealer to rotate).
type Sealer struct {
	params  Params
	self    OuterMAC
	aeads   map[keyRef]cipher.AEAD
	sendKey map[uint32]uint8
	counter atomic.Uint64
	nonces  sync.Pool // *[SealNonceLen]byte

	mu sync.Mutex // mu guards replay
	// +checklocks:mu
	replay map[replayKey]*replayWindow

	authFailed, replayed, noKey atomic.Uint64
}

// NewSealer builds a Sealer from cfg.
func NewSealer(cfg SealConfig) (*Sealer, error) {
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.HostID == 0 || cfg.HostID == 0xffff {
		return nil, fmt.Errorf("fence: host ID %#x is reserved", cfg.HostID)
	}
	newAEAD := cfg.NewAEAD
	if newAEAD == nil {
		newAEAD = NewAESGCM
	}
	s := &Sealer{
		params:  cfg.Params,
		self:    cfg.Params.OuterMAC(cfg.HostID),
		aeads:   make(map[keyRef]cipher.AEAD, len(cfg.Keys)),
		sendKey: make(map[uint32]uint8, len(cfg.Keys)),
		replay:  make(map[replayKey]*replayWindow),
	}
	s.nonces.New = func() any { return new([SealNonceLen]byte) }
	for _, k := range cfg.Keys {
		if k.Fence > MaxFenceID { // fence 0 (control) has keys too: hellos are sealed
			return nil, fmt.Errorf("fence: key for invalid fence %#x", k.Fence)
		}
		a, err := newAEAD(k.Key[:])
		if err != nil {
			return nil, fmt.Errorf("fence: key %d of fence %d: %w", k.ID, k.Fence, err)
		}
		if a.NonceSize() != SealNonceLen || a.Overhead() != SealTagLen {
			return nil, fmt.Errorf("fence: AEAD must have a %d-byte nonce and %d-byte tag", SealNonceLen, SealTagLen)
		}
		ref := keyRef{k.ID, k.Fence}
		if _, dup := s.aeads[ref]; dup {
			return nil, fmt.Errorf("fence: two keys with ID %d for fence %d", k.ID, k.Fence)
		}
		s.aeads[ref] = a
		if id, ok := s.sendKey[k.Fence]; !ok || k.ID > id {
			s.sendKey[k.Fence] = k.ID
		}
	}
	for f, id := range cfg.SendKeyID {
		if _, ok := s.aeads[keyRef{id, f}]; !ok {
			return nil, fmt.Errorf("fence: send key ID %d of fence %d is not among the keys", id, f)
		}
		s.sendKey[f] = id
	}
	c := cfg.Counter
	if c == 0 {
		c = uint64(time.Now().UnixNano())
	}
	s.counter.Store(c)
	return s, nil
}

// HasFence reports whether s can send on fence.
func (s *Sealer) HasFence(fence uint32) bool { _, ok := s.sendKey[fence]; return ok }

// SealStats are a Sealer's drop counters.
type SealStats struct{ AuthFailed, Replayed, NoKey uint64 }

// Stats returns the drop counters.
func (s *Sealer) Stats() SealStats {
	return SealStats{AuthFailed: s.authFailed.Load(), Replayed: s.replayed.Load(), NoKey: s.noKey.Load()}
}

// nonce writes installation · host ID · 0 · counter.
func nonce(n *[SealNonceLen]byte, src OuterMAC, counter uint64) {
	n[0] = src[OuterMACOffsetInstallation]
	n[1], n[2] = src[OuterMACOffsetHostID], src[OuterMACOffsetHostID+1]
	n[3] = 0
	binary.BigEndian.PutUint64(n[4:], counter)
}

// Encap seals the inner frame at b[offset:offset+innerLen] for fence and
// encapsulates it from this host to dst, in place: it writes the outer
// header, the version-2 fence header (FT 0, Seq 0), the key ID and the
// counter into b[offset-[SealedHeaderLen]:offset], encrypts the inner
// frame where it is and appends the tag, and returns
// b[offset-SealedHeaderLen : offset+innerLen+SealTagLen]. It needs
// len(b) >= offset+innerLen+[SealTagLen]. The additional data is the outer
// header and the fence header. Split the result like any frame. It does
// not allocate.
func (s *Sealer) Encap(b []byte, offset, innerLen int, dst OuterMAC, fence uint32) (Frame, error) {
	id, ok := s.sendKey[fence]
	if !ok {
		return nil, ErrNoKey
	}
	if offset < SealedHeaderLen || offset+innerLen+SealTagLen > len(b) {
		return nil, ErrSealLen
	}
	a := s.aeads[keyRef{id, fence}]
	start := offset - SealedHeaderLen
	s.params.Encap(b, start+EncapLen, 0, dst, s.self, HeaderFields{Version: SealedVersion, Fence: fence})
	counter := s.counter.Add(1)
	b[start+EncapLen+sealOffsetKeyID] = id
	binary.BigEndian.PutUint64(b[start+EncapLen+sealOffsetCounter:], counter)
	n := s.nonces.Get().(*[SealNonceLen]byte)
	nonce(n, s.self, counter)
	a.Seal(b[offset:offset], n[:], b[offset:offset+innerLen], b[start:start+EncapLen])
	s.nonces.Put(n)
	return Frame(b[start : offset+innerLen+SealTagLen]), nil
}

// Open authenticates and decrypts, in place, the sealed payload of a
// frame from src to dst on fence: payload is everything after the fence
// header (fr.Inner() of a whole frame, or the output of
// [Reassembler.Add] for a fragmented one). It rebuilds the additional
// data (outer header, fence header with FT 0 and Seq 0), checks the key
// ID, the tag and the replay window of (src, fence), and returns the
// inner frame, which aliases payload. Errors: [ErrSealLen], [ErrNoKey],
// [ErrAuth], [ErrReplay], [ErrRunt]; each is counted. It does not
// allocate, except once per new (src, fence) for its replay window.
func (s *Sealer) Open(dst, src OuterMAC, fence uint32, payload []byte) ([]byte, error) {
	if len(payload) < SealOverhead {
		return nil, ErrSealLen
	}
	a, ok := s.aeads[keyRef{payload[sealOffsetKeyID], fence}]
	if !ok {
		s.noKey.Add(1)
		return nil, ErrNoKey
	}
	counter := binary.BigEndian.Uint64(payload[sealOffsetCounter:])
	rk := replayKey{src, fence}
	s.mu.Lock()
	w := s.replay[rk]
	fresh := w == nil || w.check(counter)
	s.mu.Unlock()
	if !fresh {
		s.replayed.Add(1)
		return nil, ErrReplay
	}
	n := s.nonces.Get().(*[SealNonceLen]byte)
	nonce(n, src, counter)
	// The additional data as the sender had it: outer header and the
	// fence header of the whole frame (fragments carry other FT and Seq).
	ad := adPool.Get().(*[EncapLen]byte)
	copy(ad[FrameOffsetDst:], dst[:])
	copy(ad[FrameOffsetSrc:], src[:])
	binary.BigEndian.PutUint16(ad[FrameOffsetType:], s.params.etherType())
	Header(ad[FrameOffsetHeader:]).Encode(&HeaderFields{Version: SealedVersion, Fence: fence})
	ct := payload[SealPrefixLen:]
	inner, err := a.Open(ct[:0], n[:], ct, ad[:])
	s.nonces.Put(n)
	adPool.Put(ad)
	if err != nil {
		s.authFailed.Add(1)
		return nil, ErrAuth
	}
	s.mu.Lock()
	if w = s.replay[rk]; w == nil {
		w = new(replayWindow)
		s.replay[rk] = w
	}
	fresh = w.update(counter)
	s.mu.Unlock()
	if !fresh { // a concurrent copy won the race
		s.replayed.Add(1)
		return nil, ErrReplay
	}
	if len(inner) < MinInnerLen {
		return nil, ErrRunt
	}
	return inner, nil
}

var adPool = sync.Pool{New: func() any { return new([EncapLen]byte) }}

// replayWindow is the sliding window of RFC 6479 (as in WireGuard's
// replay.Filter): a ring of 2048 bits; counters more than [ReplayWindow]
// below the highest accepted are refused.
type replayWindow struct {
	last uint64
	ring [replayBlocks]uint64
}

const (
	replayBlockBits = 64
	replayBlocks    = 2048 / replayBlockBits
	replayBlockMask = replayBlocks - 1
)

// check reports whether counter would be accepted, without recording it.
func (w *replayWindow) check(counter uint64) bool {
	if counter > w.last {
		return true
	}
	if w.last-counter > ReplayWindow {
		return false
	}
	block := (counter / replayBlockBits) & replayBlockMask
	return w.ring[block]&(1<<(counter%replayBlockBits)) == 0
}

// update records counter and reports whether it was new.
func (w *replayWindow) update(counter uint64) bool {
	if counter > w.last {
		cur := w.last / replayBlockBits
		next := counter / replayBlockBits
		diff := next - cur
		if diff > replayBlocks {
			diff = replayBlocks
		}
		for i := uint64(1); i <= diff; i++ {
			w.ring[(cur+i)&replayBlockMask] = 0
		}
		w.last = counter
	} else if w.last-counter > ReplayWindow {
		return false
	}
	block := (counter / replayBlockBits) & replayBlockMask
	bit := uint64(1) << (counter % replayBlockBits)
	if w.ring[block]&bit != 0 {
		return false
	}
	w.ring[block] |= bit
	return true
}
