package vswitch

import "time"

// Forwarding. Each port (and the trunk) has a reader goroutine that owns a
// [reader]: a batch of large buffers, a buffer stash and scratch slices, all
// reused, so steady-state forwarding allocates nothing. A batch is processed
// under one read lock of the fence's table; new and moved MACs are collected
// and written under the write lock once at the end of the batch.
//
// Buffer ownership: bufs[i] belongs to the reader. Switching a batch only
// stages (destination, frame index) pairs; deliver then serves each
// destination once. A direct write (see [TryWriter]) reads the batch
// buffers in place and leaves them with the reader. A queued frame gets its
// own buffer: a large frame (over smallBufSize-Headroom bytes) whose last
// target this is is handed off (the buffer moves into the queue, which owns
// it from then on, and a fresh buffer takes its place in bufs), every other
// queued frame is copied into a pooled buffer (2 KiB for small frames, so a
// queued 64-byte frame never pins a 64 KiB read buffer). A writer owns the
// buffers it pops and returns them to the pool after Write returns.

// reader is the per-goroutine state of batch processing. Not safe for
// concurrent use.
type reader struct {
	s      *Switch
	bufs   [][]byte // each a whole large buffer; frames at [Headroom:]
	sizes  []int
	fences []uint32  // per bufs[i], read from the trunk
	hosts  [][6]byte // per bufs[i], read from the trunk
	cache  bufCache
	learns []learn

	// Delivery: switching a batch only stages (destination, frame) pairs;
	// deliver then handles each destination once (see deliverGroup).
	stage  []staged
	groups []group
	refs   []int32   // per bufs[i]: staged targets not yet delivered
	out    []txFrame // scratch: frames being pushed to one queue
	wbufs  [][]byte  // scratch: frames being written directly

	// per-fence accumulators, flushed by flushFence
	in, inBytes, floods uint64

	// bum is the storm control of the port this reader reads (unused by
	// the trunk's reader).
	bum bumBucket
	// noPause: a storm never pauses this reader (tests' static ports).
	noPause bool
}

// bumBucket is one port's storm control: a token bucket of the
// broadcast, multicast and unknown-unicast frames it may send, refilled
// at the fence's bum_rate frames per second up to bumBurst frames. The
// port's reader owns it: no lock, no atomic, no allocation.
type bumBucket struct {
	credit int64 // in bumUnit per frame
	last   int64 // clock of the last refill (Unix ns); 0: never used
}

// bumUnit is the credit one frame costs: the refill is then elapsed
// nanoseconds × frames per second, in integers.
const bumUnit = int64(time.Second)

// MaxBUMRate bounds FenceConfig.BUMRate (so the bucket's arithmetic does
// not overflow).
const MaxBUMRate = 1_000_000_000

// bumBurst is how many flooded frames a port may send at once after a
// quiet period: a tenth of a second's worth, at least one read batch (64)
// or the rate itself when that is lower.
func bumBurst(rate int64) int64 { return max(rate/10, min(rate, maxReadBatch)) }

// maxStormPause bounds how long a storming port goes unread.
const maxStormPause = 100 * time.Millisecond

// pause is how long a port whose floods were just dropped goes unread:
// until its bucket holds half a burst again (at least 1 ms, at most
// maxStormPause). Not reading is storm control's backpressure: the
// storming VM's socket fills and its writes block, so a storm costs the
// switch a read per pause instead of a read and a drop per frame, and
// other fences keep the CPU. Only the storming port waits (its unicast
// frames too: it is the one exceeding its rate).
func (b *bumBucket) pause(rate int64) time.Duration {
	need := bumBurst(rate) / 2 * bumUnit
	d := time.Duration((need - b.credit) / rate)
	return min(max(d, time.Millisecond), maxStormPause)
}

// allow reports whether one more flooded frame passes at now (Unix ns)
// for rate frames per second, and takes its credit.
func (b *bumBucket) allow(rate, now int64) bool {
	limit := bumBurst(rate) * bumUnit
	if b.last == 0 {
		b.credit, b.last = limit, now
	} else if el := now - b.last; el > 0 {
		// At most one second of refill: the burst is at most that.
		b.credit = min(limit, b.credit+min(el, int64(time.Second))*rate)
		b.last = now
	}
	if b.credit < bumUnit {
		return false
	}
	b.credit -= bumUnit
	return true
}

// staged is one frame for one destination queue.
type staged struct {
	q    *txQueue
	f    *fence
	i    int32 // index in reader.bufs
	size int32
	meta trunkMeta // for the trunk's queue
}

// group is one destination queue of a batch and its staged frames, in order.
type group struct {
	q   *txQueue
	idx []int32 // indexes in reader.stage
}

func newReader(s *Switch, batch int) *reader {
	r := &reader{
		s:      s,
		bufs:   make([][]byte, batch),
		sizes:  make([]int, batch),
		fences: make([]uint32, batch),
		hosts:  make([][6]byte, batch),
		cache:  newBufCache(s.pool),
		learns: make([]learn, 0, batch),
		stage:  make([]staged, 0, 2*batch),
		refs:   make([]int32, batch),
		out:    make([]txFrame, 0, batch),
		wbufs:  make([][]byte, 0, batch),
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
	if r.floods != 0 {
		f.floods.Add(r.floods)
	}
	r.in, r.inBytes, r.floods = 0, 0, 0
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

// send stages the frame in bufs[i] (size bytes) for q.
func (r *reader) send(f *fence, q *txQueue, i, size int, meta trunkMeta) {
	r.stage = append(r.stage, staged{q: q, f: f, i: int32(i), size: int32(size), meta: meta})
	r.refs[i]++
}

// flood stages frame i for every local port of f except in, and for tr
// (when not nil) for every remote host of the fence.
func (r *reader) flood(f *fence, in *port, ports []*port, tr *trunk, i, size int) {
	r.floods++
	for _, p := range ports {
		if p != in {
			r.send(f, &p.q, i, size, trunkMeta{})
		}
	}
	if tr != nil {
		r.send(f, &tr.q, i, size, trunkMeta{fence: f.id, host: Broadcast})
	}
}

// deliver hands every staged frame to its destination, one destination at
// a time (one queue lock, or one direct write, per destination and
// batch), in the order the frames were staged. It runs after the fence
// lock is released.
func (r *reader) deliver() {
	if len(r.stage) == 0 {
		return
	}
	ng, hint := 0, 0
	for k := range r.stage {
		q := r.stage[k].q
		g := -1
		// Floods stage the same destinations in the same order for every
		// frame, so the search starts after the last group found.
		for j := 0; j < ng; j++ {
			c := hint + j
			if c >= ng {
				c -= ng
			}
			if r.groups[c].q == q {
				g = c
				break
			}
		}
		if g < 0 {
			if ng == len(r.groups) {
				r.groups = append(r.groups, group{})
			}
			g = ng
			ng++
			r.groups[g].q = q
		}
		r.groups[g].idx = append(r.groups[g].idx, int32(k))
		hint = g + 1
	}
	for g := 0; g < ng; g++ {
		r.deliverGroup(&r.groups[g])
		r.groups[g].q = nil
		r.groups[g].idx = r.groups[g].idx[:0]
	}
	clear(r.stage)
	r.stage = r.stage[:0]
	for i, b := range r.bufs {
		if b == nil {
			r.bufs[i] = r.cache.getLarge()
		}
	}
}

// deliverGroup delivers the frames staged for one queue.
//
// Direct path: when the destination port implements [TryWriter], its
// transmit lock is free (its writer is not writing) and its queue is
// empty, the reader writes the frames itself, straight from its batch
// buffers (no copy, no wake-up). The frames TryWrite did not take, and all
// frames when the lock is taken or the queue is not empty, are queued.
// Holding the lock while queueing the rest keeps the order: the writer
// cannot pop until we are done.
//
// Queued frames get their own buffers: a copy in a small buffer for a
// frame of up to smallBufSize-Headroom bytes, and for a larger frame the
// batch buffer itself when this is its last target (refs), else a copy.
// A frame the queue has no room for is dropped before it is copied.
func (r *reader) deliverGroup(g *group) {
	q := g.q
	f := r.stage[g.idx[0]].f
	idx := g.idx
	if q.port != nil {
		if t := q.port.tap.Load(); t != nil {
			t.staged(r, idx)
		}
	}
	var sentFrames, sentBytes uint64
	locked := false
	var werr error
	if q.tw != nil && q.txMu.TryLock() {
		locked = true
		if q.idle() {
			bufs := r.wbufs[:0]
			for _, k := range idx {
				st := &r.stage[k]
				bufs = append(bufs, r.bufs[st.i][:Headroom+int(st.size)])
			}
			n, err := q.tw.TryWrite(bufs, Headroom)
			n = max(0, min(n, len(bufs)))
			for _, k := range idx[:n] {
				st := &r.stage[k]
				sentBytes += uint64(st.size)
				r.refs[st.i]--
			}
			sentFrames = uint64(n)
			// Written frames count as transmitted now; queued ones
			// when the writer writes them.
			q.port.txFrames.Add(sentFrames)
			q.port.txBytes.Add(sentBytes)
			clear(bufs)
			r.wbufs = bufs[:0]
			idx = idx[n:]
			werr = err
		}
	}
	if werr != nil {
		q.txMu.Unlock()
		locked = false
		for _, k := range idx {
			r.refs[r.stage[k].i]--
		}
		if len(idx) > 0 {
			q.drops.add(DropWrite, uint64(len(idx)))
			f.drops.add(DropWrite, uint64(len(idx)))
		}
		idx = idx[:0]
	}
	wake := false
	if len(idx) > 0 {
		wake = r.enqueue(q, f, idx, &sentFrames, &sentBytes)
	}
	if locked {
		q.txMu.Unlock()
	}
	if sentFrames != 0 {
		f.framesOut.Add(sentFrames)
		f.bytesOut.Add(sentBytes)
	}
	if wake {
		q.signal()
	}
	if werr != nil {
		q.port.fail(werr)
	}
}

// enqueue pushes the staged frames idx (all for q) and counts them: queued
// frames into *frames and *bytes, the others as drops. It reports whether
// the writer must be woken.
func (r *reader) enqueue(q *txQueue, f *fence, idx []int32, frames, bytes *uint64) bool {
	// Copy only what the queue has room for now (a hint; pushBatch decides).
	roomFrames, roomBytes, globalBound := q.room()
	room, cutByBudget := 0, false
	for room < len(idx) && room < roomFrames {
		charge := bufCharge(int(r.stage[idx[room]].size))
		if room > 0 && charge > roomBytes {
			cutByBudget = globalBound
			break
		}
		roomBytes -= charge
		room++
	}
	out := r.out[:0]
	for _, k := range idx[:room] {
		st := &r.stage[k]
		size := int(st.size)
		r.refs[st.i]--
		var b []byte
		if Headroom+size > smallBufSize && r.refs[st.i] == 0 {
			b, r.bufs[st.i] = r.bufs[st.i], nil // hand off; deliver refills
		} else {
			b = r.cache.getFor(size)
			copy(b[Headroom:], r.bufs[st.i][Headroom:Headroom+size])
		}
		out = append(out, txFrame{b: b[:Headroom+size], meta: st.meta})
	}
	for _, k := range idx[room:] {
		r.refs[r.stage[k].i]--
	}
	n, why, wake := q.pushBatch(out)
	for i := range out[:n] {
		*bytes += uint64(len(out[i].b) - Headroom)
	}
	*frames += uint64(n)
	for i := range out[n:] {
		r.cache.put(out[n+i].b)
	}
	clear(out)
	r.out = out[:0]
	if dropped := uint64(len(idx) - n); dropped != 0 {
		reason := DropQueueFull
		switch why {
		case pushClosed:
			reason = DropDetached
		case pushGlobal:
			reason = DropGlobalQueueFull
		default:
			if n == len(out) && cutByBudget {
				reason = DropGlobalQueueFull // the hint left them out
			}
		}
		q.drops.add(reason, dropped)
		f.drops.add(reason, dropped)
	}
	return wake
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
	if t := p.tap.Load(); t != nil {
		t.batch(r.bufs, r.sizes[:n])
	}
	if t := f.tap.Load(); t != nil {
		t.batch(r.bufs, r.sizes[:n])
	}
	ports := *f.ports.Load()
	tr := s.trunk.Load()
	var rxBytes uint64
	var newMACs int64
	pinned := !p.pin.IsZero()
	bumRate := f.bumRate
	stormed := false
	// Bulk traffic repeats the same source and destination frame after
	// frame: remember the last lookups (the table does not change while
	// the read lock is held). knownSrc is set only for a source already
	// learned on p, the one outcome that needs no further work.
	var lastSrc, lastDst MAC
	var lastD *entry
	knownSrc, knownDst := false, false

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
		if knownSrc && src == lastSrc {
			// refreshed with the earlier frame of this batch
		} else if e := f.table[src]; e != nil && e.port == p {
			if now-e.seen.Load() >= seenGranularity {
				e.seen.Store(now)
			}
			lastSrc, knownSrc = src, true
		} else if !r.pending(f, src) {
			if p.macs.Load()+newMACs >= p.maxMACs {
				p.dropIn(DropMACLimit)
				continue
			}
			r.learns = append(r.learns, learn{f: f, mac: src, port: p})
			newMACs++
		}
		var d *entry
		if !dst.IsMulticast() {
			if !knownDst || dst != lastDst {
				lastDst, lastD, knownDst = dst, f.table[dst], true
			}
			d = lastD
		}
		if d == nil && bumRate > 0 && !r.bum.allow(bumRate, now) {
			p.dropIn(DropStorm) // a flood beyond the port's rate
			stormed = true
			continue
		}
		r.in++
		r.inBytes += uint64(size)

		switch {
		case d == nil: // broadcast, multicast, unknown unicast
			r.flood(f, p, ports, tr, i, size)
		case d.port == p:
			p.dropIn(DropHairpin)
		case d.port != nil:
			r.send(f, &d.port.q, i, size, trunkMeta{})
		case tr == nil:
			p.dropIn(DropNoTrunk)
		default:
			r.send(f, &tr.q, i, size, trunkMeta{fence: f.id, host: d.host})
		}
	}
	f.mu.RUnlock()

	p.rxFrames.Add(uint64(n))
	p.rxBytes.Add(rxBytes)
	r.flushFence(f)
	r.deliver()
	r.applyLearns(now)
	if stormed && !r.noPause {
		time.Sleep(r.bum.pause(bumRate))
	}
}

// processTrunk switches the n frames in r.bufs/r.sizes/r.fences/r.hosts
// read from the trunk. Each goes only to local ports of its fence.
func (r *reader) processTrunk(t *trunk, n int) {
	s := r.s
	fences := *s.fences.Load()
	now := s.nowNanos()
	var rxBytes uint64
	var cur *fence
	var ports []*port
	var tap *tapSet // cur's captures

	for i := 0; i < n; i++ {
		size := r.sizes[i]
		host := MAC(r.hosts[i])
		rxBytes += uint64(size)
		f := fences[r.fences[i]]
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
			tap = f.tap.Load()
			f.mu.RLock()
		}
		if tap != nil {
			tap.frame(r.bufs[i], size, time.Now())
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
		if e := f.table[src]; e != nil && e.port == nil && e.host == host {
			if now-e.seen.Load() >= seenGranularity {
				e.seen.Store(now)
			}
		} else if !r.pending(f, src) {
			r.learns = append(r.learns, learn{f: f, mac: src, host: host})
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
			r.send(f, &d.port.q, i, size, trunkMeta{})
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
	r.deliver()
	r.applyLearns(now)
}
