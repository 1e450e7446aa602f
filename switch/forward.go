package vswitch

// Forwarding. Each port (and the trunk) has a reader goroutine that owns a
// [reader]: a batch of large buffers, a buffer stash and scratch slices, all
// reused, so steady-state forwarding allocates nothing. A batch is processed
// under one read lock of the fence's table; new and moved MACs are collected
// and written under the write lock once at the end of the batch.
//
// Buffer ownership: bufs[i] belongs to the reader. A large frame forwarded to
// one destination (unicast, or the last flood target) is handed off: the
// buffer goes into the destination's queue, which owns it from then on, and a
// fresh buffer takes its place in bufs[i]. Other flood targets, and frames of
// up to smallBufSize-Headroom bytes, get copies in pooled buffers. A writer owns the buffers it pops and returns them to the pool
// after Write returns.

// reader is the per-goroutine state of batch processing. Not safe for
// concurrent use.
type reader struct {
	s      *Switch
	bufs   [][]byte // each a whole large buffer; frames at [Headroom:]
	sizes  []int
	meta   []TrunkMeta
	cache  bufCache
	learns []learn
	wake   []*txQueue // queues that became non-empty during the batch

	// per-fence accumulators, flushed by flushFence
	in, inBytes, out, outBytes, floods uint64
}

func newReader(s *Switch, batch int) *reader {
	r := &reader{
		s:      s,
		bufs:   make([][]byte, batch),
		sizes:  make([]int, batch),
		meta:   make([]TrunkMeta, batch),
		cache:  newBufCache(&s.pool),
		learns: make([]learn, 0, batch),
		wake:   make([]*txQueue, 0, 16),
	}
	for i := range r.bufs {
		r.bufs[i] = r.cache.getLarge()
	}
	return r
}

// release returns every buffer of r to the pool.
func (r *reader) release() {
	r.s.pool.putBufs(r.bufs)
	r.cache.release()
}

func (r *reader) flushFence(f *fence) {
	if r.in != 0 {
		f.framesIn.Add(r.in)
		f.bytesIn.Add(r.inBytes)
	}
	if r.out != 0 {
		f.framesOut.Add(r.out)
		f.bytesOut.Add(r.outBytes)
	}
	if r.floods != 0 {
		f.floods.Add(r.floods)
	}
	r.in, r.inBytes, r.out, r.outBytes, r.floods = 0, 0, 0, 0, 0
}

// pending reports whether mac is already queued for learning in f.
func (r *reader) pending(f *fence, mac MAC) bool {
	for i := range r.learns {
		if r.learns[i].mac == mac && r.learns[i].f == f {
			return true
		}
	}
	return false
}

// enqueue pushes b (a frame of size bytes at Headroom) to q and records the
// outcome. It reports whether q took b; if not, the caller still owns b.
func (r *reader) enqueue(f *fence, q *txQueue, b []byte, meta TrunkMeta, size int) bool {
	switch q.push(txFrame{b: b[:Headroom+size], meta: meta}) {
	case pushedWake:
		r.wake = append(r.wake, q)
		fallthrough
	case pushed:
		r.out++
		r.outBytes += uint64(size)
		return true
	case pushFull:
		q.drops.add(DropQueueFull, 1)
		f.drops.add(DropQueueFull, 1)
	default:
		q.drops.add(DropDetached, 1)
		f.drops.add(DropDetached, 1)
	}
	return false
}

// handOff sends the frame in bufs[i] to q as its only (or last) target. A
// frame that fits a small buffer is copied into one; a larger frame is
// handed off itself: the buffer moves into q and, if q took it, a fresh
// buffer takes its place in the batch (STYLE 4.2). Copying small frames is
// deliberate: Read needs [BufSize] (64 KiB) buffers, and handing those off
// for 64- or 1500-byte frames would make every queued frame pin 64 KiB and
// churn large buffers through the pool; a copy of at most 2 KiB is cheaper.
func (r *reader) handOff(f *fence, q *txQueue, i, size int, meta TrunkMeta) {
	if Headroom+size <= smallBufSize {
		r.sendCopy(f, q, i, size, meta)
		return
	}
	if r.enqueue(f, q, r.bufs[i], meta, size) {
		r.bufs[i] = r.cache.getLarge()
	}
}

// sendCopy sends a copy of the frame in bufs[i] to q.
func (r *reader) sendCopy(f *fence, q *txQueue, i, size int, meta TrunkMeta) {
	b := r.cache.getFor(size)
	copy(b[Headroom:], r.bufs[i][Headroom:Headroom+size])
	if !r.enqueue(f, q, b, meta, size) {
		r.cache.put(b)
	}
}

// flood sends frame i to every local port of f except in, and to tr (when
// not nil) for every remote host of the fence. The last target gets the
// original buffer, the others copies.
func (r *reader) flood(f *fence, in *port, ports []*port, tr *trunk, i, size int) {
	r.floods++
	var last *port
	for _, p := range ports {
		if p == in {
			continue
		}
		if last != nil {
			r.sendCopy(f, &last.q, i, size, TrunkMeta{})
		}
		last = p
	}
	if tr != nil {
		if last != nil {
			r.sendCopy(f, &last.q, i, size, TrunkMeta{})
		}
		r.handOff(f, &tr.q, i, size, TrunkMeta{Fence: f.id, Host: Broadcast})
	} else if last != nil {
		r.handOff(f, &last.q, i, size, TrunkMeta{})
	}
}

// signal wakes the writers of the queues that became non-empty.
func (r *reader) signal() {
	for i, q := range r.wake {
		q.signal()
		r.wake[i] = nil
	}
	r.wake = r.wake[:0]
}

// applyLearns writes the collected table changes, one write lock per run of
// the same fence.
func (r *reader) applyLearns(now int64) {
	if len(r.learns) == 0 {
		return
	}
	var cur *fence
	for i := range r.learns {
		l := &r.learns[i]
		if l.f != cur {
			if cur != nil {
				cur.mu.Unlock()
			}
			cur = l.f
			cur.mu.Lock()
		}
		cur.learnLocked(r.s, l, now)
	}
	cur.mu.Unlock()
	clear(r.learns)
	r.learns = r.learns[:0]
}

// processPort switches the n frames in r.bufs/r.sizes read from p.
func (r *reader) processPort(p *port, n int) {
	s := r.s
	f := p.fence
	now := s.nowNanos()
	ports := *f.ports.Load()
	tr := s.trunk.Load()
	var rxBytes uint64
	var newMACs int64
	pinned := !p.pin.IsZero()

	f.mu.RLock()
	for i := 0; i < n; i++ {
		size := r.sizes[i]
		rxBytes += uint64(size)
		if size < MinFrameSize || size > MaxFrameSize {
			p.dropIn(DropRunt)
			continue
		}
		frame := r.bufs[i][Headroom : Headroom+size]
		dst := MAC(frame[0:6])
		src := MAC(frame[6:12])
		switch {
		case src.IsMulticast():
			p.dropIn(DropSrcMulticast)
			continue
		case src.IsZero():
			p.dropIn(DropSrcZero)
			continue
		case pinned && src != p.pin:
			p.dropIn(DropPinned)
			continue
		}
		if e := f.table[src]; e != nil && e.port == p {
			if now-e.seen.Load() >= seenGranularity {
				e.seen.Store(now)
			}
		} else if !r.pending(f, src) {
			if p.macs.Load()+newMACs >= p.maxMACs {
				p.dropIn(DropMACLimit)
				continue
			}
			r.learns = append(r.learns, learn{f: f, mac: src, port: p})
			newMACs++
		}
		r.in++
		r.inBytes += uint64(size)

		if dst.IsMulticast() {
			r.flood(f, p, ports, tr, i, size)
			continue
		}
		d := f.table[dst]
		switch {
		case d == nil:
			r.flood(f, p, ports, tr, i, size)
		case d.port == p:
			p.dropIn(DropHairpin)
		case d.port != nil:
			r.handOff(f, &d.port.q, i, size, TrunkMeta{})
		case tr == nil:
			p.dropIn(DropNoTrunk)
		default:
			r.handOff(f, &tr.q, i, size, TrunkMeta{Fence: f.id, Host: d.host})
		}
	}
	f.mu.RUnlock()

	p.rxFrames.Add(uint64(n))
	p.rxBytes.Add(rxBytes)
	r.flushFence(f)
	r.applyLearns(now)
	r.signal()
}

// processTrunk switches the n frames in r.bufs/r.sizes/r.meta read from
// the trunk. Each goes only to local ports of the fence in its meta.
func (r *reader) processTrunk(t *trunk, n int) {
	s := r.s
	fences := *s.fences.Load()
	now := s.nowNanos()
	var rxBytes uint64
	var cur *fence
	var ports []*port

	for i := 0; i < n; i++ {
		size := r.sizes[i]
		m := r.meta[i]
		rxBytes += uint64(size)
		f := fences[m.Fence]
		if f == nil {
			t.drops.add(DropUnknownFence, 1)
			continue
		}
		if f != cur {
			if cur != nil {
				cur.mu.RUnlock()
				r.flushFence(cur)
			}
			cur = f
			ports = *f.ports.Load()
			f.mu.RLock()
		}
		if size < MinFrameSize || size > MaxFrameSize {
			t.dropIn(f, DropRunt)
			continue
		}
		frame := r.bufs[i][Headroom : Headroom+size]
		dst := MAC(frame[0:6])
		src := MAC(frame[6:12])
		switch {
		case src.IsMulticast():
			t.dropIn(f, DropSrcMulticast)
			continue
		case src.IsZero():
			t.dropIn(f, DropSrcZero)
			continue
		}
		if e := f.table[src]; e != nil && e.port == nil && e.host == m.Host {
			if now-e.seen.Load() >= seenGranularity {
				e.seen.Store(now)
			}
		} else if !r.pending(f, src) {
			r.learns = append(r.learns, learn{f: f, mac: src, host: m.Host})
		}
		r.in++
		r.inBytes += uint64(size)

		if dst.IsMulticast() {
			r.flood(f, nil, ports, nil, i, size)
			continue
		}
		d := f.table[dst]
		switch {
		case d == nil:
			r.flood(f, nil, ports, nil, i, size)
		case d.port != nil:
			r.handOff(f, &d.port.q, i, size, TrunkMeta{})
		default:
			t.dropIn(f, DropRemoteDst)
		}
	}
	if cur != nil {
		cur.mu.RUnlock()
		r.flushFence(cur)
	}
	t.rxFrames.Add(uint64(n))
	t.rxBytes.Add(rxBytes)
	r.applyLearns(now)
	r.signal()
}
