package vswitch

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one bridge table entry. Its place (port or host) never changes:
// a move replaces the entry, so readers holding the fence's read lock see a
// consistent place. Only seen changes, by an atomic store.
type entry struct {
	port *port // local port; nil when the MAC lives on a remote host
	host MAC   // remote host's outer MAC when port is nil
	idx  int32 // index of the MAC in its place's list (fence.places)
	seen atomic.Int64
}

// place is where entries live: a local port, or (port nil) a remote host.
type place struct {
	port *port
	host MAC
}

func (e *entry) place() place { return place{port: e.port, host: e.host} }

// tableChunk bounds the entries one hold of a fence's lock visits when a
// port or host is flushed, the table is aged or listed: about 0.1–0.3 ms of
// work, so no forwarding waits longer than that for a big table.
const tableChunk = 2048

// seenGranularity: a refresh stores the clock only when the stored value is
// older than this, so hot entries are not written by every batch.
const seenGranularity = int64(time.Second)

// fence is one fence: its bridge table, local ports and counters.
type fence struct {
	id          uint32
	name        string
	maxMACs     int
	maxHostMACs int // entries one remote host may have; 0: no bound
	// bumRate is each port's storm control: broadcast, multicast and
	// unknown-unicast frames per second it may send (0: unlimited).
	bumRate int64

	// mu guards table and places. Readers take RLock once per batch for
	// lookups and refreshes; Lock is taken only to add, move or remove
	// entries, and never over the whole table: flushing, aging and
	// listing work through places in chunks of tableChunk entries.
	mu sync.RWMutex
	// +checklocks:mu
	table map[MAC]*entry
	// places lists the MACs of table by place: the MAC of entry e is
	// places[e.place()][e.idx]. A place with no entry has no list.
	// +checklocks:mu
	places map[place][]MAC

	// ports is the immutable list of local ports, replaced (copy-on-write)
	// under Switch.mu; loaded once per batch.
	ports atomic.Pointer[[]*port]

	tap atomic.Pointer[tapSet] // captures of this fence (capture.go); nil: none

	framesIn, bytesIn   atomic.Uint64
	framesOut, bytesOut atomic.Uint64
	floods              atomic.Uint64
	moves               atomic.Uint64
	learnRefused        atomic.Uint64
	hostLimitRefused    atomic.Uint64
	drops               dropCounters
}

func newFence(id uint32, name string, maxMACs int) *fence {
	f := &fence{id: id, name: name, maxMACs: maxMACs, table: make(map[MAC]*entry), places: make(map[place][]MAC)}
	var none []*port
	f.ports.Store(&none)
	return f
}

// addPort and removePort are called with Switch.mu held.
func (f *fence) addPort(p *port) {
	old := *f.ports.Load()
	n := make([]*port, len(old), len(old)+1)
	copy(n, old)
	n = append(n, p)
	f.ports.Store(&n)
}

func (f *fence) removePort(p *port) {
	old := *f.ports.Load()
	i := slices.Index(old, p)
	if i < 0 {
		return
	}
	n := make([]*port, 0, len(old)-1)
	n = append(n, old[:i]...)
	n = append(n, old[i+1:]...)
	f.ports.Store(&n)
}

// learn is a pending table change collected during a batch.
type learn struct {
	f    *fence
	mac  MAC
	port *port // nil: remote
	host MAC
}

// learnLocked adds or moves l.mac. f.mu must be held for writing.
func (f *fence) learnLocked(s *Switch, l *learn, now int64) {
	if l.port != nil && l.port.detached.Load() {
		return // flushPort ran or will not see this entry
	}
	e := f.table[l.mac]
	if l.port == nil && f.maxHostMACs > 0 && len(f.places[place{host: l.host}]) >= f.maxHostMACs &&
		(e == nil || e.port != nil || e.host != l.host) {
		// One remote host may not fill the fence's table: refuse a new
		// or moving MAC beyond its bound (its live entries stay).
		f.hostLimitRefused.Add(1)
		return
	}
	if e != nil {
		if e.port == l.port && (l.port != nil || e.host == l.host) {
			e.seen.Store(now) // another reader learned it first
			return
		}
		if e.port != nil {
			e.port.macs.Add(-1)
		}
		f.removeLocked(l.mac, e)
		f.moves.Add(1)
		if fn := s.cfg.OnMACMove; fn != nil {
			fn(MACMove{Fence: f.id, MAC: l.mac, From: placeOf(e.port, e.host), To: placeOf(l.port, l.host)})
		}
		if s.debug() {
			s.log.Debug("mac moved", "fence", f.id, "mac", l.mac,
				"from", placeString(e.port, e.host), "to", placeString(l.port, l.host))
		}
	} else if len(f.table) >= f.maxMACs {
		f.learnRefused.Add(1)
		return
	}
	ne := &entry{port: l.port}
	if l.port == nil {
		ne.host = l.host
	}
	ne.seen.Store(now)
	if l.port != nil {
		l.port.macs.Add(1)
	}
	f.insertLocked(l.mac, ne)
}

// insertLocked adds e for mac to the table and its place's list. f.mu
// must be held for writing.
//
// +checklocks:f.mu
func (f *fence) insertLocked(mac MAC, e *entry) {
	pl := e.place()
	l := f.places[pl]
	e.idx = int32(len(l))
	f.places[pl] = append(l, mac)
	f.table[mac] = e
}

// removeLocked removes mac, whose entry is e, from the table and its
// place's list (the list's last MAC takes its index). f.mu must be held
// for writing.
//
// +checklocks:f.mu
func (f *fence) removeLocked(mac MAC, e *entry) {
	pl := e.place()
	l := f.places[pl]
	last := len(l) - 1
	if int(e.idx) != last {
		m := l[last]
		l[e.idx] = m
		f.table[m].idx = e.idx
	}
	if last == 0 {
		delete(f.places, pl)
	} else {
		f.places[pl] = l[:last]
	}
	delete(f.table, mac)
}

// placeOf is where an entry points, without allocating.
func placeOf(p *port, host MAC) Place {
	if p != nil {
		return Place{Port: p.name}
	}
	return Place{Host: host}
}

func placeString(p *port, host MAC) string {
	if p != nil {
		return "port " + p.name
	}
	return "host " + host.String()
}

// flushPort removes every entry on p, tableChunk entries per hold of the
// lock, so that forwarding in the fence goes on between chunks however
// many MACs p had. p.detached is already set, so no reader adds one
// afterwards (an entry may still move away from p meanwhile).
func (f *fence) flushPort(p *port) {
	for {
		if _, more := f.flushChunk(place{port: p}); !more {
			break
		}
	}
	p.macs.Store(0)
}

// flushHost removes every entry on the remote host, in chunks like
// flushPort, and returns how many.
func (f *fence) flushHost(host MAC) int {
	total := 0
	for {
		n, more := f.flushChunk(place{host: host})
		total += n
		if !more {
			return total
		}
	}
}

// flushChunk removes up to tableChunk entries of pl, from the end of its
// list, and reports how many and whether any remain.
func (f *fence) flushChunk(pl place) (n int, more bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.places[pl]
	n = min(len(l), tableChunk)
	for _, mac := range l[len(l)-n:] {
		delete(f.table, mac)
	}
	if l = l[:len(l)-n]; len(l) == 0 {
		delete(f.places, pl)
		return n, false
	}
	f.places[pl] = l
	return n, true
}

// readChunks calls visit with the MAC list of every place that keep
// selects (nil: all), in chunks of at most tableChunk entries, holding the
// read lock for one chunk at a time (the listings: FDBPage, LocalMACs).
// visit runs under the read lock and must not keep the chunk. An entry
// that moves during the walk may be seen twice or not at all.
func (f *fence) readChunks(keep func(place) bool, visit func(chunk []MAC)) {
	f.mu.RLock()
	places := make([]place, 0, len(f.places))
	for pl := range f.places {
		if keep == nil || keep(pl) {
			places = append(places, pl)
		}
	}
	f.mu.RUnlock()
	for _, pl := range places {
		for i, done := 0, false; !done; {
			f.mu.RLock()
			l := f.places[pl]
			end := min(len(l), i+tableChunk)
			if i < end {
				visit(l[i:end])
			}
			i = end
			done = i >= len(l)
			f.mu.RUnlock()
		}
	}
}

// expire removes entries not seen since cutoff, place by place, holding
// the lock for at most tableChunk entries at a time (an entry that moves
// during the sweep may be left for the next one); scratch is reused
// between calls. It returns the number removed and scratch.
func (f *fence) expire(cutoff int64, scratch []place) (int, []place) {
	scratch = scratch[:0]
	f.mu.RLock()
	for pl := range f.places {
		scratch = append(scratch, pl)
	}
	f.mu.RUnlock()
	n := 0
	for _, pl := range scratch {
		for i, done := 0, false; !done; {
			f.mu.Lock()
			l := f.places[pl]
			for k := 0; k < tableChunk; k++ {
				if i >= len(l) {
					done = true
					break
				}
				mac := l[i]
				e := f.table[mac]
				if e.seen.Load() >= cutoff {
					i++
					continue
				}
				if e.port != nil {
					e.port.macs.Add(-1)
				}
				f.removeLocked(mac, e) // the last MAC moves to index i
				l = f.places[pl]
				n++
			}
			f.mu.Unlock()
		}
	}
	clear(scratch) // no port pointers kept until the next sweep
	return n, scratch
}

// expire runs one aging sweep over every fence at the given time and
// returns how many entries were removed.
func (s *Switch) expire(now time.Time, scratch []place) (int, []place) {
	cutoff := now.UnixNano() - int64(s.cfg.AgingTime)
	total := 0
	for _, f := range *s.fences.Load() {
		var n int
		n, scratch = f.expire(cutoff, scratch)
		total += n
	}
	return total, scratch
}

// janitorPeriod is how often aging runs: a tenth of the aging time, within
// [100ms, 10s].
func (s *Switch) janitorPeriod() time.Duration {
	return min(max(s.cfg.AgingTime/10, 100*time.Millisecond), 10*time.Second)
}

// janitor ages bridge tables until the switch closes.
func (s *Switch) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(s.janitorPeriod())
	defer t.Stop()
	var scratch []place
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			var n int
			n, scratch = s.expire(s.clock(), scratch)
			if n > 0 {
				s.log.Debug("aged out", "macs", n)
			}
		}
	}
}
