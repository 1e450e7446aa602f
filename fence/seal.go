package fence

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
	// SealKeyLen is the length of a fence key (AES-256, ChaCha20) and of
	// an installation secret.
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

	// DefaultMaxReplayWindows bounds a [ReplayTable] when 0 is given.
	DefaultMaxReplayWindows = 1 << 16

	sealOffsetKeyID   = 0
	sealOffsetCounter = 1

	// HKDF info prefix of fence keys; the installation ID and the 24-bit
	// fence ID follow.
	fenceKeyInfo = "corral fence key v2"
	// HKDF info of key IDs.
	keyIDInfo = "corral key id v2"
)

// Sealing errors; each means the frame was dropped.
var (
	ErrNoKey   = errors.New("fence: no key for this key ID and fence")
	ErrAuth    = errors.New("fence: sealed frame failed authentication")
	ErrReplay  = errors.New("fence: sealed frame replayed or too old")
	ErrSealLen = errors.New("fence: sealed frame too short")
	// ErrCounterLimit: the send counter reached the limit reserved for
	// it ([Sealer.SetLimit]); the frame is not sent.
	ErrCounterLimit = errors.New("fence: send counter reached its reserved limit")
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

// KeyID returns the key ID of key material: the first byte of
// HKDF-SHA256 (RFC 5869) with IKM material, empty salt and info "corral
// key id v2". The material is the installation secret for the keys
// derived from it (every fence's key from one secret has the same ID),
// or a fence's own key (key_file). So a key ID names the key itself, not
// where a host keeps it: during a rotation, hosts that hold the old and
// the new secret in either configuration slot agree on which key a frame
// names. Two live keys of one fence must have different IDs (1 in 256
// pairs of secrets collide; generate another one).
func KeyID(material []byte) uint8 {
	k, err := hkdf.Key(sha256.New, material, nil, keyIDInfo, 1)
	if err != nil { // only for an output length HKDF cannot produce
		panic(err)
	}
	return k[0]
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
	// ReceiveOnly keys open frames but never seal them (a previous secret
	// during a rotation). Every fence has at most one key that is not
	// receive-only: the one it sends with.
	ReceiveOnly bool
}

type keyRef struct {
	id    uint8
	fence uint32
}

type sendKey struct {
	id   uint8
	aead cipher.AEAD
}

// Keyring is an immutable set of fence keys with their AEADs: what a
// [Sealer] seals and opens with. [Sealer.SetKeys] replaces it atomically.
type Keyring struct {
	aeads map[keyRef]cipher.AEAD
	send  map[uint32]sendKey
}

// NewKeyring builds the AEADs of keys with newAEAD (nil: [NewAESGCM]).
func NewKeyring(keys []FenceKey, newAEAD func(key []byte) (cipher.AEAD, error)) (*Keyring, error) {
	if newAEAD == nil {
		newAEAD = NewAESGCM
	}
	r := &Keyring{aeads: make(map[keyRef]cipher.AEAD, len(keys)), send: make(map[uint32]sendKey, len(keys))}
	for _, k := range keys {
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
		if _, dup := r.aeads[ref]; dup {
			return nil, fmt.Errorf("fence: two keys with ID %d for fence %d", k.ID, k.Fence)
		}
		r.aeads[ref] = a
		if k.ReceiveOnly {
			continue
		}
		if _, dup := r.send[k.Fence]; dup {
			return nil, fmt.Errorf("fence: two send keys for fence %d", k.Fence)
		}
		r.send[k.Fence] = sendKey{id: k.ID, aead: a}
	}
	return r, nil
}

// CanSend reports whether r has a key to seal frames of fence with.
func (r *Keyring) CanSend(fence uint32) bool { _, ok := r.send[fence]; return ok }

// CanOpen reports whether r has any key of fence.
func (r *Keyring) CanOpen(fence uint32) bool {
	for k := range r.aeads {
		if k.fence == fence {
			return true
		}
	}
	return false
}

// KeyInfo describes the keys of one fence (IDs only: never key bytes).
type KeyInfo struct {
	Fence uint32
	// SendID is the ID of the key frames are sealed with; HasSend false
	// when the fence has only receive-only keys.
	SendID  uint8
	HasSend bool
	// IDs are the IDs of every key frames are opened with, ascending.
	IDs []uint8
}

// Info lists the fences of r with their key IDs, by fence ID.
func (r *Keyring) Info() []KeyInfo {
	by := map[uint32]*KeyInfo{}
	for k := range r.aeads {
		ki := by[k.fence]
		if ki == nil {
			ki = &KeyInfo{Fence: k.fence}
			by[k.fence] = ki
		}
		ki.IDs = append(ki.IDs, k.id)
	}
	out := make([]KeyInfo, 0, len(by))
	for f, ki := range by {
		if s, ok := r.send[f]; ok {
			ki.SendID, ki.HasSend = s.id, true
		}
		slices.Sort(ki.IDs)
		out = append(out, *ki)
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return int(int64(a.Fence) - int64(b.Fence)) })
	return out
}

// SealConfig configures a [Sealer].
type SealConfig struct {
	Params        // OUI, installation, EtherType
	HostID uint16 // this host's ID: with the installation, part of every nonce

	// Keys are the fence keys this host holds. It can send sealed frames
	// only on fences with a key that is not receive-only, and open them
	// only on fences it has a key of. Two keys of one fence with
	// different IDs may be live at once (rotation).
	Keys []FenceKey
	// NewAEAD builds the AEAD from a 32-byte key; nil means AES-256-GCM
	// ([NewAESGCM]). For ChaCha20-Poly1305 pass
	// golang.org/x/crypto/chacha20poly1305.New. It must return a 12-byte
	// nonce, 16-byte tag AEAD.
	NewAEAD func(key []byte) (cipher.AEAD, error)
	// Counter is the send counter before the first frame: the first
	// frame carries Counter+1. Zero means the current Unix time in
	// nanoseconds. The caller makes sure it is above every counter this
	// host ID ever sent with these keys (package uplink's caller keeps a
	// reserved high-water mark on disk, see the package doc).
	Counter uint64
	// Limit is the first counter that may not be used; Encap fails with
	// [ErrCounterLimit] from there until [Sealer.SetLimit] raises it.
	// Zero: no limit.
	Limit uint64
}

// Sealer seals outbound and opens inbound frames of one host (DESIGN 3.6).
// It is safe for concurrent use. Its keys can be replaced at any time
// ([Sealer.SetKeys]); the send counter carries on across such a change.
type Sealer struct {
	params  Params
	self    OuterMAC
	newAEAD func(key []byte) (cipher.AEAD, error)
	ring    atomic.Pointer[Keyring]
	counter atomic.Uint64
	limit   atomic.Uint64 // 0: none
	nonces  sync.Pool     // *[SealNonceLen]byte

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
	s := &Sealer{params: cfg.Params, self: cfg.Params.OuterMAC(cfg.HostID), newAEAD: cfg.NewAEAD}
	s.nonces.New = func() any { return new([SealNonceLen]byte) }
	if err := s.SetKeys(cfg.Keys); err != nil {
		return nil, err
	}
	c := cfg.Counter
	if c == 0 {
		c = uint64(time.Now().UnixNano())
	}
	s.counter.Store(c)
	s.limit.Store(cfg.Limit)
	return s, nil
}

// SetKeys replaces the keys, atomically: a frame is sealed or opened
// with either the old set or the new one. Replay windows (kept by the
// caller's [ReplayTable]) and the send counter carry on.
func (s *Sealer) SetKeys(keys []FenceKey) error {
	r, err := NewKeyring(keys, s.newAEAD)
	if err != nil {
		return err
	}
	s.ring.Store(r)
	return nil
}

// Keys returns the keys in use now.
func (s *Sealer) Keys() *Keyring { return s.ring.Load() }

// CanSend reports whether s can seal frames of fence now.
func (s *Sealer) CanSend(fence uint32) bool { return s.ring.Load().CanSend(fence) }

// Counter returns the last send counter used (or the starting one).
func (s *Sealer) Counter() uint64 { return s.counter.Load() }

// SetLimit sets the first counter that may not be used (0: none).
func (s *Sealer) SetLimit(limit uint64) { s.limit.Store(limit) }

// Limit returns the limit set by [SealConfig].Limit or [Sealer.SetLimit].
func (s *Sealer) Limit() uint64 { return s.limit.Load() }

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
// header and the fence header. Split the result like any frame. Errors:
// [ErrNoKey] (no send key for fence), [ErrSealLen] (no room),
// [ErrCounterLimit]. It does not allocate.
func (s *Sealer) Encap(b []byte, offset, innerLen int, dst OuterMAC, fence uint32) (Frame, error) {
	k, ok := s.ring.Load().send[fence]
	if !ok {
		return nil, ErrNoKey
	}
	if offset < SealedHeaderLen || innerLen < 0 || offset+innerLen+SealTagLen > len(b) {
		return nil, ErrSealLen
	}
	counter := s.counter.Add(1)
	if l := s.limit.Load(); l != 0 && counter >= l {
		s.counter.Add(^uint64(0)) // not used: give it back (best effort)
		return nil, ErrCounterLimit
	}
	start := offset - SealedHeaderLen
	s.params.Encap(b, start+EncapLen, 0, dst, s.self, HeaderFields{Version: SealedVersion, Fence: fence})
	b[start+EncapLen+sealOffsetKeyID] = k.id
	binary.BigEndian.PutUint64(b[start+EncapLen+sealOffsetCounter:], counter)
	n := s.nonces.Get().(*[SealNonceLen]byte)
	nonce(n, s.self, counter)
	k.aead.Seal(b[offset:offset], n[:], b[offset:offset+innerLen], b[start:start+EncapLen])
	s.nonces.Put(n)
	return Frame(b[start : offset+innerLen+SealTagLen]), nil
}

// Open authenticates and decrypts, in place, the sealed payload of a
// frame from src to dst on fence: payload is everything after the fence
// header (fr.Inner() of a whole frame, or the output of
// [Reassembler.Add] for a fragmented one). It rebuilds the additional
// data (outer header, fence header with FT 0 and Seq 0), checks the key
// ID, the replay window of (src, fence) in rt, and the tag, records the
// counter in the window, and returns the inner frame, which aliases
// payload[SealPrefixLen:]. newest reports that the counter is above every
// counter rt has accepted from src on fence (the frame is not a late one:
// callers move a peer's address only on such frames).
//
// Errors: [ErrSealLen], [ErrNoKey], [ErrReplay], [ErrAuth], [ErrRunt];
// each is counted. A frame that fails leaves rt unchanged. Open does not
// allocate, except once per new (src, fence) in rt.
func (s *Sealer) Open(rt *ReplayTable, dst, src OuterMAC, fence uint32, payload []byte) (inner []byte, newest bool, err error) {
	if len(payload) < SealOverhead {
		return nil, false, ErrSealLen
	}
	a, ok := s.ring.Load().aeads[keyRef{payload[sealOffsetKeyID], fence}]
	if !ok {
		s.noKey.Add(1)
		return nil, false, ErrNoKey
	}
	counter := binary.BigEndian.Uint64(payload[sealOffsetCounter:])
	w := rt.lookup(src, fence)
	if !rt.fresh(w, src, counter) {
		s.replayed.Add(1)
		return nil, false, ErrReplay
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
	inner, err = a.Open(ct[:0], n[:], ct, ad[:])
	s.nonces.Put(n)
	adPool.Put(ad)
	if err != nil {
		s.authFailed.Add(1)
		return nil, false, ErrAuth
	}
	if w == nil {
		w = rt.create(src, fence)
	}
	newest = counter > w.last
	w.update(counter) // fresh was checked above; rt is not shared
	if len(inner) < MinInnerLen {
		return nil, false, ErrRunt
	}
	return inner, newest, nil
}

var adPool = sync.Pool{New: func() any { return new([EncapLen]byte) }}

type replayKey struct {
	src   OuterMAC
	fence uint32
}

// ReplayTable holds the receive replay windows of one host: one per
// (sending host, fence) that a frame was opened from, at most a bounded
// number. When full, or when a host is forgotten ([ReplayTable.Forget]),
// windows are folded into a per-host floor: the highest counter accepted
// from that host; a window made later refuses every counter up to its
// floor. Every sending host counts with one counter across its fences, so
// a floor never refuses a frame that was not sent before it was set; it
// only forgets the reordering tolerance of the folded window. Floors are
// bounded by the number of host IDs (65534 per installation).
//
// A ReplayTable is not safe for concurrent use: it belongs to the receive
// path (one goroutine, or callers that serialize).
type ReplayTable struct {
	max     int
	windows map[replayKey]*replayWindow
	floors  map[OuterMAC]uint64
	lastKey replayKey
	lastW   *replayWindow
}

// NewReplayTable returns a table of at most max windows (0:
// [DefaultMaxReplayWindows]).
func NewReplayTable(max int) *ReplayTable {
	if max <= 0 {
		max = DefaultMaxReplayWindows
	}
	return &ReplayTable{max: max, windows: map[replayKey]*replayWindow{}, floors: map[OuterMAC]uint64{}}
}

// Len returns the number of windows.
func (t *ReplayTable) Len() int { return len(t.windows) }

// lookup returns the window of (src, fence), nil if none.
func (t *ReplayTable) lookup(src OuterMAC, fence uint32) *replayWindow {
	k := replayKey{src, fence}
	if t.lastW != nil && t.lastKey == k {
		return t.lastW
	}
	w := t.windows[k]
	if w != nil {
		t.lastKey, t.lastW = k, w
	}
	return w
}

// fresh reports whether counter would be accepted from src by w (nil: no
// window yet, only the floor applies).
func (t *ReplayTable) fresh(w *replayWindow, src OuterMAC, counter uint64) bool {
	if w != nil {
		return w.check(counter)
	}
	return counter > t.floors[src]
}

// create makes the window of (src, fence), folding one other window into
// its host's floor when the table is full.
func (t *ReplayTable) create(src OuterMAC, fence uint32) *replayWindow {
	if len(t.windows) >= t.max {
		for k, w := range t.windows { // an arbitrary one
			t.fold(k, w)
			break
		}
	}
	w := &replayWindow{}
	w.floor = t.floors[src]
	w.last = w.floor
	k := replayKey{src, fence}
	t.windows[k] = w
	t.lastKey, t.lastW = k, w
	return w
}

// fold removes window k and raises its host's floor to its last counter.
func (t *ReplayTable) fold(k replayKey, w *replayWindow) {
	if w.last > t.floors[k.src] {
		t.floors[k.src] = w.last
	}
	delete(t.windows, k)
	if t.lastW == w {
		t.lastW = nil
	}
}

// Forget folds every window of src into its floor (a peer that went
// away): memory is released, and its old frames stay refused.
func (t *ReplayTable) Forget(src OuterMAC) {
	for k, w := range t.windows {
		if k.src == src {
			t.fold(k, w)
		}
	}
}

// replayWindow is the sliding window of RFC 6479 (as in WireGuard's
// replay.Filter): a ring of 2048 bits; counters more than [ReplayWindow]
// below the highest accepted, or at most floor, are refused.
type replayWindow struct {
	last  uint64
	floor uint64
	ring  [replayBlocks]uint64
}

const (
	replayBlockBits = 64
	replayBlocks    = 2048 / replayBlockBits
	replayBlockMask = replayBlocks - 1
)

// check reports whether counter would be accepted, without recording it.
func (w *replayWindow) check(counter uint64) bool {
	if counter <= w.floor {
		return false
	}
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
	if counter <= w.floor {
		return false
	}
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
