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
	seen atomic.Int64
}

// seenGranularity: a refresh stores the clock only when the stored value is
// older than this, so hot entries are not written by every batch.
const seenGranularity = int64(time.Second)

// fence is one fence: its bridge table, local ports and counters.
type fence struct {
	id          uint32
	name        string
	maxMACs     int
	maxHostMACs int // entries one remote host may have; 0: no bound

	// mu guards table. Readers take RLock once per batch for lookups and
	// refreshes; Lock is taken only to add, move or remove entries.
	mu sync.RWMutex
	// +checklocks:mu
	table map[MAC]*entry
	// hostMACs counts the entries of table on each remote host.
	// +checklocks:mu
	hostMACs map[MAC]int

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
	f := &fence{id: id, name: name, maxMACs: maxMACs, table: make(map[MAC]*entry), hostMACs: make(map[MAC]int)}
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
	if l.port == nil && f.maxHostMACs > 0 && f.hostMACs[l.host] >= f.maxHostMACs &&
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
		} else {
			f.dropHostMAC(e.host)
		}
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
	ne := &entry{port: l.port, host: l.host}
	ne.seen.Store(now)
	if l.port != nil {
		l.port.macs.Add(1)
	} else {
		f.hostMACs[l.host]++
	}
	f.table[l.mac] = ne
}

// dropHostMAC uncounts one entry of remote host h. f.mu must be held for
// writing.
//
// +checklocks:f.mu
func (f *fence) dropHostMAC(h MAC) {
	if n := f.hostMACs[h] - 1; n > 0 {
		f.hostMACs[h] = n
	} else {
		delete(f.hostMACs, h)
	}
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

// flushPort removes every entry on p. p.detached is already set, so no
// reader adds one afterwards.
func (f *fence) flushPort(p *port) {
	f.mu.Lock()
	for mac, e := range f.table {
		if e.port == p {
			delete(f.table, mac)
		}
	}
	p.macs.Store(0)
	f.mu.Unlock()
}

// flushHost removes every entry on the remote host and returns how many.
func (f *fence) flushHost(host MAC) int {
	n := 0
	f.mu.Lock()
	for mac, e := range f.table {
		if e.port == nil && e.host == host {
			delete(f.table, mac)
			n++
		}
	}
	delete(f.hostMACs, host)
	f.mu.Unlock()
	return n
}

// expire removes entries not seen since cutoff; scratch is reused between
// calls. It returns the number removed and scratch.
func (f *fence) expire(cutoff int64, scratch []MAC) (int, []MAC) {
	scratch = scratch[:0]
	f.mu.RLock()
	for mac, e := range f.table {
		if e.seen.Load() < cutoff {
			scratch = append(scratch, mac)
		}
	}
	f.mu.RUnlock()
	if len(scratch) == 0 {
		return 0, scratch
	}
	n := 0
	f.mu.Lock()
	for _, mac := range scratch {
		e := f.table[mac]
		if e == nil || e.seen.Load() >= cutoff {
			continue
		}
		if e.port != nil {
			e.port.macs.Add(-1)
		} else {
			f.dropHostMAC(e.host)
		}
		delete(f.table, mac)
		n++
	}
	f.mu.Unlock()
	return n, scratch
}

// expire runs one aging sweep over every fence at the given time and
// returns how many entries were removed.
func (s *Switch) expire(now time.Time, scratch []MAC) (int, []MAC) {
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
	var scratch []MAC
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
