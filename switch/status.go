package vswitch

import (
	"bytes"
	"cmp"
	"slices"
	"time"
)

// Status is a snapshot of the switch for the admin API and metrics. It is
// plain data (JSON-friendly); taking it allocates and does not stop
// forwarding, so counters of different ports are not from one instant.
type Status struct {
	Fences []FenceStatus `json:"fences"`
	Ports  []PortStatus  `json:"ports"`
	// Trunk is nil when no trunk is attached.
	Trunk *TrunkStatus `json:"trunk,omitempty"`
	// QueuedBytes is the buffer bytes queued in all transmit queues
	// together, bounded by MaxQueuedBytes (Config.MaxQueuedBytes).
	QueuedBytes    int64 `json:"queued_bytes"`
	MaxQueuedBytes int64 `json:"max_queued_bytes"`
}

// FenceStatus describes one fence.
type FenceStatus struct {
	ID      uint32 `json:"id"`
	Name    string `json:"name"`
	Ports   int    `json:"ports"`    // local ports attached
	MACs    int    `json:"macs"`     // bridge table entries (local and remote)
	MaxMACs int    `json:"max_macs"` // table limit
	// MaxPorts is the fence's port limit (Config.MaxFencePorts) and
	// PortsRefused counts the ports refused because it was reached.
	MaxPorts     int    `json:"max_ports"`
	PortsRefused uint64 `json:"ports_refused"`

	FramesIn  uint64 `json:"frames_in"`  // frames accepted from local ports and the trunk
	BytesIn   uint64 `json:"bytes_in"`   //
	FramesOut uint64 `json:"frames_out"` // frames queued to local ports and the trunk
	BytesOut  uint64 `json:"bytes_out"`  //
	Floods    uint64 `json:"floods"`     // frames flooded (broadcast, multicast, unknown unicast)
	Moves     uint64 `json:"moves"`      // MACs that moved to another port or host
	// LearnRefused counts new MACs not learned because the table was full.
	LearnRefused uint64 `json:"learn_refused"`
	// HostLimitRefused counts MACs of a remote host not learned because
	// the host had Config.MaxHostMACs entries in the fence already.
	HostLimitRefused uint64 `json:"host_limit_refused"`
	// Drops counts dropped frames by reason (see [DropReason]); only
	// non-zero reasons are present.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// PortStatus describes one attached port.
type PortStatus struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name"`
	Fence   uint32 `json:"fence"`
	MACs    int    `json:"macs"` // source MACs learned on this port
	MaxMACs int    `json:"max_macs"`
	// PinMAC is the pinned source MAC, "" when the port is not pinned.
	PinMAC      string `json:"pin_mac,omitempty"`
	QueueLen    int    `json:"queue_len"`    // transmit queue capacity in frames
	Queued      int    `json:"queued"`       // frames waiting in the transmit queue
	QueueBytes  int    `json:"queue_bytes"`  // transmit queue capacity in frame bytes
	QueuedBytes int    `json:"queued_bytes"` // bytes of the frames waiting

	RxFrames uint64 `json:"rx_frames"` // frames read from the port (inbound)
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"` // frames written to the port (outbound)
	TxBytes  uint64 `json:"tx_bytes"`
	// Drops counts frames dropped on this port by reason (inbound reasons
	// such as runt or pinned, outbound ones such as queue_full); only
	// non-zero reasons are present.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// TrunkStatus describes the attached trunk.
type TrunkStatus struct {
	RxFrames    uint64            `json:"rx_frames"`
	RxBytes     uint64            `json:"rx_bytes"`
	TxFrames    uint64            `json:"tx_frames"`
	TxBytes     uint64            `json:"tx_bytes"`
	QueueLen    int               `json:"queue_len"`
	Queued      int               `json:"queued"`
	QueueBytes  int               `json:"queue_bytes"`
	QueuedBytes int               `json:"queued_bytes"`
	Drops       map[string]uint64 `json:"drops,omitempty"`
}

// FDBEntry is one bridge table entry of a fence.
type FDBEntry struct {
	MAC string `json:"mac"` // inner MAC, "52:54:00:12:34:56"
	// Port is the local port's ID, 0 when the MAC lives on a remote host.
	Port     uint64 `json:"port,omitempty"`
	PortName string `json:"port_name,omitempty"`
	// Host is the remote host's outer MAC, "" for a local port.
	Host string `json:"host,omitempty"`
	// Age is the number of seconds since a frame from MAC was last seen.
	Age float64 `json:"age"`
}

// Status returns a snapshot of fences (by ID), ports (by ID) and the trunk.
func (s *Switch) Status() Status {
	st := Status{QueuedBytes: s.budget.used.Load(), MaxQueuedBytes: s.budget.max}
	fences := *s.fences.Load()
	for _, f := range fences {
		f.mu.RLock()
		macs := len(f.table)
		f.mu.RUnlock()
		st.Fences = append(st.Fences, FenceStatus{
			ID: f.id, Name: f.name, Ports: len(*f.ports.Load()), MACs: macs, MaxMACs: f.maxMACs,
			FramesIn: f.framesIn.Load(), BytesIn: f.bytesIn.Load(),
			FramesOut: f.framesOut.Load(), BytesOut: f.bytesOut.Load(),
			Floods: f.floods.Load(), Moves: f.moves.Load(), LearnRefused: f.learnRefused.Load(),
			HostLimitRefused: f.hostLimitRefused.Load(),
			Drops:            f.drops.snapshot(),
		})
	}
	slices.SortFunc(st.Fences, func(a, b FenceStatus) int { return cmp.Compare(a.ID, b.ID) })
	s.mu.Lock()
	for i := range st.Fences {
		st.Fences[i].MaxPorts = s.cfg.MaxFencePorts
		st.Fences[i].PortsRefused = s.portsRefused[st.Fences[i].ID]
	}
	ports := make([]*port, 0, len(s.ports))
	for _, p := range s.ports {
		ports = append(ports, p)
	}
	s.mu.Unlock()
	slices.SortFunc(ports, func(a, b *port) int { return cmp.Compare(a.id, b.id) })
	for _, p := range ports {
		queued, queuedBytes := p.q.len()
		ps := PortStatus{
			ID: p.id, Name: p.name, Fence: p.fence.id, MACs: int(p.macs.Load()), MaxMACs: int(p.maxMACs),
			QueueLen: p.q.maxLen, Queued: queued, QueueBytes: p.q.maxBytes, QueuedBytes: queuedBytes,
			RxFrames: p.rxFrames.Load(), RxBytes: p.rxBytes.Load(),
			TxFrames: p.txFrames.Load(), TxBytes: p.txBytes.Load(),
			Drops: p.drops.snapshot(),
		}
		if !p.pin.IsZero() {
			ps.PinMAC = p.pin.String()
		}
		st.Ports = append(st.Ports, ps)
	}
	if t := s.trunk.Load(); t != nil {
		queued, queuedBytes := t.q.len()
		st.Trunk = &TrunkStatus{
			RxFrames: t.rxFrames.Load(), RxBytes: t.rxBytes.Load(),
			TxFrames: t.txFrames.Load(), TxBytes: t.txBytes.Load(),
			QueueLen: t.q.maxLen, Queued: queued, QueueBytes: t.q.maxBytes, QueuedBytes: queuedBytes,
			Drops: t.drops.snapshot(),
		}
	}
	return st
}

// FDB returns the whole bridge table of a fence, sorted by MAC (nil for an
// unknown fence). It copies the table at once: the admin API uses
// [Switch.FDBPage].
func (s *Switch) FDB(fence uint32) []FDBEntry {
	f := s.fence(fence)
	if f == nil {
		return nil
	}
	now := s.nowNanos()
	type row struct {
		mac MAC
		e   *entry
	}
	f.mu.RLock()
	rows := make([]row, 0, len(f.table))
	for mac, e := range f.table {
		rows = append(rows, row{mac, e})
	}
	f.mu.RUnlock()
	slices.SortFunc(rows, func(a, b row) int { return bytes.Compare(a.mac[:], b.mac[:]) })
	out := make([]FDBEntry, 0, len(rows))
	for _, r := range rows {
		fe := FDBEntry{MAC: r.mac.String(), Age: max(0, time.Duration(now-r.e.seen.Load()).Seconds())}
		if r.e.port != nil {
			fe.Port, fe.PortName = r.e.port.id, r.e.port.name
		} else {
			fe.Host = r.e.host.String()
		}
		out = append(out, fe)
	}
	return out
}

// LocalMACs appends to dst the MACs of fence's table learned on local
// ports (not those of remote hosts), sorted, and returns it; nil for an
// unknown fence. Like FDBPage it walks the fence's per-port lists and
// holds the lock for at most tableChunk entries at a time, so the whole
// table (remote entries included) is neither copied nor locked at once.
func (s *Switch) LocalMACs(fence uint32, dst []MAC) []MAC {
	f := s.fence(fence)
	if f == nil {
		return dst
	}
	start := len(dst)
	f.readChunks(func(pl place) bool { return pl.port != nil }, func(chunk []MAC) { dst = append(dst, chunk...) })
	local := dst[start:]
	slices.SortFunc(local, func(a, b MAC) int { return cmp.Compare(macKey(a), macKey(b)) })
	return append(dst[:start], slices.Compact(local)...) // a MAC that moved during the walk
}

// FDBPage returns up to limit entries of a fence's bridge table, those
// with MACs above *after (from the first when after is nil), sorted by
// MAC, and whether entries above the last one remain. ok is false for an
// unknown fence.
//
// It never copies the whole table, and never holds the fence's lock for
// more than tableChunk entries: it walks the table place by place in
// chunks and keeps the limit lowest MACs above after in a heap. A page is
// therefore not one instant's table: an entry that moves while the page
// is taken may be missing from it. A listing of n entries in pages of
// limit costs n/limit walks of the table.
func (s *Switch) FDBPage(fence uint32, after *MAC, limit int) (entries []FDBEntry, more, ok bool) {
	f := s.fence(fence)
	if f == nil {
		return nil, false, false
	}
	limit = max(limit, 1)
	var lo uint64
	if after != nil {
		lo = macKey(*after)
	}
	h := fdbHeap{rows: make([]fdbRow, 0, min(limit, 1024))}
	f.readChunks(nil, func(chunk []MAC) {
		for _, mac := range chunk {
			k := macKey(mac)
			if after != nil && k <= lo {
				continue
			}
			if len(h.rows) == limit {
				more = true
				if k >= h.rows[0].key {
					continue
				}
			}
			e := f.table[mac]
			h.push(fdbRow{key: k, mac: mac, port: e.port, host: e.host, seen: e.seen.Load()}, limit)
		}
	})
	rows := h.rows
	slices.SortFunc(rows, func(a, b fdbRow) int { return cmp.Compare(a.key, b.key) })
	rows = slices.CompactFunc(rows, func(a, b fdbRow) bool { return a.key == b.key }) // moved during the walk
	now := s.nowNanos()
	entries = make([]FDBEntry, 0, len(rows))
	for _, r := range rows {
		fe := FDBEntry{MAC: r.mac.String(), Age: max(0, time.Duration(now-r.seen).Seconds())}
		if r.port != nil {
			fe.Port, fe.PortName = r.port.id, r.port.name
		} else {
			fe.Host = r.host.String()
		}
		entries = append(entries, fe)
	}
	return entries, more, true
}

// macKey orders MACs as their bytes do.
func macKey(m MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// fdbRow is one entry copied for a page.
type fdbRow struct {
	key  uint64
	mac  MAC
	port *port
	host MAC
	seen int64
}

// fdbHeap is a max-heap of rows by key: the page's candidates, the
// highest on top, to be replaced by a lower one once the page is full.
type fdbHeap struct{ rows []fdbRow }

// push adds r, or replaces the top when the heap holds limit rows (the
// caller checked that r is below the top).
func (h *fdbHeap) push(r fdbRow, limit int) {
	if len(h.rows) < limit {
		h.rows = append(h.rows, r)
		for i := len(h.rows) - 1; i > 0; {
			p := (i - 1) / 2
			if h.rows[p].key >= h.rows[i].key {
				break
			}
			h.rows[p], h.rows[i] = h.rows[i], h.rows[p]
			i = p
		}
		return
	}
	h.rows[0] = r
	for i, n := 0, len(h.rows); ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h.rows[c+1].key > h.rows[c].key {
			c++
		}
		if h.rows[i].key >= h.rows[c].key {
			break
		}
		h.rows[i], h.rows[c] = h.rows[c], h.rows[i]
		i = c
	}
}
