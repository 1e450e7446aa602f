package vswitch

import (
	"sync"
	"sync/atomic"
)

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

	// port is the owning port (nil for the trunk's queue); tw is its
	// TryWriter, nil when it has none (then every frame is queued).
	port *port
	tw   TryWriter
}

func (q *txQueue) init(n, maxBytes int, drops *dropCounters) {
	q.maxLen = n
	q.maxBytes = maxBytes
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

// room returns a hint of how many frames and bytes the queue takes now.
func (q *txQueue) room() (frames, bytes int) {
	return q.maxLen - int(q.queued.Load()), q.maxBytes - int(q.queuedBytes.Load())
}

// pushBatch appends frames in order until the queue is full. It returns
// how many it took (the queue owns their buffers; the caller keeps the
// rest), whether the queue was closed (then it took none), and whether it
// was empty before (the caller must signal the writer).
func (q *txQueue) pushBatch(frames []txFrame) (n int, closed, wake bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, true, false
	}
	wake = q.n == 0
	for n < len(frames) && q.n < q.maxLen {
		size := cap(frames[n].b)
		if q.n > 0 && q.bytes+size > q.maxBytes {
			break
		}
		if q.n == len(q.ring) {
			q.grow(len(frames) - n)
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
	return n, false, wake && n > 0
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
	for q.n > 0 && len(dst) < cap(dst) {
		dst = append(dst, q.ring[q.head])
		q.bytes -= cap(q.ring[q.head].b)
		q.ring[q.head] = txFrame{}
		q.head++
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n--
	}
	if q.n == 0 && len(q.ring) > keepRing {
		q.ring, q.head = nil, 0 // drained after a burst: give the ring back
	}
	q.queued.Store(int64(q.n))
	q.queuedBytes.Store(int64(q.bytes))
	closed = q.closed
	q.mu.Unlock()
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
