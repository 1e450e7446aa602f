package fence

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Reassembly defaults (DESIGN 3.4).
const (
	DefaultMaxPerHost = 8
	DefaultMaxTotal   = 1024
	DefaultTimeout    = time.Second
)

// Reassembly errors: the fragment (or, where said, the pending first
// fragment too) is dropped and counted in [ReassemblyStats].
var (
	// ErrOrphan: a last fragment with no pending first of the same
	// (outer source, fence, Seq).
	ErrOrphan = errors.New("fence: last fragment without first")
	// ErrMismatch: a last fragment that cannot belong to the pending first:
	// it is longer than the first (the first is as large as fits), or the
	// joined frame's IPv4/IPv6 length field disagrees with its length. For
	// a length-field mismatch the pending first is dropped too.
	ErrMismatch = errors.New("fence: fragments do not belong together")
)

// ReassemblyConfig bounds a [Reassembler]. Zero fields mean the defaults.
type ReassemblyConfig struct {
	// MaxPerHost is the most pending first fragments from one outer
	// source; when full, that host's oldest is evicted. Default 8.
	MaxPerHost int
	// MaxTotal is the most pending first fragments in all; when full, the
	// oldest is evicted. Memory is bounded by MaxTotal times the largest
	// pending first fragment (at most [MaxPayloadLen]); idle slots keep at
	// most 9 KiB each. Default 1024.
	MaxTotal int
	// Timeout is how long a first fragment waits for its last. Default 1 s.
	Timeout time.Duration
}

func (c ReassemblyConfig) withDefaults() ReassemblyConfig {
	if c.MaxPerHost <= 0 {
		c.MaxPerHost = DefaultMaxPerHost
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	if c.MaxPerHost > c.MaxTotal {
		c.MaxPerHost = c.MaxTotal
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// ReassemblyStats are a [Reassembler]'s counters since it was made.
type ReassemblyStats struct {
	Whole         uint64 // whole frames passed through
	Firsts        uint64 // first fragments stored
	Completed     uint64 // frames reassembled and delivered
	Replaced      uint64 // pending firsts replaced by a new first with the same host and Seq
	Orphans       uint64 // last fragments with no first
	Mismatched    uint64 // last fragments that did not fit their first
	Expired       uint64 // pending firsts that timed out
	EvictedHost   uint64 // pending firsts evicted by MaxPerHost
	EvictedTotal  uint64 // pending firsts evicted by MaxTotal
	EvictedWindow uint64 // pending firsts evicted as too far behind the host's newest Seq
	TooBig        uint64 // fragments dropped for size
	Invalid       uint64 // frames too short or with a reserved fragment type
}

// seqWindowKeep reports whether a pending first with Seq p may still
// complete once a first with Seq s from the same host has arrived: p is
// 1…7 behind s, or 1…3 ahead of it (reordered). Everything else — in
// particular p == s, which is 16 fragmented frames ago or a duplicate — is
// evicted, so a stale first cannot wait for a last of a later frame that
// reuses its Seq after the 4-bit counter wrapped.
func seqWindowKeep(s, p uint8) bool {
	d := (s - p) & SeqMask
	return (d >= 1 && d <= 7) || d >= 13
}

const noSlot = -1

// maxRetainedBuf is the largest fragment buffer a free slot keeps for
// reuse (fits a first fragment at a 9000-byte jumbo MTU); larger ones are
// allocated per use and released.
const maxRetainedBuf = 9216

type hostKey = OuterMAC

// hostPending is, per outer source, the slot of its pending first for each
// Seq (noSlot if none) and how many there are. At most one first per
// (host, Seq) is pending, whatever its fence.
type hostPending struct {
	bySeq [SeqMask + 1]int32
	n     int32
}

type pendingFirst struct {
	src      OuterMAC
	fence    uint32
	seq      uint8
	frameLen int       // encapsulated length of the first fragment
	deadline time.Time // expiry
	serial   uint64    // arrival order
	buf      []byte    // the first's inner bytes; capacity kept for reuse
	prev     int32     // arrival-ordered list
	next     int32
}

// Reassembler joins inbound fragment pairs (DESIGN 3.4), keyed by (outer
// source MAC, fence ID, Seq), with per-host and total bounds and a
// timeout. It never delivers a frame built from pieces of two frames that
// it can tell apart: a new first with the same host and Seq replaces the
// old one; firsts too far behind the host's newest Seq are evicted (so a
// Seq wrap needs 6 lost first fragments in a row, inside the timeout, to
// pair stale pieces); a last longer than its first is refused; and a
// joined IPv4 or IPv6 frame must match its IP length field.
//
// A Reassembler is safe for concurrent use. Whole frames take no lock.
type Reassembler struct {
	cfg ReassemblyConfig

	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	slots []pendingFirst
	// +checklocks:mu
	free []int32
	// +checklocks:mu
	hosts map[hostKey]hostPending
	// +checklocks:mu
	head, tail int32 // oldest, newest pending
	// +checklocks:mu
	serial uint64

	whole, firsts, completed, replaced, orphans, mismatched   atomic.Uint64
	expired, evictedHost, evictedTotal, evictedWindow, tooBig atomic.Uint64
	invalid                                                   atomic.Uint64
}

// NewReassembler returns a Reassembler bounded by cfg (zero fields mean
// defaults). Its bookkeeping is allocated up front; fragment buffers are
// allocated on first use and reused.
func NewReassembler(cfg ReassemblyConfig) *Reassembler {
	cfg = cfg.withDefaults()
	r := &Reassembler{
		cfg:   cfg,
		slots: make([]pendingFirst, cfg.MaxTotal),
		free:  make([]int32, cfg.MaxTotal),
		hosts: make(map[hostKey]hostPending, cfg.MaxTotal),
		head:  noSlot,
		tail:  noSlot,
	}
	for i := range r.free {
		r.free[i] = int32(cfg.MaxTotal - 1 - i)
	}
	return r
}

// Config returns the configuration in effect (defaults filled in).
func (r *Reassembler) Config() ReassemblyConfig { return r.cfg }

// Stats returns a snapshot of the counters.
func (r *Reassembler) Stats() ReassemblyStats {
	return ReassemblyStats{
		Whole: r.whole.Load(), Firsts: r.firsts.Load(), Completed: r.completed.Load(),
		Replaced: r.replaced.Load(), Orphans: r.orphans.Load(), Mismatched: r.mismatched.Load(),
		Expired: r.expired.Load(), EvictedHost: r.evictedHost.Load(), EvictedTotal: r.evictedTotal.Load(),
		EvictedWindow: r.evictedWindow.Load(), TooBig: r.tooBig.Load(), Invalid: r.invalid.Load(),
	}
}

// Pending returns the number of first fragments waiting for their last.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.slots) - len(r.free)
}

// Expire drops pending firsts whose timeout has passed at now and returns
// how many. [Reassembler.Add] expires too; call this periodically when
// fragments may stop arriving, to release memory.
func (r *Reassembler) Expire(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expireLocked(now)
}

// Add takes one inbound frame, already checked by [Params.Parse].
//
//   - A whole frame passes through: (fr.Inner(), true, nil); out is unused.
//   - A first fragment is copied into a buffer the Reassembler owns:
//     (nil, false, nil).
//   - A last fragment whose first is pending is joined into out:
//     (out[:n], true, nil). If out is too small it returns
//     [io.ErrShortBuffer] and keeps the first. len(out) >= [MaxInnerLen]
//     always suffices for unsealed frames, [MaxPayloadLen] for sealed.
//
// Errors ([ErrOrphan], [ErrMismatch], [ErrTooBig], [ErrShort],
// [ErrFragType]) mean the fragment was dropped; each is counted. out must
// not overlap fr. fr is not retained. The IP length check is skipped for
// sealed (version 2) fragments: their tag refuses glued pieces. now drives expiry and should not go backwards. Add does not
// allocate once its buffers have grown to the fragment sizes in use.
func (r *Reassembler) Add(fr Frame, now time.Time, out []byte) (inner []byte, done bool, err error) {
	if len(fr) < EncapLen {
		r.invalid.Add(1)
		return nil, false, ErrShort
	}
	h := fr.Header()
	switch h.FragType() {
	case Whole:
		r.whole.Add(1)
		return fr.Inner(), true, nil
	case First:
		if len(fr)-EncapLen > MaxPayloadLen {
			r.tooBig.Add(1)
			return nil, false, ErrTooBig
		}
		r.mu.Lock()
		r.expireLocked(now)
		r.addFirstLocked(fr, now)
		r.mu.Unlock()
		r.firsts.Add(1)
		return nil, false, nil
	case Last:
		r.mu.Lock()
		inner, err = r.addLastLocked(fr, now, out)
		r.mu.Unlock()
		return inner, err == nil, err
	default:
		r.invalid.Add(1)
		return nil, false, ErrFragType
	}
}

// +checklocks:r.mu
func (r *Reassembler) addFirstLocked(fr Frame, now time.Time) {
	src, seq := fr.Src(), fr.Header().Seq()
	hp, ok := r.hosts[src]
	if !ok {
		for i := range hp.bySeq {
			hp.bySeq[i] = noSlot
		}
	}
	// Window: drop this host's pending firsts that can no longer complete.
	for p := range hp.bySeq {
		i := hp.bySeq[p]
		if i == noSlot || seqWindowKeep(seq, uint8(p)) {
			continue
		}
		if uint8(p) == seq {
			r.replaced.Add(1)
		} else {
			r.evictedWindow.Add(1)
		}
		r.releaseLocked(i, &hp)
	}
	if int(hp.n) >= r.cfg.MaxPerHost {
		oldest := int32(noSlot)
		for _, i := range hp.bySeq {
			if i != noSlot && (oldest == noSlot || r.slots[i].serial < r.slots[oldest].serial) {
				oldest = i
			}
		}
		r.evictedHost.Add(1)
		r.releaseLocked(oldest, &hp)
	}
	if len(r.free) == 0 {
		i := r.head
		if r.slots[i].src == src {
			r.releaseLocked(i, &hp)
		} else {
			osrc := r.slots[i].src
			other := r.hosts[osrc]
			r.releaseLocked(i, &other)
			r.storeHostLocked(osrc, other)
		}
		r.evictedTotal.Add(1)
	}
	i := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	s := &r.slots[i]
	s.src, s.fence, s.seq = src, fr.Header().Fence(), seq
	s.frameLen = len(fr)
	s.deadline = now.Add(r.cfg.Timeout)
	r.serial++
	s.serial = r.serial
	s.buf = append(s.buf[:0], fr.Inner()...)
	// Append to the arrival list.
	s.prev, s.next = r.tail, noSlot
	if r.tail != noSlot {
		r.slots[r.tail].next = i
	} else {
		r.head = i
	}
	r.tail = i
	hp.bySeq[seq] = i
	hp.n++
	r.storeHostLocked(src, hp)
}

// +checklocks:r.mu
func (r *Reassembler) addLastLocked(fr Frame, now time.Time, out []byte) ([]byte, error) {
	r.expireLocked(now)
	src, seq, fence := fr.Src(), fr.Header().Seq(), fr.Header().Fence()
	hp, ok := r.hosts[src]
	if !ok || hp.bySeq[seq] == noSlot || r.slots[hp.bySeq[seq]].fence != fence {
		r.orphans.Add(1)
		return nil, ErrOrphan
	}
	i := hp.bySeq[seq]
	s := &r.slots[i]
	if len(fr) > s.frameLen {
		r.mismatched.Add(1)
		return nil, ErrMismatch
	}
	rest := fr.Inner()
	n := len(s.buf) + len(rest)
	if n > MaxPayloadLen {
		r.tooBig.Add(1)
		return nil, ErrTooBig
	}
	if len(out) < n {
		return nil, io.ErrShortBuffer
	}
	copy(out, s.buf)
	copy(out[len(s.buf):], rest)
	firstLen := len(s.buf)
	r.releaseLocked(i, &hp)
	r.storeHostLocked(src, hp)
	// Sealed payloads are opaque here; their tag refuses any glue.
	if want := ipFrameLen(out[:n]); want >= 0 && want != n && fr.Header().Version() != SealedVersion {
		// A NIC pads frames shorter than 60 bytes; trim such padding
		// from a minimum-size last fragment (senders that split "as
		// large as fits" produce them), refuse anything else.
		if !(len(fr) == MinEthernetLen && want < n && want > firstLen) {
			r.mismatched.Add(1)
			return nil, ErrMismatch
		}
		n = want
	}
	r.completed.Add(1)
	return out[:n], nil
}

// storeHostLocked writes back a host's entry, deleting it when empty so
// that the map does not grow with every source ever seen.
//
// +checklocks:r.mu
func (r *Reassembler) storeHostLocked(src OuterMAC, hp hostPending) {
	if hp.n == 0 {
		delete(r.hosts, src)
		return
	}
	r.hosts[src] = hp
}

// releaseLocked frees slot i, unlinking it from the arrival list and from
// hp (the entry of the slot's host, which the caller stores back).
//
// +checklocks:r.mu
func (r *Reassembler) releaseLocked(i int32, hp *hostPending) {
	s := &r.slots[i]
	if s.prev != noSlot {
		r.slots[s.prev].next = s.next
	} else {
		r.head = s.next
	}
	if s.next != noSlot {
		r.slots[s.next].prev = s.prev
	} else {
		r.tail = s.prev
	}
	if hp.bySeq[s.seq] == i {
		hp.bySeq[s.seq] = noSlot
		hp.n--
	}
	if cap(s.buf) > maxRetainedBuf {
		s.buf = nil // bound idle memory: MaxTotal × maxRetainedBuf
	} else {
		s.buf = s.buf[:0]
	}
	s.src, s.fence, s.serial = OuterMAC{}, 0, 0
	r.free = append(r.free, i)
}

// +checklocks:r.mu
func (r *Reassembler) expireLocked(now time.Time) int {
	n := 0
	for r.head != noSlot && now.After(r.slots[r.head].deadline) {
		i := r.head
		src := r.slots[i].src
		hp := r.hosts[src]
		r.releaseLocked(i, &hp)
		r.storeHostLocked(src, hp)
		n++
	}
	if n > 0 {
		r.expired.Add(uint64(n))
	}
	return n
}

// ipFrameLen returns the Ethernet frame length that the IPv4 or IPv6
// header of frame b claims (after at most one 802.1Q/802.1ad tag), or -1
// when b is not IP, is too short to tell, or is an IPv6 jumbogram.
func ipFrameLen(b []byte) int {
	if len(b) < 14 {
		return -1
	}
	off := 12
	et := binary.BigEndian.Uint16(b[off:])
	if (et == 0x8100 || et == 0x88a8) && len(b) >= 18 {
		off += 4
		et = binary.BigEndian.Uint16(b[off:])
	}
	l3 := off + 2
	switch et {
	case 0x0800:
		if len(b) < l3+IPv4HeaderLen || b[l3]>>4 != 4 {
			return -1
		}
		return l3 + int(binary.BigEndian.Uint16(b[l3+2:]))
	case 0x86DD:
		if len(b) < l3+IPv6HeaderLen || b[l3]>>4 != 6 {
			return -1
		}
		pl := int(binary.BigEndian.Uint16(b[l3+4:]))
		if pl == 0 {
			return -1
		}
		return l3 + IPv6HeaderLen + pl
	}
	return -1
}
