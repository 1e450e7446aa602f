package vswitch

import "sync"

// txFrame is one frame waiting in a transmit queue: the frame is
// b[Headroom:], and b's capacity is that of a pool buffer. meta is used
// only by the trunk's queue.
type txFrame struct {
	b    []byte
	meta TrunkMeta
}

// Results of txQueue.push.
const (
	pushed     = iota // queued; the queue owns the buffer
	pushedWake        // queued, and the queue was empty: signal its writer
	pushFull          // not queued: queue full; the caller still owns the buffer
	pushClosed        // not queued: the queue is closed; the caller still owns the buffer
)

// txQueue is a bounded FIFO of frames for one port's (or the trunk's)
// writer goroutine. Many readers push; one writer pops in batches. The
// policy when it is full is drop and count (STYLE 4.7): push never blocks.
type txQueue struct {
	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	ring []txFrame
	// +checklocks:mu
	head int
	// +checklocks:mu
	n int
	// +checklocks:mu
	closed bool

	// wake has capacity 1; a pusher that makes the queue non-empty, and
	// close, put a token in it; the writer waits on it when the queue is empty.
	wake chan struct{}
	// drops is the owner's drop counters (queue_full, detached).
	drops *dropCounters
}

func (q *txQueue) init(n int, drops *dropCounters) {
	q.ring = make([]txFrame, n)
	q.wake = make(chan struct{}, 1)
	q.drops = drops
}

// push appends f. On pushed and pushedWake the queue owns f.b; otherwise
// the caller keeps it.
func (q *txQueue) push(f txFrame) int {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return pushClosed
	}
	if q.n == len(q.ring) {
		q.mu.Unlock()
		return pushFull
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = f
	q.n++
	empty := q.n == 1
	q.mu.Unlock()
	if empty {
		return pushedWake
	}
	return pushed
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
	}
	q.mu.Unlock()
	q.signal()
}
