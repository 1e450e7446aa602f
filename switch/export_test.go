package vswitch

import (
	"fmt"
	"time"
)

// Test hooks. A static port or trunk is registered like an attached one but
// has no goroutines: tests inject batches into the same processing
// functions the reader goroutines call, and drain transmit queues the way
// the writer goroutines do, all on the test's goroutine. This is how the
// allocation tests measure learning+lookup+enqueue+dequeue, and how the
// isolation property test pushes millions of frames quickly under -race.

type nopPort struct{ batch int }

func (p nopPort) Read([][]byte, []int, int) (int, error) { panic("static port: Read") }
func (p nopPort) Write([][]byte, int) (int, error)       { panic("static port: Write") }
func (p nopPort) BatchSize() int                         { return p.batch }
func (p nopPort) Close() error                           { return nil }

type nopTrunk struct{ batch int }

func (t nopTrunk) ReadTrunk([][]byte, []int, []uint32, [][6]byte, int) (int, error) {
	panic("static trunk: ReadTrunk")
}
func (t nopTrunk) WriteTrunk([][]byte, []uint32, [][6]byte, int) (int, error) {
	panic("static trunk: WriteTrunk")
}
func (t nopTrunk) BatchSize() int { return t.batch }
func (t nopTrunk) Close() error   { return nil }

// StaticPort is a port without goroutines.
type StaticPort struct {
	p      *port
	r      *reader
	frames []txFrame
}

// AttachStatic attaches a static port with the given batch size.
func (s *Switch) AttachStatic(pc PortConfig, batch int) (*StaticPort, error) {
	p, err := s.attach(nopPort{batch}, pc, false)
	if err != nil {
		return nil, err
	}
	r := newReader(s, p.batch)
	r.noPause = true // the test's clock is not time.Sleep's
	return &StaticPort{p: p, r: r, frames: make([]txFrame, 0, p.batch)}, nil
}

// AttachStaticDirect attaches a static port whose frames the reader writes
// directly to tw whenever its queue is empty (as for a Port that
// implements TryWriter); frames tw does not take are queued for Drain.
func (s *Switch) AttachStaticDirect(pc PortConfig, batch int, tw TryWriter) (*StaticPort, error) {
	sp, err := s.AttachStatic(pc, batch)
	if err != nil {
		return nil, err
	}
	sp.p.q.tw = tw
	return sp, nil
}

// ID returns the port ID.
func (sp *StaticPort) ID() uint64 { return sp.p.id }

// Fence returns the port's fence ID.
func (sp *StaticPort) Fence() uint32 { return sp.p.fence.id }

// Inject processes frames (at most the batch size) as one batch read from the port.
func (sp *StaticPort) Inject(frames [][]byte) {
	for i, f := range frames {
		sp.r.sizes[i] = copy(sp.r.bufs[i][Headroom:], f)
	}
	sp.r.processPort(sp.p, len(frames))
}

// Drain pops every queued frame, passes it to fn (the slice is only valid
// during the call), counts it as written and recycles its buffer. It
// returns how many frames there were.
func (sp *StaticPort) Drain(fn func(frame []byte)) int {
	total := 0
	for {
		var closed bool
		sp.frames, closed = sp.p.q.pop(sp.frames[:0])
		for _, f := range sp.frames {
			if fn != nil {
				fn(f.b[Headroom:])
			}
			sp.p.txFrames.Add(1)
			sp.p.txBytes.Add(uint64(len(f.b) - Headroom))
		}
		total += len(sp.frames)
		sp.p.s.pool.putFrames(sp.frames)
		if len(sp.frames) == 0 || closed {
			return total
		}
	}
}

// Detach detaches the port as a Read error would.
func (sp *StaticPort) Detach(err error) { sp.p.fail(err) }

// StaticTrunk is a trunk without goroutines.
type StaticTrunk struct {
	t      *trunk
	r      *reader
	frames []txFrame
}

// AttachStaticTrunk attaches a static trunk with the given batch size.
func (s *Switch) AttachStaticTrunk(batch int) (*StaticTrunk, error) {
	t, err := s.attachTrunk(nopTrunk{batch}, batch, false)
	if err != nil {
		return nil, err
	}
	return &StaticTrunk{t: t, r: newReader(s, batch), frames: make([]txFrame, 0, batch)}, nil
}

// Inject processes frames, with their fences and sending hosts, as one
// batch read from the trunk.
func (st *StaticTrunk) Inject(frames [][]byte, fences []uint32, hosts [][6]byte) {
	for i, f := range frames {
		st.r.sizes[i] = copy(st.r.bufs[i][Headroom:], f)
		st.r.fences[i], st.r.hosts[i] = fences[i], hosts[i]
	}
	st.r.processTrunk(st.t, len(frames))
}

// Drain pops every frame queued for the trunk, like StaticPort.Drain, with
// the fence and host WriteTrunk would get.
func (st *StaticTrunk) Drain(fn func(frame []byte, fence uint32, host MAC)) int {
	total := 0
	for {
		var closed bool
		st.frames, closed = st.t.q.pop(st.frames[:0])
		for _, f := range st.frames {
			if fn != nil {
				fn(f.b[Headroom:], f.meta.fence, f.meta.host)
			}
		}
		total += len(st.frames)
		st.t.s.pool.putFrames(st.frames)
		if len(st.frames) == 0 || closed {
			return total
		}
	}
}

// Expire runs one aging sweep as if the clock read now.
func (s *Switch) Expire(now time.Time) int {
	n, _ := s.expire(now, nil)
	return n
}

// LearnMany adds n entries with MACs 0a:xx:xx:xx:xx:xx on the port (its MAC
// limit permitting), as learning would, under one hold of the lock (a
// test's shortcut to a big table).
func (sp *StaticPort) LearnMany(n int, first uint32) {
	f := sp.p.fence
	now := f.tableNow(sp.p.s)
	f.mu.Lock()
	for i := 0; i < n; i++ {
		v := first + uint32(i)
		mac := MAC{0x0a, 0, byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		f.learnLocked(sp.p.s, &learn{f: f, mac: mac, port: sp.p}, now)
	}
	f.mu.Unlock()
}

func (f *fence) tableNow(s *Switch) int64 { return s.nowNanos() }

// CheckTable checks the invariants of every fence's table: each entry's
// MAC is at its index in its place's list, the lists hold exactly the
// table's MACs, and each port's MAC count matches its list.
func (s *Switch) CheckTable() error {
	for _, f := range *s.fences.Load() {
		f.mu.RLock()
		total := 0
		for pl, l := range f.places {
			if len(l) == 0 {
				f.mu.RUnlock()
				return fmt.Errorf("fence %d: empty list for %v", f.id, pl)
			}
			total += len(l)
			for i, mac := range l {
				e := f.table[mac]
				if e == nil || e.place() != pl || int(e.idx) != i {
					f.mu.RUnlock()
					return fmt.Errorf("fence %d: %v at %d of %v: entry %+v", f.id, mac, i, pl, e)
				}
			}
			if pl.port != nil && pl.port.macs.Load() != int64(len(l)) {
				f.mu.RUnlock()
				return fmt.Errorf("fence %d: port %s counts %d MACs, has %d", f.id, pl.port.name, pl.port.macs.Load(), len(l))
			}
		}
		if total != len(f.table) {
			f.mu.RUnlock()
			return fmt.Errorf("fence %d: lists hold %d MACs, table %d", f.id, total, len(f.table))
		}
		f.mu.RUnlock()
	}
	return nil
}

// SetWaitHook sets the hook a ReadWaiter port's reader calls before each
// WaitRead with the number of frame buffers it holds (nil: none). Call it
// before attaching ports and reset it with t.Cleanup.
func SetWaitHook(f func(held int)) { waitHook = f }
