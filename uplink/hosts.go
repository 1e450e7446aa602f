package uplink

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralnet/corral/fence"
)

// maxPeers bounds the host table: frames from more distinct outer MACs than
// this are still delivered, but their hosts are not remembered.
const maxPeers = 4096

// peer is one remote host in the host table. A *peer is immutable once
// published in a hostTable, except seen; an update publishes a copy.
type peer struct {
	mac fence.OuterMAC
	ap  netip.AddrPort // UDP address (unmapped); zero on raw
	ua  *net.UDPAddr   // ap in the socket's family, for sends

	helloKnown bool
	name       string
	hostID     uint16
	instance   uint64
	fences     []uint32 // sorted
	gateways   []uint32 // sorted
	lastHello  time.Time

	// seen is the last time (UnixNano) a valid frame or hello came from the
	// peer; shared by all copies of the peer.
	seen *atomic.Int64
}

// wants reports whether floods of fenceID go to p: when its hello is known
// and names the fence, or when no hello is known yet (DESIGN.md 4.5).
func (p *peer) wants(fenceID uint32) bool {
	if !p.helloKnown {
		return true
	}
	_, ok := slices.BinarySearch(p.fences, fenceID)
	return ok
}

// claims reports whether p's hello names fenceID as a gateway it serves.
func (p *peer) claims(fenceID uint32) bool {
	if !p.helloKnown {
		return false
	}
	_, ok := slices.BinarySearch(p.gateways, fenceID)
	return ok
}

// staticPeer is a configured UDP peer address.
type staticPeer struct {
	ap netip.AddrPort
	ua *net.UDPAddr
}

// hostTable is an immutable snapshot of the host table, swapped atomically.
type hostTable struct {
	byMAC map[fence.OuterMAC]*peer
	peers []*peer // sorted by MAC
	// unmatched are the static peers whose address no known peer has: they
	// receive hellos and every flood.
	unmatched []staticPeer
}

// rebuildTable returns a snapshot of peers (which it takes over) with statics.
func rebuildTable(byMAC map[fence.OuterMAC]*peer, statics []staticPeer) *hostTable {
	t := &hostTable{byMAC: byMAC, peers: make([]*peer, 0, len(byMAC))}
	for _, p := range byMAC {
		t.peers = append(t.peers, p)
	}
	slices.SortFunc(t.peers, func(a, b *peer) int {
		for i := range a.mac {
			if a.mac[i] != b.mac[i] {
				return int(a.mac[i]) - int(b.mac[i])
			}
		}
		return 0
	})
	for _, s := range statics {
		matched := false
		for _, p := range t.peers {
			if p.ap == s.ap {
				matched = true
				break
			}
		}
		if !matched {
			t.unmatched = append(t.unmatched, s)
		}
	}
	return t
}

// cloneMap copies the table's map for a copy-on-write update.
func (t *hostTable) cloneMap() map[fence.OuterMAC]*peer {
	m := make(map[fence.OuterMAC]*peer, len(t.byMAC)+1)
	for k, v := range t.byMAC {
		m[k] = v
	}
	return m
}

// hosts is the host table of an Uplink: the snapshot that the receive and
// send paths load once per batch, and the lock that serializes its
// copy-on-write updates (learning, hellos, expiry). It neither logs nor
// counts: its methods report what changed and the Uplink says so.
type hosts struct {
	cur atomic.Pointer[hostTable]

	mu sync.Mutex // serializes updates of cur

	// Fixed before the first update:
	statics []staticPeer                      // configured UDP peers
	udpAddr func(netip.AddrPort) *net.UDPAddr // nil: no UDP socket (raw uplink)
}

// init publishes the empty table.
func (h *hosts) init(statics []staticPeer, udpAddr func(netip.AddrPort) *net.UDPAddr) {
	h.statics, h.udpAddr = statics, udpAddr
	h.cur.Store(rebuildTable(map[fence.OuterMAC]*peer{}, statics))
}

// load returns the current snapshot.
func (h *hosts) load() *hostTable { return h.cur.Load() }

// publish replaces the snapshot with m (h.mu held).
func (h *hosts) publish(m map[fence.OuterMAC]*peer) { h.cur.Store(rebuildTable(m, h.statics)) }

// learnResult is what [hosts.learn] did.
type learnResult int

const (
	learnRefreshed learnResult = iota // known at this address: seen updated
	learnNew                          // a new peer
	learnMoved                        // a known peer at a new address
	learnFull                         // a new peer, not added: the table is full
)

// learn records (or moves) the peer src at address from, seen at now
// (UnixNano). For learnMoved it also returns the old address.
func (h *hosts) learn(src fence.OuterMAC, from netip.AddrPort, now int64) (learnResult, netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.cur.Load()
	old := t.byMAC[src]
	if old != nil && old.ap == from {
		old.seen.Store(now)
		return learnRefreshed, netip.AddrPort{}
	}
	if old == nil && len(t.byMAC) >= maxPeers {
		return learnFull, netip.AddrPort{}
	}
	res, oldAP := learnNew, netip.AddrPort{}
	var p *peer
	if old != nil {
		cp := *old
		p = &cp
		res, oldAP = learnMoved, old.ap
	} else {
		p = &peer{mac: src, seen: new(atomic.Int64)}
	}
	p.ap = from
	if h.udpAddr != nil {
		p.ua = h.udpAddr(from)
	}
	p.seen.Store(now)
	m := t.cloneMap()
	m[src] = p
	h.publish(m)
	return res, oldAP
}

// hello applies the hello h of the known peer src, received at now. It
// returns the updated peer (nil when src is not in the table: it was full),
// whether the peer restarted (a new instance) and whether what it announces
// changed.
func (h *hosts) hello(src fence.OuterMAC, hl *fence.Hello, now time.Time) (p *peer, restarted, changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.cur.Load()
	old := t.byMAC[src]
	if old == nil {
		return nil, false, false
	}
	restarted = old.helloKnown && old.instance != hl.Instance
	changed = restarted || !old.helloKnown || old.name != hl.Name || !slices.Equal(old.fences, hl.Fences) ||
		!slices.Equal(old.gateways, hl.Gateways)
	cp := *old
	p = &cp
	p.helloKnown = true
	p.hostID = hl.HostID
	p.instance = hl.Instance
	p.lastHello = now
	if changed {
		p.name = hl.Name
		p.fences = slices.Clone(hl.Fences)
		slices.Sort(p.fences)
		p.gateways = slices.Clone(hl.Gateways)
		slices.Sort(p.gateways)
	}
	m := t.cloneMap()
	m[src] = p
	h.publish(m)
	return p, restarted, changed
}

// expire removes the peers last seen before limit (UnixNano) and returns
// them. It takes the lock only when there is one.
func (h *hosts) expire(limit int64) []*peer {
	var dead []fence.OuterMAC
	for _, p := range h.cur.Load().peers {
		if p.seen.Load() < limit {
			dead = append(dead, p.mac)
		}
	}
	if len(dead) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.cur.Load().cloneMap()
	var gone []*peer
	for _, mac := range dead {
		if p := m[mac]; p != nil && p.seen.Load() < limit {
			delete(m, mac)
			gone = append(gone, p)
		}
	}
	h.publish(m)
	return gone
}
