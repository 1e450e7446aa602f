package uplink

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/corralnet/corral/fence"
)

// Directory is a control plane that replaces hellos (DESIGN.md 4.7:
// gossip): which hosts have each local fence, where they receive
// frames, which host holds an inner MAC, who claims a fence's gateway.
// cmd/corral wires *gossip.Snapshot, which satisfies it; the uplink
// imports nothing but fence. A Directory value is immutable: a change is
// a new value, handed over with [Uplink.SetDirectory]. Its lookups must
// not allocate (Lookup runs per flooded frame).
type Directory interface {
	// Hosts returns the outer MACs of the other hosts (alive or
	// suspect) that have fence id; nil for a fence this host lacks.
	Hosts(id uint32) [][6]byte
	// Lookup returns the host whose local ports hold inner MAC mac in
	// fence id.
	Lookup(id uint32, mac [6]byte) (outer [6]byte, ok bool)
	// DataAddrs returns where host outer receives frames (UDP).
	DataAddrs(outer [6]byte) []netip.AddrPort
	// GatewayClaims returns the hosts claiming fence id's gateway,
	// winner first.
	GatewayClaims(id uint32) [][6]byte
	// HostName returns host outer's name ("" unknown).
	HostName(outer [6]byte) string
}

// dirBox holds a Directory for an atomic pointer.
type dirBox struct{ d Directory }

// directory is the state of an uplink run by a Directory.
type directory struct {
	cur     atomic.Pointer[dirBox]
	changed chan struct{} // asks the control goroutine to apply cur
}

// SetDirectory hands the uplink the current view of a control plane
// that replaces hellos; only an uplink created with Config.Directory
// takes it (others ignore it). The host table follows the view: a host
// is a peer while the directory lists it in a fence this host has and
// names a data address (UDP); a host that leaves the view is removed and
// Config.OnPeerDown called. The last view stays in force until the next
// one (a partitioned control plane keeps the data plane going). It does
// not block; the control goroutine applies it.
func (u *Uplink) SetDirectory(d Directory) {
	if !u.cfg.Directory || d == nil {
		return
	}
	u.dir.cur.Store(&dirBox{d})
	select {
	case u.dir.changed <- struct{}{}:
	default:
	}
}

// loadDirectory returns the current view (nil: none yet, or hellos).
func (u *Uplink) loadDirectory() Directory {
	if b := u.dir.cur.Load(); b != nil {
		return b.d
	}
	return nil
}

// GatewaysServed returns the configured gateway fences this host serves
// (minus those yielded to a host that wins the tie-break): what it
// announces, in hellos or to the directory's control plane.
func (u *Uplink) GatewaysServed() []uint32 { return u.gw.served() }

// applyDirectory rebuilds the host table from the directory (control
// goroutine): peers are the hosts of the local fences, with their
// fences and gateway claims; peers gone are returned (their MACs must be
// flushed).
func (u *Uplink) applyDirectory(d Directory, now time.Time) {
	fences := sortedSet(u.cfg.LocalFences)
	fences = append(fences, sortedSet(u.cfg.GatewayFences)...)
	slices.Sort(fences)
	fences = slices.Compact(fences)
	type entry struct {
		fences, gateways []uint32
	}
	want := map[fence.OuterMAC]*entry{}
	for _, f := range fences {
		for _, h := range d.Hosts(f) {
			e := want[h]
			if e == nil {
				e = &entry{}
				want[h] = e
			}
			e.fences = append(e.fences, f)
		}
		for _, h := range d.GatewayClaims(f) {
			if e := want[h]; e != nil {
				e.gateways = append(e.gateways, f)
			}
		}
	}
	var gone, changedGW []*peer
	h := &u.hosts
	h.mu.Lock()
	old := h.cur.Load()
	m := make(map[fence.OuterMAC]*peer, len(want))
	for mac, e := range want {
		if len(m) >= maxPeers {
			u.ctr.add(ctrDropTableFull, 1)
			break
		}
		var ap netip.AddrPort
		if u.link.udp != nil {
			for _, a := range d.DataAddrs(mac) {
				a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
				if a.Port() != 0 && (u.link.udp.v6 || a.Addr().Is4()) {
					ap = a
					break
				}
			}
			if !ap.IsValid() {
				continue // nowhere to send it frames
			}
		}
		p := &peer{mac: mac, ap: ap, helloKnown: true, name: d.HostName(mac), fences: e.fences,
			gateways: e.gateways, lastHello: now, seen: new(atomic.Int64)}
		if q := old.byMAC[mac]; q != nil {
			p.seen, p.instance, p.hostID = q.seen, q.instance, q.hostID
			if !slices.Equal(q.gateways, p.gateways) {
				changedGW = append(changedGW, p)
			}
		} else {
			p.seen.Store(now.UnixNano())
			if len(p.gateways) > 0 {
				changedGW = append(changedGW, p)
			}
			u.plog.Info("peer from the directory", "peer", mac.String(), "name", p.name, "addr", ap.String(),
				"fences", p.fences, "gateways", p.gateways)
		}
		if ap.IsValid() {
			p.ua = h.udpAddr(ap)
		}
		m[mac] = p
	}
	for mac, q := range old.byMAC {
		if m[mac] == nil {
			gone = append(gone, q)
		}
	}
	h.publish(m)
	h.mu.Unlock()
	for _, p := range changedGW {
		u.gw.peerClaims(p.mac, p.name, p.gateways, now)
	}
	for _, p := range gone {
		u.ctr.add(ctrPeersExpired, 1)
		u.plog.Info("peer withdrawn by the directory", "peer", p.mac.String(), "name", p.name, "addr", p.ap.String())
		if u.cfg.OnPeerDown != nil {
			u.cfg.OnPeerDown(p.mac)
		}
	}
}
