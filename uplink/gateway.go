package uplink

import (
	"bytes"
	"slices"
	"time"

	"github.com/corralnet/corral/fence"
)

// Gateway conflicts (DESIGN.md 6: "two hosts serving one fence is detected
// by hellos and refused"). See the package doc for the rule.

// GatewayYield is a fence whose gateway this host is configured to serve
// but has yielded to a peer that serves it too and wins the tie-break.
type GatewayYield struct {
	Fence    uint32    `json:"fence"`
	Peer     string    `json:"peer"` // the winner's outer MAC
	PeerName string    `json:"peer_name"`
	Since    time.Time `json:"since"`
}

// gwYield is the state of one yielded fence.
type gwYield struct {
	peer  fence.OuterMAC
	name  string
	since time.Time
}

// gwEvent is a pending call of OnGatewayConflict (resume false) or
// OnGatewayResume (resume true).
type gwEvent struct {
	fence  uint32
	peer   fence.OuterMAC
	yield  bool
	resume bool
}

// maxGwEvents bounds the pending hook calls (a hello names at most
// fence.MaxHelloGateways gateways; events are drained every poll).
const maxGwEvents = 4096

// winsOver reports whether outer MAC a wins the gateway tie-break over b:
// the lower MAC (byte-wise; within one OUI and installation, the lower
// host ID) keeps serving.
func winsOver(a, b fence.OuterMAC) bool { return bytes.Compare(a[:], b[:]) < 0 }

// checkGatewayClaims is called from rxHello when peer src's hello changed:
// every configured gateway fence it also claims is a conflict, resolved by
// the tie-break. It records yields and queues the hook calls for the
// control goroutine.
func (u *Uplink) checkGatewayClaims(src fence.OuterMAC, name string, gateways []uint32, now time.Time) {
	if u.cfg.GatewayFences == nil || len(gateways) == 0 {
		return
	}
	queued := false
	for _, g := range u.hook(u.cfg.GatewayFences) {
		if _, ok := slices.BinarySearch(gateways, g); !ok {
			continue
		}
		peerWins := winsOver(src, u.self)
		u.gw.Lock()
		y, yielded := u.gw.yielded[g]
		switch {
		case peerWins && !yielded:
			u.gw.yielded[g] = gwYield{peer: src, name: name, since: now}
		case peerWins && winsOver(src, y.peer):
			// A host that wins over the one we yielded to: follow it.
			u.gw.yielded[g] = gwYield{peer: src, name: name, since: y.since}
			u.gw.Unlock()
			continue
		case yielded:
			// We do not serve it (someone else wins over both of us).
			u.gw.Unlock()
			continue
		}
		if len(u.gw.events) < maxGwEvents {
			u.gw.events = append(u.gw.events, gwEvent{fence: g, peer: src, yield: peerWins})
		}
		u.gw.Unlock()
		queued = true
		u.ctr.add(ctrGatewayConflict, 1)
		if peerWins {
			u.log.Error("two hosts serve the gateway of one fence", "fence", g, "other", src.String(), "other_name", name,
				"action", "yield: this host stops serving it (the other host's outer MAC is lower)")
		} else {
			u.log.Error("two hosts serve the gateway of one fence", "fence", g, "other", src.String(), "other_name", name,
				"action", "keep serving: this host's outer MAC is lower, the other host yields")
		}
	}
	if queued {
		u.kickHello()
	}
}

// checkYields is called by the control goroutine: a yielded fence whose
// winner is gone (expired) or no longer claims it is resumed, unless
// another known peer that wins over this host claims it.
func (u *Uplink) checkYields(t *hostTable) {
	u.gw.Lock()
	defer u.gw.Unlock()
	for g, y := range u.gw.yielded {
		if p := t.byMAC[y.peer]; p != nil && p.claims(g) {
			continue
		}
		var best *peer
		for _, p := range t.peers { // sorted by MAC: the first claim is the lowest
			if p.claims(g) && winsOver(p.mac, u.self) {
				best = p
				break
			}
		}
		if best != nil {
			u.gw.yielded[g] = gwYield{peer: best.mac, name: best.name, since: y.since}
			continue
		}
		delete(u.gw.yielded, g)
		if len(u.gw.events) < maxGwEvents {
			u.gw.events = append(u.gw.events, gwEvent{fence: g, peer: y.peer, resume: true})
		}
		u.log.Warn("gateway resumed: no host that wins the tie-break claims the fence any more",
			"fence", g, "previous", y.peer.String(), "previous_name", y.name)
	}
}

// runGatewayEvents calls the hooks for the queued events, in order, from
// the control goroutine.
func (u *Uplink) runGatewayEvents() {
	u.gw.Lock()
	ev := u.gw.events
	u.gw.events = nil
	u.gw.Unlock()
	for _, e := range ev {
		switch {
		case e.resume:
			if u.cfg.OnGatewayResume != nil {
				u.cfg.OnGatewayResume(e.fence)
			}
		case u.cfg.OnGatewayConflict != nil:
			u.cfg.OnGatewayConflict(e.fence, e.peer, e.yield)
		}
	}
}

// servedGateways returns the configured gateway fences minus the yielded
// ones: what the hellos announce.
func (u *Uplink) servedGateways() []uint32 {
	gws := u.hook(u.cfg.GatewayFences)
	u.gw.Lock()
	defer u.gw.Unlock()
	if len(u.gw.yielded) == 0 {
		return gws
	}
	return slices.DeleteFunc(gws, func(g uint32) bool { _, ok := u.gw.yielded[g]; return ok })
}

// gatewayYields returns the yielded fences, sorted, for Status.
func (u *Uplink) gatewayYields() []GatewayYield {
	u.gw.Lock()
	defer u.gw.Unlock()
	out := make([]GatewayYield, 0, len(u.gw.yielded))
	for g, y := range u.gw.yielded {
		out = append(out, GatewayYield{Fence: g, Peer: y.peer.String(), PeerName: y.name, Since: y.since})
	}
	slices.SortFunc(out, func(a, b GatewayYield) int { return int(int64(a.Fence) - int64(b.Fence)) })
	return out
}

// claims reports whether p's hello names fenceID as a gateway it serves.
func (p *peer) claims(fenceID uint32) bool {
	if !p.helloKnown {
		return false
	}
	_, ok := slices.BinarySearch(p.gateways, fenceID)
	return ok
}
