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
	meta TrunkMeta
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
	// +checklocks:mu
	ring []txFrame
	// +checklocks:mu
	head int
	// +checklocks:mu
	n int
	// +checklocks:mu
	closed bool

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

func (q *txQueue) init(n int, drops *dropCounters) {
	q.ring = make([]txFrame, n)
	q.wake = make(chan struct{}, 1)
	q.drops = drops
}

// room returns a hint of how many frames the queue takes now.
func (q *txQueue) room() int { return len(q.ring) - int(q.queued.Load()) }

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
	for n < len(frames) && q.n < len(q.ring) {
		i := q.head + q.n
		if i >= len(q.ring) {
			i -= len(q.ring)
		}
		q.ring[i] = frames[n]
		q.n++
		n++
	}
	q.queued.Store(int64(q.n))
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
		q.ring[q.head] = txFrame{}
		q.head++
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n--
	}
	q.queued.Store(int64(q.n))
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

// len returns the number of queued frames.
func (q *txQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
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
		q.queued.Store(0)
	}
	q.mu.Unlock()
	q.signal()
}
