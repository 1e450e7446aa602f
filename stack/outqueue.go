package stack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// outQueueLen bounds the packets in the outbound queue.
	outQueueLen = 4096
	// outQueueBytes bounds the bytes in the outbound queue (a packet is
	// always admitted into an empty queue, whatever its size): 32 of the
	// stack's largest (64 KiB GSO) segments, or ~1400 full-size frames.
	outQueueBytes = 2 << 20
)

// outQueue is the link endpoint's outbound queue: packets the stack sent
// that the switch has not read yet, bounded in packets and in bytes.
//
// Backpressure policy (STYLE 4.7: block until close): when the queue is
// full, the writer waits for room. gVisor's TCP is thereby told it cannot
// send: its goroutine is held until the switch has read, as Tailscale's
// netstack link endpoint holds it (wgengine/netstack/link_endpoint.go,
// a blocking channel send). No packet the stack hands over is dropped
// while the endpoint is open: a pure ACK or window update has no
// retransmission, so losing one would stall its connection until the
// peer's RTO or zero-window probe (up to 120 s).
//
// This cannot deadlock: the reader (the switch's goroutine that calls
// Read) never waits for the stack; the switch hands what it reads to
// other ports' queues, which drop when full. A caller that reads and
// writes the gateway from one goroutine (Read, then Write of what another
// port sent) can deadlock, since Write may make the stack send; the
// switch never does.
type outQueue struct {
	mu sync.Mutex // mu guards the following fields
	// notEmpty wakes the reader, notFull the writers.
	notEmpty, notFull sync.Cond
	// +checklocks:mu
	ring []*stack.PacketBuffer
	// +checklocks:mu
	sizes []int // sizes[i] is ring[i]'s Size() when queued
	// +checklocks:mu
	head, n int
	// +checklocks:mu
	bytes int
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	readerWaiting bool
	// +checklocks:mu
	writersWaiting int
	// +checklocks:mu
	maxBytes int // set by init (tests may lower it)

	// waits counts writers that had to wait for room (backpressure).
	waits atomic.Uint64
	// queued mirrors n for status without the lock.
	queued atomic.Int64
}

func (q *outQueue) init(maxPkts, maxBytes int) {
	q.ring = make([]*stack.PacketBuffer, maxPkts)
	q.sizes = make([]int, maxPkts)
	q.maxBytes = maxBytes
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
}

// push queues pkts in order, taking a new reference on each; it waits for
// room as long as the queue is full. It returns how many it queued, and
// whether the queue is closed (then the rest were not queued).
func (q *outQueue) push(pkts []*stack.PacketBuffer) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, pkt := range pkts {
		size := pkt.Size()
		for !q.closed && q.n > 0 && (q.n == len(q.ring) || q.bytes+size > q.maxBytes) {
			q.waits.Add(1)
			if q.readerWaiting {
				q.notEmpty.Signal()
			}
			q.writersWaiting++
			q.notFull.Wait()
			q.writersWaiting--
		}
		if q.closed {
			return i, true
		}
		j := (q.head + q.n) % len(q.ring)
		q.ring[j], q.sizes[j] = pkt.IncRef(), size
		q.n++
		q.bytes += size
	}
	q.queued.Store(int64(q.n))
	if q.readerWaiting && q.n > 0 {
		q.notEmpty.Signal()
	}
	return len(pkts), false
}

// push1 is push of one packet without a slice.
func (q *outQueue) push1(pkt *stack.PacketBuffer) bool {
	arr := [1]*stack.PacketBuffer{pkt}
	n, _ := q.push(arr[:])
	return n == 1
}

// pop moves up to len(dst) packets into dst, with their references, and
// returns how many. When wait is set and the queue is empty it waits for a
// packet or close. It returns closed = true once the queue is closed
// (then n is 0).
func (q *outQueue) pop(dst []*stack.PacketBuffer, wait bool) (n int, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for wait && q.n == 0 && !q.closed {
		q.readerWaiting = true
		q.notEmpty.Wait()
		q.readerWaiting = false
	}
	if q.closed {
		return 0, true
	}
	for n < len(dst) && q.n > 0 {
		dst[n] = q.ring[q.head]
		q.bytes -= q.sizes[q.head]
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		n++
	}
	q.queued.Store(int64(q.n))
	if n > 0 && q.writersWaiting > 0 {
		q.notFull.Broadcast()
	}
	return n, false
}

// close wakes every waiter, makes later pushes fail, and releases the
// queued packets; it returns how many it released.
func (q *outQueue) close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	q.closed = true
	released := q.n
	for ; q.n > 0; q.n-- {
		q.ring[q.head].DecRef()
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
	}
	q.bytes = 0
	q.queued.Store(0)
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
	return released
}
