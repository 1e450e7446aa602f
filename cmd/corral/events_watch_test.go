package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralnet/corral/events"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// watchPeers turns changes of the uplink's host table into peer_up,
// peer_down and gateway_conflict events for its subscribers, and reads
// the table only now and then while nobody subscribes.
func TestWatchPeers(t *testing.T) {
	h := newEventHooks([]Fence{{FenceConfig: vswitch.FenceConfig{ID: 7, Name: "lab"}}})
	var (
		mu    sync.Mutex
		peers []uplink.PeerStatus
		calls atomic.Int64
	)
	set := func(p ...uplink.PeerStatus) {
		mu.Lock()
		peers = p
		mu.Unlock()
	}
	status := func() uplink.Status {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		return uplink.Status{Peers: append([]uplink.PeerStatus(nil), peers...)}
	}
	a := uplink.PeerStatus{OuterMAC: "02:00:00:00:00:0a", Name: "a", Fences: []uint32{7}}
	b := uplink.PeerStatus{OuterMAC: "02:00:00:00:00:0b", Name: "b", Fences: []uint32{7}, Gateways: []uint32{7}}
	set(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.watchPeers(ctx, status, func() []uint32 { return []uint32{7} }); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Nobody subscribes: the table is read once, then rarely.
	waitFor(t, "the first read", func() bool { return calls.Load() >= 1 })
	time.Sleep(4 * peerPollInterval) // a span to count reads in, not a wait for a condition
	if n := calls.Load(); n > 2 {
		t.Errorf("%d reads of the host table in %v without a subscriber", n, 4*peerPollInterval)
	}

	sub := h.bus.Subscribe(16)
	t.Cleanup(sub.Close)
	next := func(what string) events.Event {
		t.Helper()
		select {
		case e := <-sub.C:
			return e
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s event", what)
		}
		panic("unreachable")
	}
	set(a, b)
	if e := next("peer_up"); e.Kind != events.PeerUp || e.PeerName != "b" || e.Detail != "fences 7" {
		t.Fatalf("got %+v, want b's peer_up", e)
	}
	if e := next("gateway_conflict"); e.Kind != events.GatewayConflict || e.PeerName != "b" || e.FenceName != "lab" {
		t.Fatalf("got %+v, want the gateway conflict with b in lab", e)
	}
	set(b)
	if e := next("peer_down"); e.Kind != events.PeerDown || e.PeerName != "a" {
		t.Fatalf("got %+v, want a's peer_down", e)
	}
	calls.Store(0)
	waitFor(t, "reads every interval with a subscriber", func() bool { return calls.Load() >= 3 })
	select {
	case e := <-sub.C:
		t.Fatalf("an event without a change: %+v", e)
	default:
	}
}
