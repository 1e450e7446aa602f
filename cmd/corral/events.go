package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/events"
	"github.com/corralnet/corral/stack/dhcp"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// The event stream (GET /v1/events, `corral events`): the switch, the
// gateways and the uplink do not import package events; cmd sets their
// callbacks (vswitch.Config.OnMACMove, stack.Config.OnLease) and wraps
// the OnPort of every listener and dialer, and watches the uplink's host
// table for peers coming and going and gateway conflicts.

// eventHooks publish a running corral's events on its bus.
type eventHooks struct {
	bus   *events.Bus
	names atomic.Pointer[map[uint32]string] // fence ID → name
}

func newEventHooks(fences []Fence) *eventHooks {
	h := &eventHooks{bus: events.New()}
	h.setFences(fences)
	return h
}

// setFences sets the fence names events carry (at start and reload).
func (h *eventHooks) setFences(fences []Fence) {
	m := make(map[uint32]string, len(fences))
	for _, f := range fences {
		m[f.ID] = f.Name
	}
	h.names.Store(&m)
}

func (h *eventHooks) fenceName(id uint32) string { return (*h.names.Load())[id] }

// macMove is vswitch.Config.OnMACMove. It runs with a fence's table
// locked: publishing never blocks, and without subscribers it returns
// before formatting anything.
func (h *eventHooks) macMove(m vswitch.MACMove) {
	if !h.bus.Active() {
		return
	}
	h.bus.Publish(events.Event{Kind: events.MACMove, Fence: m.Fence, FenceName: h.fenceName(m.Fence),
		MAC: m.MAC.String(), From: placeText(m.From), To: placeText(m.To)})
}

func placeText(p vswitch.Place) string {
	if p.Port != "" {
		return "port " + p.Port
	}
	return "host " + p.Host.String()
}

// lease returns fence f's stack.Config.OnLease.
func (h *eventHooks) lease(f Fence) func(dhcp.Lease) {
	return func(l dhcp.Lease) {
		h.bus.Publish(events.Event{Kind: events.LeaseGranted, Fence: f.ID, FenceName: f.Name,
			MAC: l.MAC, IP: l.IP.String(), Hostname: l.Hostname})
	}
}

// onPort wraps fence f's OnPort: a port that attaches and its detach are
// events.
func (h *eventHooks) onPort(f Fence, sw *vswitch.Switch) attach.OnPort {
	return func(p vswitch.Port, name string) (<-chan struct{}, error) {
		ph, err := sw.Attach(p, vswitch.PortConfig{Name: name, Fence: f.ID, MaxMACs: f.PortMaxMACs})
		if err != nil {
			return nil, err
		}
		h.portEvents(f, ph, name)
		return ph.Done(), nil
	}
}

// portEvents publishes ph's attach when the switch announces it (at once,
// or when a listener's connection settled as a client) and its detach when
// it happens; a liveness probe, never announced, publishes neither.
func (h *eventHooks) portEvents(f Fence, ph *vswitch.PortHandle, name string) {
	go func() {
		select {
		case <-ph.Announced():
		case <-ph.Done():
			select {
			case <-ph.Announced(): // announced just before it ended
			default:
				return
			}
		}
		h.bus.Publish(events.Event{Kind: events.PortAttach, Fence: f.ID, FenceName: f.Name, Port: name, PortID: ph.ID()})
		<-ph.Done()
		detail := ""
		if err := ph.Err(); err != nil {
			detail = err.Error()
		}
		h.bus.Publish(events.Event{Kind: events.PortDetach, Fence: f.ID, FenceName: f.Name, Port: name, PortID: ph.ID(), Detail: detail})
	}()
}

// peerPollInterval is how often the uplink's host table is read for
// peers coming and going while someone subscribes to events; with no
// subscriber it is read only every idlePollTicks intervals, to keep the
// last view from growing stale (a new subscriber then sees the changes of
// at most those few seconds before it came).
const (
	peerPollInterval = 250 * time.Millisecond
	idlePollTicks    = 20
)

// watchPeers publishes peer_up, peer_down and gateway_conflict events
// from the uplink's host table until ctx is done.
func (h *eventHooks) watchPeers(ctx context.Context, status func() uplink.Status, local func() []uint32) {
	known := map[string]uplink.PeerStatus{}
	conflicts := map[[2]string]bool{}
	t := time.NewTicker(peerPollInterval)
	defer t.Stop()
	for tick := 0; ; tick++ {
		if !h.bus.Active() && tick%idlePollTicks != 0 {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			continue
		}
		st := status()
		now := map[string]uplink.PeerStatus{}
		for _, p := range st.Peers {
			now[p.OuterMAC] = p
			if _, ok := known[p.OuterMAC]; !ok {
				h.bus.Publish(events.Event{Kind: events.PeerUp, Peer: p.OuterMAC, PeerName: p.Name, PeerAddr: p.Addr,
					Detail: "fences " + ids(p.Fences)})
			}
		}
		for _, mac := range slices.Sorted(maps.Keys(known)) {
			if _, ok := now[mac]; !ok {
				p := known[mac]
				h.bus.Publish(events.Event{Kind: events.PeerDown, Peer: p.OuterMAC, PeerName: p.Name, PeerAddr: p.Addr})
			}
		}
		known = now
		cur := map[[2]string]bool{}
		for _, c := range admin.GatewayConflicts(local(), st.Peers) {
			k := [2]string{fmt.Sprint(c.Fence), c.Peer}
			cur[k] = true
			if !conflicts[k] {
				h.bus.Publish(events.Event{Kind: events.GatewayConflict, Fence: c.Fence, FenceName: h.fenceName(c.Fence),
					Peer: c.Peer, PeerName: c.PeerName, PeerAddr: c.PeerAddr,
					Detail: "the gateway runs here and on the peer; configure it on one host only"})
			}
		}
		conflicts = cur
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startEvents is the step of runSwitch that watches the uplink.
func (rt *instance) startEvents() error {
	if u := rt.uplink; u != nil {
		rt.group.Go(func() error {
			rt.ev.watchPeers(rt.ctx, u.Status, rt.gatewayFences)
			return nil
		})
	}
	return nil
}

// `corral events`: the event stream as JSON lines.

func (c *cli) newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream a running switch's events as JSON lines",
		Long: `Stream the events of a running corral (GET /v1/events), one JSON object a
line, until interrupted: port_attach, port_detach, peer_up, peer_down,
lease_granted, mac_move, gateway_conflict, reload. --kind selects kinds.
A reader too slow for the stream loses events rather than slowing the
switch, and gets an events_lost line saying how many.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			kinds, _ := cmd.Flags().GetStringSlice("kind")
			count, _ := cmd.Flags().GetInt("count")
			ac, err := c.adminClient(cmd)
			if err != nil {
				return err
			}
			n := 0
			var mu sync.Mutex
			return ac.Events(cmd.Context(), kinds, func(e events.Event) error {
				mu.Lock()
				defer mu.Unlock()
				if err := admin.EncodeJSONLine(c.stdout, e); err != nil {
					return err
				}
				if n++; count > 0 && n >= count {
					return io.EOF
				}
				return nil
			})
		},
	}
	cmd.Flags().StringSlice("kind", nil, "only these kinds (comma-separated)")
	cmd.Flags().IntP("count", "c", 0, "exit after this many events (0: never)")
	return cmd
}
