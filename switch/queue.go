package vswitch

import (
	"sync"
	"sync/atomic"
)

// queueBudget bounds the buffer bytes queued in all transmit queues of a
// switch together (Config.MaxQueuedBytes): a queue reserves a batch's bytes
// from it with one compare-and-swap before it takes the frames, and gives
// them back when its writer pops them or the queue closes. It is checked
// before the queue's own bounds, so ports that do not read cannot together
// pin more than max bytes, whatever their number.
type queueBudget struct {
	used atomic.Int64
	max  int64
}

// reserve charges the first frames of frames[:limit] (each counts cap(b),
// as in a queue) as long as they fit, and returns how many did and their
// bytes. One compare-and-swap per batch: no lock.
func (b *queueBudget) reserve(frames []txFrame, limit int) (n int, bytes int64) {
	for {
		used := b.used.Load()
		avail := b.max - used
		n, bytes = 0, 0
		for n < limit {
			c := int64(cap(frames[n].b))
			if bytes+c > avail {
				break
			}
			bytes += c
			n++
		}
		if n == 0 || b.used.CompareAndSwap(used, used+bytes) {
			return n, bytes
		}
	}
}

// release gives back bytes taken by reserve.
func (b *queueBudget) release(bytes int64) {
	if bytes != 0 {
		b.used.Add(-bytes)
	}
}

// room returns a hint of the bytes still free.
func (b *queueBudget) room() int64 { return b.max - b.used.Load() }

// txFrame is one frame waiting in a transmit queue: the frame is
// b[Headroom:], and b's capacity is that of a pool buffer. meta is used
// only by the trunk's queue.
type txFrame struct {
	b    []byte
	meta trunkMeta
}

// txQueue is a bounded FIFO of frames for one port's (or the trunk's)
// writer goroutine. Many readers push; one writer pops in batches. The
// policy when it is full is drop and count (STYLE 4.7): push never blocks.
//
// txMu serializes the port's output: the writer holds it from pop until
// Write returns, and a reader that writes directly (see [TryWriter] and
// reader.deliverGroup) holds it, taken with TryLock, around TryWrite. A
// reader writes directly only when it holds txMu and the queue is empty,
// so frames from one source never overtake each other.
type txQueue struct {
	txMu sync.Mutex

	mu sync.Mutex // mu guards the following fields
	// ring grows on demand up to maxLen slots (see grow) and is dropped
	// when the queue drains, so an idle port holds no ring.
	// +checklocks:mu
	ring []txFrame
	// maxLen bounds the frames queued (the ring's largest size).
	maxLen int
	// +checklocks:mu
	head int
	// +checklocks:mu
	n int
	// +checklocks:mu
	bytes int // buffer bytes queued: the sum of cap(b) (see bufCharge)
	// +checklocks:mu
	closed bool
	// maxBytes bounds bytes, so the memory a queue pins; a frame is
	// refused when it would exceed it, unless the queue is empty.
	maxBytes int

	// queued and queuedBytes mirror n and bytes for lock-free hints (how
	// many frames to copy before pushing, status); the authoritative
	// counts are n and bytes.
	queuedBytes atomic.Int64
	// queued mirrors n for lock-free hints (room before copying, status);
	// the authoritative count is n.
	queued atomic.Int64

	// wake has capacity 1; a pusher that makes the queue non-empty, and
	// close, put a token in it; the writer waits on it when the queue is empty.
	wake chan struct{}
	// drops is the owner's drop counters (queue_full, detached).
	drops *dropCounters

	// budget is the switch-wide bound on queued bytes (nil: none).
	budget *queueBudget

	// port is the owning port (nil for the trunk's queue); tw is its
	// TryWriter, nil when it has none (then every frame is queued).
	port *port
	tw   TryWriter
}

func (q *txQueue) init(n, maxBytes int, drops *dropCounters, budget *queueBudget) {
	q.maxLen = n
	q.maxBytes = maxBytes
	q.budget = budget
	q.wake = make(chan struct{}, 1)
	q.drops = drops
}

// bufCharge is what a queued frame of size bytes counts against a queue's
// byte bound: the capacity of the pool buffer it sits in.
func bufCharge(size int) int {
	if Headroom+size <= smallBufSize {
		return smallBufSize
	}
	return BufSize
}

// room returns a hint of how many frames and bytes the queue takes now
// (the switch-wide budget included) and whether the budget is what bounds
// the bytes.
func (q *txQueue) room() (frames, bytes int, global bool) {
	frames, bytes = q.maxLen-int(q.queued.Load()), q.maxBytes-int(q.queuedBytes.Load())
	if q.budget != nil {
		if g := q.budget.room(); g < int64(bytes) {
			bytes, global = int(g), true
		}
	}
	return frames, bytes, global
}

// Why pushBatch took fewer frames than offered.
const (
	pushFull   = iota // the queue's own bounds
	pushClosed        // the queue is closed (it took none)
	pushGlobal        // the switch-wide budget (Config.MaxQueuedBytes)
)

// pushBatch appends frames in order until the queue is full. It returns
// how many it took (the queue owns their buffers; the caller keeps the
// rest), why it did not take the rest (pushFull, pushClosed: then it took
// none, pushGlobal), and whether it was empty before (the caller must
// signal the writer).
func (q *txQueue) pushBatch(frames []txFrame) (n, why int, wake bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, pushClosed, false
	}
	wake = q.n == 0
	// The queue's own bounds first (they cost nothing to ask), then the
	// switch-wide budget for what they allow.
	fit, qn, qbytes := 0, q.n, q.bytes
	for fit < len(frames) && qn < q.maxLen {
		size := cap(frames[fit].b)
		if qn > 0 && qbytes+size > q.maxBytes {
			break
		}
		qn++
		qbytes += size
		fit++
	}
	why = pushFull
	if q.budget != nil && fit > 0 {
		got, _ := q.budget.reserve(frames, fit)
		if got < fit {
			fit, why = got, pushGlobal
		}
	}
	for n < fit {
		size := cap(frames[n].b)
		if q.n == len(q.ring) {
			q.grow(fit - n)
		}
		i := q.head + q.n
		if i >= len(q.ring) {
			i -= len(q.ring)
		}
		q.ring[i] = frames[n]
		q.n++
		q.bytes += size
		n++
	}
	q.queued.Store(int64(q.n))
	q.queuedBytes.Store(int64(q.bytes))
	q.mu.Unlock()
	return n, why, wake && n > 0
}

// idle reports whether the queue is open and empty.
func (q *txQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n == 0 && !q.closed
}

// pop appends up to cap(dst)-len(dst) frames to dst; the caller owns their
// buffers. closed reports that the queue was closed (it is then empty).
func (q *txQueue) pop(dst []txFrame) (_ []txFrame, closed bool) {
	q.mu.Lock()
	popped := 0
	for q.n > 0 && len(dst) < cap(dst) {
		dst = append(dst, q.ring[q.head])
		popped += cap(q.ring[q.head].b)
		q.ring[q.head] = txFrame{}
		q.head++
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n--
	}
	q.bytes -= popped
	if q.n == 0 && len(q.ring) > keepRing {
		q.ring, q.head = nil, 0 // drained after a burst: give the ring back
	}
	q.queued.Store(int64(q.n))
	q.queuedBytes.Store(int64(q.bytes))
	closed = q.closed
	q.mu.Unlock()
	if q.budget != nil {
		q.budget.release(int64(popped))
	}
	return dst, closed
}

// signal wakes the writer if it waits.
func (q *txQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// len returns the number of queued frames and their bytes.
func (q *txQueue) len() (frames, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes
}

// close refuses further pushes, returns the queued buffers to pool and
// wakes the writer.
func (q *txQueue) close(pool *bufPool) {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		pool.mu.Lock()
		for q.n > 0 {
			pool.putLocked(q.ring[q.head].b)
			q.ring[q.head] = txFrame{}
			q.head = (q.head + 1) % len(q.ring)
			q.n--
		}
		pool.mu.Unlock()
		if q.budget != nil {
			q.budget.release(int64(q.bytes))
		}
		q.bytes = 0
		q.queued.Store(0)
		q.queuedBytes.Store(0)
	}
	q.mu.Unlock()
	q.signal()
}

// keepRing is the largest ring a drained queue keeps (2.5 KiB), so a port
// that sends small bursts does not allocate a ring per burst.
const keepRing = 64

// grow makes room for at least one more frame, and for want more if the
// bound allows: the ring doubles (from keepRing) up to maxLen, keeping
// its frames in order. It allocates only while a queue grows past what
// it held before. q.mu is held.
//
// +checklocks:q.mu
func (q *txQueue) grow(want int) {
	size := max(keepRing, 2*len(q.ring))
	for size < q.n+want && size < q.maxLen {
		size *= 2
	}
	size = min(size, q.maxLen)
	ring := make([]txFrame, size)
	for i := 0; i < q.n; i++ {
		j := q.head + i
		if j >= len(q.ring) {
			j -= len(q.ring)
		}
		ring[i] = q.ring[j]
	}
	q.ring, q.head = ring, 0
}
