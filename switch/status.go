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
	var st Status
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

// FDB returns the bridge table of a fence, sorted by MAC (nil for an
// unknown fence).
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
