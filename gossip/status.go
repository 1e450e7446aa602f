package gossip

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// counters are the Node's event counters.
type counters struct {
	bytesIn, bytesOut        atomic.Uint64
	updatesSent              atomic.Uint64
	updatesReceived          atomic.Uint64
	macsSent                 atomic.Uint64
	macsReceived             atomic.Uint64
	macsRefused              atomic.Uint64
	syncsSent, syncsReceived atomic.Uint64
	pulls                    atomic.Uint64
	notMember                atomic.Uint64
	stale                    atomic.Uint64
	badMsgs                  atomic.Uint64
	badMeta                  atomic.Uint64
	dupOuter                 atomic.Uint64
	inDropped, outDropped    atomic.Uint64
	sendErrors               atomic.Uint64
	joinAttempts             atomic.Uint64
	logSuppressed            atomic.Uint64
}

// Counters are a Node's counters since it started.
type Counters struct {
	// Members by state, now (not cumulative), this host included.
	Alive, Suspect, Dead, Left int
	// BytesIn and BytesOut count every gossip byte received and sent:
	// memberlist's probes, gossip and push/pull, and the fence state.
	BytesIn, BytesOut uint64
	// UpdatesSent and UpdatesReceived count fence-state updates (MAC
	// advertisements); MACsSent, MACsReceived and MACsRefused the MACs
	// they carried (refused: beyond MaxMACsPerHost or MaxMACs, invalid,
	// or from or for a host not in the fence).
	UpdatesSent, UpdatesReceived        uint64
	MACsSent, MACsReceived, MACsRefused uint64
	// SyncsSent and SyncsReceived count anti-entropy hashes; Pulls the
	// full sets asked for after a lost delta.
	SyncsSent, SyncsReceived, Pulls uint64
	// NotMember counts fence-state messages refused because this host or
	// the sender does not have the fence; Stale those about an older
	// version, a previous run or a host not in the fence.
	NotMember, Stale uint64
	// BadMessages and BadMeta count messages and metadata that did not
	// decode (or named another installation).
	BadMessages, BadMeta uint64
	// DuplicateOuterMAC counts members found claiming an outer MAC that
	// another member (or this host) has.
	DuplicateOuterMAC uint64
	// InDropped and OutDropped count messages dropped on a full queue;
	// SendErrors failed sends.
	InDropped, OutDropped, SendErrors uint64
	// JoinAttempts counts joins tried; LogSuppressed memberlist log lines
	// over the rate limit.
	JoinAttempts, LogSuppressed uint64
}

// Counters returns the node's counters.
func (n *Node) Counters() Counters {
	c := Counters{
		BytesIn:           n.ctr.bytesIn.Load(),
		BytesOut:          n.ctr.bytesOut.Load(),
		UpdatesSent:       n.ctr.updatesSent.Load(),
		UpdatesReceived:   n.ctr.updatesReceived.Load(),
		MACsSent:          n.ctr.macsSent.Load(),
		MACsReceived:      n.ctr.macsReceived.Load(),
		MACsRefused:       n.ctr.macsRefused.Load(),
		SyncsSent:         n.ctr.syncsSent.Load(),
		SyncsReceived:     n.ctr.syncsReceived.Load(),
		Pulls:             n.ctr.pulls.Load(),
		NotMember:         n.ctr.notMember.Load(),
		Stale:             n.ctr.stale.Load(),
		BadMessages:       n.ctr.badMsgs.Load(),
		BadMeta:           n.ctr.badMeta.Load(),
		DuplicateOuterMAC: n.ctr.dupOuter.Load(),
		InDropped:         n.ctr.inDropped.Load(),
		OutDropped:        n.ctr.outDropped.Load(),
		SendErrors:        n.ctr.sendErrors.Load(),
		JoinAttempts:      n.ctr.joinAttempts.Load(),
		LogSuppressed:     n.ctr.logSuppressed.Load(),
	}
	for _, m := range n.Snapshot().Members() {
		switch m.State {
		case StateAlive:
			c.Alive++
		case StateSuspect:
			c.Suspect++
		case StateDead:
			c.Dead++
		case StateLeft:
			c.Left++
		}
	}
	return c
}

// Status is the node's state for the admin API.
type Status struct {
	Name     string
	OuterMAC [6]byte
	Addr     netip.AddrPort
	Profile  Profile
	// Encrypted is set when gossip uses a secret key.
	Encrypted bool
	// Join is the configured join list.
	Join []string
	// Members are every known member, this host included, sorted by name.
	Members []Member
	// Fences are this host's fences.
	Fences []FenceStatus
	// DuplicateOuterMACs names members that claim an outer MAC another
	// member (or this host) has.
	DuplicateOuterMACs []string
	Counters           Counters
	// Snapshot is the generation and time of the view shown.
	SnapshotGen  uint64
	SnapshotTime time.Time
}

// FenceStatus is one local fence in Status.
type FenceStatus struct {
	ID uint32
	// Hosts are the names of the other hosts that have it.
	Hosts []string
	// LocalMACs are the MACs this host announces in it; RemoteMACs
	// counts those announced by the others.
	LocalMACs  [][6]byte
	RemoteMACs int
	// Gateway is the name of the host serving its gateway ("" none);
	// GatewayClaims names every claimant, winner first (more than one:
	// a conflict).
	Gateway       string
	GatewayClaims []string
}

// Status returns the node's state for the admin API.
func (n *Node) Status() Status {
	s := n.Snapshot()
	st := Status{
		Name:         n.cfg.Name,
		OuterMAC:     n.cfg.OuterMAC,
		Addr:         n.LocalAddr(),
		Profile:      n.cfg.Profile,
		Encrypted:    n.cfg.SecretKey != nil,
		Join:         slices.Clone(n.cfg.Join),
		Members:      slices.Clone(s.Members()),
		Counters:     n.Counters(),
		SnapshotGen:  s.Gen,
		SnapshotTime: s.Time,
	}
	name := func(o [6]byte) string {
		if m, ok := s.Member(o); ok {
			return m.Name
		}
		return macString(o)
	}
	remote := map[uint32]int{}
	for k := range s.macs {
		remote[k.fence]++
	}
	n.mu.Lock()
	for _, f := range n.fences {
		fs := FenceStatus{ID: f, LocalMACs: n.localMACs(f), RemoteMACs: remote[f]}
		for _, h := range s.Hosts(f) {
			fs.Hosts = append(fs.Hosts, name(h))
		}
		for _, c := range s.GatewayClaims(f) {
			fs.GatewayClaims = append(fs.GatewayClaims, name(c))
		}
		if len(fs.GatewayClaims) > 0 {
			fs.Gateway = fs.GatewayClaims[0]
		}
		st.Fences = append(st.Fences, fs)
	}
	for _, d := range n.dupOuter {
		st.DuplicateOuterMACs = append(st.DuplicateOuterMACs, d)
	}
	n.mu.Unlock()
	slices.Sort(st.DuplicateOuterMACs)
	return st
}
