package uplink

import (
	"net"
	"net/netip"
	"slices"
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
	raw bool           // learned on the raw uplink
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

// rebuild returns a snapshot of peers (which it takes over) with statics.
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
