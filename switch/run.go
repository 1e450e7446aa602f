package vswitch

import (
	"sync"
	"sync/atomic"
)

// port is the switch's state of one attached [Port].
type port struct {
	s       *Switch
	id      uint64
	name    string
	fence   *fence
	p       Port
	pin     MAC
	maxMACs int64
	batch   int

	q txQueue // transmit queue, drained by writeLoop

	tap atomic.Pointer[tapSet] // captures of this port (capture.go); nil: none

	// macs counts table entries on this port; changed under fence.mu,
	// read without it (a stale read only errs towards refusing).
	macs atomic.Int64
	// detached is set before the port's MACs are flushed; learning
	// checks it under fence.mu so no entry outlives the port.
	detached atomic.Bool

	rxFrames, rxBytes atomic.Uint64
	txFrames, txBytes atomic.Uint64
	drops             dropCounters

	failOnce   sync.Once
	err        error   // why it was detached; written in failOnce, read after done
	settler    Settler // nil: announced at attach
	ann        announcement
	done       chan struct{} // closed when both goroutines have returned
	writerDone chan struct{}
}

// dropIn counts an inbound drop on p and its fence.
func (p *port) dropIn(r DropReason) {
	p.drops.add(r, 1)
	p.fence.drops.add(r, 1)
}

// fail detaches p once: err is the reason (nil when closed on purpose).
// It flushes p's MACs, closes its queue and the Port, which ends both
// goroutines. It does not wait for them.
func (p *port) fail(err error) {
	p.failOnce.Do(func() {
		if err != nil && !isClosedErr(err) {
			p.err = err
		}
		p.detached.Store(true)
		p.s.detachPort(p)
		p.q.close(p.s.pool)
		cerr := p.p.Close()
		if !p.ann.end(p) {
			p.s.log.Debug("connection ended before it settled (a liveness probe): port not announced",
				"port", p.id, "name", p.name, "fence", p.fence.id)
			return
		}
		if p.err != nil {
			p.s.log.Warn("port detached", "port", p.id, "name", p.name, "fence", p.fence.id, "err", p.err)
		} else {
			p.s.log.Info("port detached", "port", p.id, "name", p.name, "fence", p.fence.id, "close_err", cerr)
		}
	})
}

// announcement is whether a port has been announced (Settler): the
// "port attached" line is logged and ch closed at most once, and never
// after the port was detached unannounced.
type announcement struct {
	mu    sync.Mutex
	ch    chan struct{} // closed when announced
	done  bool          // announced
	ended bool          // detached
}

// announce logs p's attach and closes the channel, once, unless p ended.
// Called with a.mu held.
func (a *announcement) announceLocked(p *port) {
	if a.done || a.ended {
		return
	}
	a.done = true
	p.s.log.Info("port attached", "port", p.id, "name", p.name, "fence", p.fence.id)
	close(a.ch)
}

// settled announces p unless its Settler says it was a probe.
func (a *announcement) settled(p *port) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !p.settler.Probe() {
		a.announceLocked(p)
	}
}

// end marks p detached and reports whether it was announced. A port that
// settled as a client just before it ended (one frame, then EOF) is
// announced here, so its attach and detach lines come in order.
func (a *announcement) end(p *port) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.done && p.settler != nil {
		select {
		case <-p.settler.Settled():
			if !p.settler.Probe() {
				a.announceLocked(p)
			}
		default:
		}
	}
	a.ended = true
	return a.done
}

// announceWhenSettled waits for p's Settler, then announces p unless it
// was a probe; it ends when p is done.
func (p *port) announceWhenSettled() {
	defer p.s.wg.Done()
	select {
	case <-p.settler.Settled():
		p.ann.settled(p)
	case <-p.done:
	}
}

// readLoop reads batches from the port and switches them until Read fails.
// It owns the reader; when it ends it waits for writeLoop and closes done.
func (p *port) readLoop() {
	defer p.s.wg.Done()
	r := newReader(p.s, p.readBatch())
	w, _ := p.p.(ReadWaiter)
	all, k := r.bufs, len(r.bufs)
	if w != nil {
		r.release() // buffers are taken per batch, after WaitRead
	}
	for {
		if w != nil {
			if waitHook != nil {
				waitHook(r.held())
			}
			if err := w.WaitRead(); err != nil {
				p.fail(err)
				break
			}
			// Offer Read as many buffers as it filled last time, twice
			// over (at least minWaitBatch): a single frame does not take
			// and return a whole batch, a stream of them reaches the
			// full batch in a few reads. r.bufs[k:] are nil (released).
			r.bufs = all[:k]
			r.refill()
		}
		n, err := p.p.Read(r.bufs, r.sizes, Headroom)
		if n > 0 {
			r.processPort(p, min(n, len(r.bufs)))
		}
		if w != nil {
			r.release() // an idle port holds no frame buffers
			k = min(len(all), max(minWaitBatch, 2*n))
		}
		if err != nil {
			p.fail(err)
			break
		}
	}
	r.release()
	<-p.writerDone
	close(p.done)
}

// minWaitBatch is the fewest buffers the reader of a [ReadWaiter] port
// offers to one Read.
const minWaitBatch = 8

// waitHook, when set (by tests, before ports are attached), is called by
// a ReadWaiter port's reader before each WaitRead with the number of frame
// buffers the reader holds.
var waitHook func(held int)

// held is how many frame buffers r holds (its batch and its stash).
func (r *reader) held() int {
	n := len(r.cache.large) + len(r.cache.small)
	for _, b := range r.bufs {
		if b != nil {
			n++
		}
	}
	return n
}

// refill gives every empty slot of r.bufs a large buffer from r's stash
// (taken from the shared pool, one lock per 32 buffers).
func (r *reader) refill() {
	for i, b := range r.bufs {
		if b == nil {
			r.bufs[i] = r.cache.getLarge()
		}
	}
}

// readBatch is how many buffers the reader passes to Read: the port's
// batch, at most maxReadBatch (each is a [BufSize] buffer).
func (p *port) readBatch() int { return min(p.batch, maxReadBatch) }

// writeLoop drains the transmit queue in batches of up to p.batch frames
// into Write. It owns the popped buffers until Write returns, then gives
// them back to the pool.
func (p *port) writeLoop() {
	defer p.s.wg.Done()
	defer close(p.writerDone)
	// The scratch slices start small and grow to the port's batch only
	// when the queue fills them: a stream port's batch is 1024 frames
	// (56 KiB of scratch), which an idle or quiet port never needs.
	frames := make([]txFrame, 0, min(p.batch, writeScratch))
	bufs := make([][]byte, cap(frames))
	for {
		if len(frames) == cap(frames) && cap(frames) < p.batch {
			frames = make([]txFrame, 0, min(2*cap(frames), p.batch))
			bufs = make([][]byte, cap(frames))
		}
		// txMu is held from pop to the end of Write, so a reader never
		// writes directly while older frames are still on their way.
		p.q.txMu.Lock()
		var closed bool
		frames, closed = p.q.pop(frames[:0])
		if len(frames) == 0 {
			p.q.txMu.Unlock()
			if closed {
				return
			}
			<-p.q.wake
			continue
		}
		for i := range frames {
			bufs[i] = frames[i].b
		}
		err := p.write(bufs[:len(frames)])
		p.q.txMu.Unlock()
		clear(bufs)
		p.s.pool.putFrames(frames) // clears the frames, keeps the length
		if err != nil {
			p.fail(err)
			return
		}
	}
}

// writeScratch is the batch a port's writer starts with (see writeLoop).
const writeScratch = 64

// write hands bufs to Write until all are taken, Write fails, or it makes
// no progress (the rest are dropped and counted).
func (p *port) write(bufs [][]byte) error {
	for len(bufs) > 0 {
		n, err := p.p.Write(bufs, Headroom)
		n = max(0, min(n, len(bufs)))
		var bytes uint64
		for _, b := range bufs[:n] {
			bytes += uint64(len(b) - Headroom)
		}
		p.txFrames.Add(uint64(n))
		p.txBytes.Add(bytes)
		bufs = bufs[n:]
		if err != nil || n == 0 {
			if len(bufs) > 0 {
				p.drops.add(DropWrite, uint64(len(bufs)))
				p.fence.drops.add(DropWrite, uint64(len(bufs)))
			}
			return err
		}
	}
	return nil
}

// trunk is the switch's state of the attached [Trunk].
type trunk struct {
	s     *Switch
	t     Trunk
	batch int
	q     txQueue

	rxFrames, rxBytes atomic.Uint64
	txFrames, txBytes atomic.Uint64
	drops             dropCounters

	failOnce   sync.Once
	done       chan struct{}
	writerDone chan struct{}
}

// dropIn counts an inbound drop of a frame of fence f on the trunk and f.
func (t *trunk) dropIn(f *fence, r DropReason) {
	t.drops.add(r, 1)
	f.drops.add(r, 1)
}

// fail detaches the trunk once (err nil: on purpose).
func (t *trunk) fail(err error) {
	t.failOnce.Do(func() {
		t.s.trunk.CompareAndSwap(t, nil)
		t.q.close(t.s.pool)
		cerr := t.t.Close()
		if err != nil && !isClosedErr(err) {
			t.s.log.Warn("trunk detached", "err", err)
		} else {
			t.s.log.Info("trunk detached", "close_err", cerr)
		}
	})
}

func (t *trunk) readLoop() {
	defer t.s.wg.Done()
	r := newReader(t.s, min(t.batch, maxReadBatch))
	for {
		n, err := t.t.ReadTrunk(r.bufs, r.sizes, r.fences, r.hosts, Headroom)
		if n > 0 {
			r.processTrunk(t, min(n, len(r.bufs)))
		}
		if err != nil {
			t.fail(err)
			break
		}
	}
	r.release()
	<-t.writerDone
	close(t.done)
}

func (t *trunk) writeLoop() {
	defer t.s.wg.Done()
	defer close(t.writerDone)
	frames := make([]txFrame, 0, t.batch)
	bufs := make([][]byte, t.batch)
	fences := make([]uint32, t.batch)
	hosts := make([][6]byte, t.batch)
	for {
		var closed bool
		frames, closed = t.q.pop(frames[:0])
		if len(frames) == 0 {
			if closed {
				return
			}
			<-t.q.wake
			continue
		}
		for i := range frames {
			bufs[i] = frames[i].b
			fences[i], hosts[i] = frames[i].meta.fence, frames[i].meta.host
		}
		err := t.write(bufs[:len(frames)], fences[:len(frames)], hosts[:len(frames)])
		clear(bufs)
		t.s.pool.putFrames(frames)
		if err != nil {
			t.fail(err)
			return
		}
	}
}

func (t *trunk) write(bufs [][]byte, fences []uint32, hosts [][6]byte) error {
	for len(bufs) > 0 {
		n, err := t.t.WriteTrunk(bufs, fences, hosts, Headroom)
		n = max(0, min(n, len(bufs)))
		var bytes uint64
		for _, b := range bufs[:n] {
			bytes += uint64(len(b) - Headroom)
		}
		t.txFrames.Add(uint64(n))
		t.txBytes.Add(bytes)
		bufs, fences, hosts = bufs[n:], fences[n:], hosts[n:]
		if err != nil || n == 0 {
			t.drops.add(DropWrite, uint64(len(bufs)))
			return err
		}
	}
	return nil
}
