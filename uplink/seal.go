package uplink

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/corralnet/corral/fence"
)

// The sealed uplink (DESIGN.md 3.6). With Config.Seal set, every frame
// (data, fragments, hellos) is sealed with its fence's key before it
// leaves, and only sealed frames that open are accepted; see the package
// doc for what that changes in learning peers.

// Cipher is the AEAD of a sealed uplink, chosen per installation.
type Cipher uint8

const (
	// CipherAESGCM is AES-256-GCM (crypto/aes, hardware accelerated), the
	// default.
	CipherAESGCM Cipher = iota
	// CipherChaCha20Poly1305 is ChaCha20-Poly1305 (RFC 8439), for CPUs
	// without AES instructions.
	CipherChaCha20Poly1305
)

// String returns the cipher's configuration name.
func (c Cipher) String() string {
	switch c {
	case CipherAESGCM:
		return "aes-256-gcm"
	case CipherChaCha20Poly1305:
		return "chacha20-poly1305"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// ParseCipher parses a configuration name of [Cipher.String].
func ParseCipher(s string) (Cipher, error) {
	for _, c := range []Cipher{CipherAESGCM, CipherChaCha20Poly1305} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown cipher %q: want aes-256-gcm or chacha20-poly1305", s)
}

// newAEAD returns the constructor of c's AEAD.
func (c Cipher) newAEAD() func(key []byte) (cipher.AEAD, error) {
	if c == CipherChaCha20Poly1305 {
		return chacha20poly1305.New
	}
	return fence.NewAESGCM
}

// ReserveMargin is how close the send counter may come to the reserved
// limit before the uplink asks SealConfig.Reserve for more (from its
// control goroutine, every poll): 2^30 frames, minutes at any rate a host
// sends.
const ReserveMargin = 1 << 30

// SealConfig configures the sealed uplink.
type SealConfig struct {
	// Cipher is the AEAD; the zero value is AES-256-GCM.
	Cipher Cipher
	// Keys are the fence keys: for every local fence and for fence 0
	// (hellos) a send key, and receive-only keys during a rotation. A
	// frame of a fence without a key is neither sent nor accepted.
	Keys []fence.FenceKey
	// Counter is the send counter before the first frame (zero: the Unix
	// time in ns). It must be above every counter this host ID sent with
	// these keys: cmd/corral starts above a high-water mark it keeps in
	// the state directory and above the clock.
	Counter uint64
	// Limit is the first counter that may not be used (what the caller
	// has reserved on disk); zero: none.
	Limit uint64
	// Reserve, if not nil, is called from the uplink's goroutine when the
	// counter comes within ReserveMargin of Limit, with the counter; it
	// persists a higher limit and returns it. An error is logged
	// (rate-limited) and retried every poll; frames are dropped
	// (drop_tx_counter_limit) only once the limit itself is reached.
	Reserve func(counter uint64) (limit uint64, err error)
}

// validate checks c.
func (c *SealConfig) validate() error {
	if c.Cipher > CipherChaCha20Poly1305 {
		return fmt.Errorf("uplink: Seal.Cipher %d: unknown", c.Cipher)
	}
	if _, err := fence.NewKeyring(c.Keys, c.Cipher.newAEAD()); err != nil {
		return fmt.Errorf("uplink: Seal.Keys: %w", err)
	}
	if !slices.ContainsFunc(c.Keys, func(k fence.FenceKey) bool { return k.Fence == fence.ControlFence && !k.ReceiveOnly }) {
		return errors.New("uplink: Seal.Keys: no send key for fence 0 (hellos)")
	}
	return nil
}

// newSealer builds the Sealer of a sealed uplink.
func newSealer(p fence.Params, hostID uint16, c *SealConfig) (*fence.Sealer, error) {
	return fence.NewSealer(fence.SealConfig{Params: p, HostID: hostID, Keys: c.Keys,
		NewAEAD: c.Cipher.newAEAD(), Counter: c.Counter, Limit: c.Limit})
}

// Sealed reports whether the uplink seals its frames.
func (u *Uplink) Sealed() bool { return u.seal != nil }

// SetKeys replaces the keys of a sealed uplink, atomically: every frame
// is sealed or opened with the old keys or with the new ones, none is
// lost to the swap; the send counter and the replay windows carry on. It
// is what a reload (SIGHUP) calls after reading the key files again. The
// keys are checked as Config.Seal.Keys; on error the old keys stay.
func (u *Uplink) SetKeys(keys []fence.FenceKey) error {
	if u.seal == nil {
		return errors.New("uplink: SetKeys on an unsealed uplink")
	}
	c := SealConfig{Cipher: u.cfg.Seal.Cipher, Keys: keys}
	if err := c.validate(); err != nil {
		return err
	}
	if err := u.seal.SetKeys(keys); err != nil {
		return err
	}
	u.keyChanges.Add(1)
	u.log.Info("uplink keys replaced", "keys", keySummary(u.seal.Keys()))
	return nil
}

// keySummary lists fences and key IDs for logs (never key bytes).
func keySummary(r *fence.Keyring) string {
	var b []byte
	for i, ki := range r.Info() {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%d:", ki.Fence)
		for j, id := range ki.IDs {
			if j > 0 {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, "%02x", id)
			if ki.HasSend && id == ki.SendID {
				b = append(b, '*')
			}
		}
	}
	return string(b)
}

// reserveCounter asks Seal.Reserve for more counters when the send
// counter is close to the limit (control goroutine).
func (u *Uplink) reserveCounter(now time.Time) {
	if u.seal == nil || u.cfg.Seal.Reserve == nil {
		return
	}
	limit, c := u.seal.Limit(), u.seal.Counter()
	if limit == 0 || limit-min(c, limit) > ReserveMargin {
		return
	}
	nl, err := u.cfg.Seal.Reserve(c)
	if err != nil {
		if now.Sub(u.ctl.lastReserveLog) >= dropSummaryInterval {
			u.ctl.lastReserveLog = now
			u.log.Error("cannot reserve send counters on disk; frames are dropped once the reserved ones are used",
				"counter", c, "limit", limit, "err", err)
		}
		return
	}
	if nl > limit {
		u.seal.SetLimit(nl)
	}
}

// keyStat counts, for one (peer, fence), the sealed frames that opened
// and those that did not (only for peers already authenticated: others
// are not remembered).
type keyStat struct {
	opened, failed atomic.Uint64
	failedAtOpen   atomic.Uint64 // failed when the last frame opened
	lastKeyID      atomic.Uint32 // the key ID of the last frame that opened
}

// maxKeyStats bounds the (peer, fence) pairs counted.
const maxKeyStats = 1 << 14

type keyStatKey struct {
	peer  fence.OuterMAC
	fence uint32
}

// keyStats is a copy-on-write map of keyStat, read without a lock;
// entries are created by the receive path (rare) under mu.
type keyStats struct {
	m  atomic.Pointer[map[keyStatKey]*keyStat]
	mu sync.Mutex
}

// get returns the entry of (peer, fence), creating it when create is set
// and the bound allows (nil otherwise).
func (k *keyStats) get(peer fence.OuterMAC, f uint32, create bool) *keyStat {
	key := keyStatKey{peer, f}
	if mp := k.m.Load(); mp != nil {
		if s := (*mp)[key]; s != nil || !create {
			return s
		}
	} else if !create {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.m.Load()
	var m map[keyStatKey]*keyStat
	if old != nil {
		if s := (*old)[key]; s != nil {
			return s
		}
		if len(*old) >= maxKeyStats {
			return nil
		}
		m = make(map[keyStatKey]*keyStat, len(*old)+1)
		for kk, v := range *old {
			m[kk] = v
		}
	} else {
		m = map[keyStatKey]*keyStat{}
	}
	s := new(keyStat)
	m[key] = s
	k.m.Store(&m)
	return s
}

// PeerKey is the state of one fence's keys for one peer, in
// PeerStatus.Keys: whether frames of the fence from the peer open here.
type PeerKey struct {
	Fence uint32 `json:"fence"`
	// State is "ok" (frames opened, the last under KeyID), "no key" (this
	// host holds no key of the fence: it can neither read nor send the
	// peer's frames of it), "failing" (frames from the peer did not open
	// since the last one that did: the peer has another key), or
	// "unused" (this host holds a key, no frame came yet).
	State  string `json:"state"`
	KeyID  *uint8 `json:"key_id,omitempty"`
	Opened uint64 `json:"opened"`
	Failed uint64 `json:"failed"`
}

// SealStatus is the sealed uplink's state in Status: never key bytes.
type SealStatus struct {
	Cipher string `json:"cipher"`
	// Keys lists the fences this host holds keys of, with their IDs.
	Keys []SealKeyStatus `json:"keys"`
	// Counter is the last send counter used; CounterLimit what is
	// reserved (0: no limit).
	Counter      uint64 `json:"counter"`
	CounterLimit uint64 `json:"counter_limit"`
	// KeyChanges counts SetKeys calls (reloads).
	KeyChanges uint64 `json:"key_changes"`
}

// SealKeyStatus is one fence's keys.
type SealKeyStatus struct {
	Fence uint32 `json:"fence"`
	// SendKeyID is the ID of the key frames are sealed with; nil when the
	// fence has receive-only keys only.
	SendKeyID *uint8 `json:"send_key_id,omitempty"`
	// KeyIDs are every key frames open with.
	KeyIDs []uint8 `json:"key_ids"`
}

// sealStatus returns the seal part of Status (nil when unsealed).
func (u *Uplink) sealStatus() *SealStatus {
	if u.seal == nil {
		return nil
	}
	st := &SealStatus{Cipher: u.cfg.Seal.Cipher.String(), Counter: u.seal.Counter(),
		CounterLimit: u.seal.Limit(), KeyChanges: u.keyChanges.Load(), Keys: []SealKeyStatus{}}
	for _, ki := range u.seal.Keys().Info() {
		ks := SealKeyStatus{Fence: ki.Fence, KeyIDs: ki.IDs}
		if ki.HasSend {
			id := ki.SendID
			ks.SendKeyID = &id
		}
		st.Keys = append(st.Keys, ks)
	}
	return st
}

// peerKeys returns the key state of the fences p announces and of those
// frames came from it on, by fence.
func (u *Uplink) peerKeys(p *peer) []PeerKey {
	if u.seal == nil {
		return nil
	}
	ring := u.seal.Keys()
	fences := slices.Clone(p.fences)
	if mp := u.keyStats.m.Load(); mp != nil {
		for k := range *mp {
			if k.peer == p.mac && k.fence != fence.ControlFence {
				fences = append(fences, k.fence)
			}
		}
	}
	slices.Sort(fences)
	fences = slices.Compact(fences)
	out := make([]PeerKey, 0, len(fences))
	for _, f := range fences {
		pk := PeerKey{Fence: f}
		s := u.keyStats.get(p.mac, f, false)
		if s != nil {
			pk.Opened, pk.Failed = s.opened.Load(), s.failed.Load()
			if pk.Opened > 0 {
				id := uint8(s.lastKeyID.Load())
				pk.KeyID = &id
			}
		}
		switch {
		case !ring.CanOpen(f):
			pk.State = "no key"
		case s != nil && s.failed.Load() > s.failedAtOpen.Load():
			pk.State = "failing"
		case pk.Opened > 0:
			pk.State = "ok"
		default:
			pk.State = "unused"
		}
		out = append(out, pk)
	}
	return out
}
