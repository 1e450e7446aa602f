package uplink

import (
	"bytes"
	"log/slog"
	"slices"
	"sync"
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

// gateways is the gateway arbitration of an Uplink: the configured gateway
// fences this host has yielded, and the hook calls queued for the control
// goroutine. The receive path (peer hellos) and the control goroutine
// (expiry, hellos out) change it; Status reads it.
type gateways struct {
	// Fixed by New:
	self       fence.OuterMAC
	configured func() []uint32 // Config.GatewayFences; nil: none
	log        *slog.Logger
	ctr        *counters

	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	yielded map[uint32]gwYield
	// +checklocks:mu
	events []gwEvent
}

// peerClaims is called when peer src's hello changed: every configured
// gateway fence it also claims is a conflict, resolved by the tie-break.
// It records yields and queues the hook calls for the control goroutine,
// and reports whether it queued one (then a hello should go out now).
func (g *gateways) peerClaims(src fence.OuterMAC, name string, claims []uint32, now time.Time) bool {
	if g.configured == nil || len(claims) == 0 {
		return false
	}
	queued := false
	for _, f := range sortedSet(g.configured) {
		if _, ok := slices.BinarySearch(claims, f); !ok {
			continue
		}
		peerWins := winsOver(src, g.self)
		g.mu.Lock()
		y, yielded := g.yielded[f]
		switch {
		case peerWins && !yielded:
			g.yielded[f] = gwYield{peer: src, name: name, since: now}
		case peerWins && winsOver(src, y.peer):
			// A host that wins over the one we yielded to: follow it.
			g.yielded[f] = gwYield{peer: src, name: name, since: y.since}
			g.mu.Unlock()
			continue
		case yielded:
			// We do not serve it (someone else wins over both of us).
			g.mu.Unlock()
			continue
		}
		if len(g.events) < maxGwEvents {
			g.events = append(g.events, gwEvent{fence: f, peer: src, yield: peerWins})
		}
		g.mu.Unlock()
		queued = true
		g.ctr.add(ctrGatewayConflict, 1)
		if peerWins {
			g.log.Error("two hosts serve the gateway of one fence", "fence", f, "other", src.String(), "other_name", name,
				"action", "yield: this host stops serving it (the other host's outer MAC is lower)")
		} else {
			g.log.Error("two hosts serve the gateway of one fence", "fence", f, "other", src.String(), "other_name", name,
				"action", "keep serving: this host's outer MAC is lower, the other host yields")
		}
	}
	return queued
}

// recheck is called by the control goroutine with the current host table:
// a yielded fence whose winner is gone (expired) or no longer claims it is
// resumed, unless another known peer that wins over this host claims it.
func (g *gateways) recheck(t *hostTable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for f, y := range g.yielded {
		if p := t.byMAC[y.peer]; p != nil && p.claims(f) {
			continue
		}
		var best *peer
		for _, p := range t.peers { // sorted by MAC: the first claim is the lowest
			if p.claims(f) && winsOver(p.mac, g.self) {
				best = p
				break
			}
		}
		if best != nil {
			g.yielded[f] = gwYield{peer: best.mac, name: best.name, since: y.since}
			continue
		}
		delete(g.yielded, f)
		if len(g.events) < maxGwEvents {
			g.events = append(g.events, gwEvent{fence: f, peer: y.peer, resume: true})
		}
		g.log.Warn("gateway resumed: no host that wins the tie-break claims the fence any more",
			"fence", f, "previous", y.peer.String(), "previous_name", y.name)
	}
}

// takeEvents returns the queued hook calls, in order, and forgets them.
func (g *gateways) takeEvents() []gwEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	ev := g.events
	g.events = nil
	return ev
}

// served returns the configured gateway fences minus the yielded ones:
// what the hellos announce.
func (g *gateways) served() []uint32 {
	gws := sortedSet(g.configured)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.yielded) == 0 {
		return gws
	}
	return slices.DeleteFunc(gws, func(f uint32) bool { _, ok := g.yielded[f]; return ok })
}

// yields returns the yielded fences, sorted, for Status.
func (g *gateways) yields() []GatewayYield {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GatewayYield, 0, len(g.yielded))
	for f, y := range g.yielded {
		out = append(out, GatewayYield{Fence: f, Peer: y.peer.String(), PeerName: y.name, Since: y.since})
	}
	slices.SortFunc(out, func(a, b GatewayYield) int { return int(int64(a.Fence) - int64(b.Fence)) })
	return out
}

// runGatewayEvents calls the hooks for the queued events, in order, from
// the control goroutine.
func (u *Uplink) runGatewayEvents() {
	for _, e := range u.gw.takeEvents() {
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
