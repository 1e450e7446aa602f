package main

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/stack"
	"github.com/corralnet/corral/stack/dhcp"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// gatewaySet holds the gateways of the configured fences. A gateway can
// stop and start at run time: when the uplink reports that a peer serves
// the same fence and wins the tie-break, this host yields (its gateway is
// detached and closed, its forwards removed); when that peer is gone, it
// resumes (a new gateway from the configuration, with the configured
// forwards; forwards added at run time are not restored).
type gatewaySet struct {
	sw   *vswitch.Switch
	fwd  *forward.Forwarder // the process's port forwards, into the gateways' fences
	log  *slog.Logger
	self *selfSockets // every gateway's IsSelf (self.go)

	cfgIDs atomic.Pointer[[]uint32] // fences with a configured gateway, sorted; replaced by a reload
	// onLease, when set, gives each gateway's stack.Config.OnLease
	// (events.go).
	onLease func(Fence) func(dhcp.Lease)
	// onAttach, when set, is told of each gateway port attached
	// (events.go).
	onAttach func(Fence, *vswitch.PortHandle, string)

	mu      sync.Mutex
	closed  bool
	fences  map[uint32]Fence // fences with a configured gateway
	serving map[uint32]*servedGateway
	yielded map[uint32]string // fence → the winner's outer MAC
	// added holds the forwards added at run time (admin API, `corral
	// forward add`), per fence, as running: they are not in the
	// configuration, so a gateway restarted by a reload or resumed after
	// a yield starts them again from here. Gone with the fence's gateway.
	added map[uint32]map[forward.Route]forward.Forward
}

type servedGateway struct {
	gw *stack.Gateway
	h  *vswitch.PortHandle
	// release ends the registration (self.go) of the gateway's SOCKS
	// endpoint; its forwards are registered by the Forwarder itself
	// (forward.Config.Reserve).
	release func()
}

// close closes the gateway and then drops its SOCKS endpoint's
// registration (self.go), once its socket is closed.
func (g *servedGateway) close() {
	g.gw.Close()
	g.release()
}

func newGatewaySet(sw *vswitch.Switch, fwd *forward.Forwarder, log *slog.Logger, fences []Fence, self *selfSockets) *gatewaySet {
	s := &gatewaySet{sw: sw, fwd: fwd, log: log, self: self, fences: map[uint32]Fence{},
		serving: map[uint32]*servedGateway{}, yielded: map[uint32]string{}, added: map[uint32]map[forward.Route]forward.Forward{}}
	var ids []uint32
	for _, f := range fences {
		if f.Gateway != nil {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	s.cfgIDs.Store(&ids)
	return s
}

// start starts fence f's gateway, attaches it to the switch like any
// port and starts its configured forwards.
func (s *gatewaySet) start(f Fence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fences[f.ID] = f
	s.setConfiguredLocked()
	return s.startLocked(f)
}

func (s *gatewaySet) startLocked(f Fence) error {
	sc := *f.Gateway
	sc.Logger = s.log.With("component", "gateway") // the gateway adds the fence
	sc.IsSelf = s.self.IsSelf
	sc.Reserve = s.self.add
	if s.onLease != nil {
		sc.OnLease = s.onLease(f)
	}
	gw, err := stack.New(sc)
	if err != nil {
		return err
	}
	// The SOCKS endpoint is a host socket of this process too: a fixed
	// address was registered before anything bound (registerConfiguredSelf);
	// this covers port 0.
	sg := &servedGateway{gw: gw, release: s.self.add("tcp", gw.SocksAddr())}
	h, err := s.sw.Attach(gw, vswitch.PortConfig{Name: "gateway:" + f.Name, Fence: f.ID})
	if err != nil {
		sg.close()
		return err
	}
	if s.onAttach != nil {
		s.onAttach(f, h, "gateway:"+f.Name)
	}
	if err := s.startForwards(f, gw); err != nil {
		h.Close()
		sg.close()
		return err
	}
	sg.h = h
	s.serving[f.ID] = sg
	s.restoreAddedLocked(f)
	return nil
}

// restoreAddedLocked starts again the forwards added to fence f at run
// time, after its configured ones. One that cannot start now (its target
// left the fence's new subnet, a configured forward took its route, its
// port was taken) is logged and forgotten. s.mu is held.
func (s *gatewaySet) restoreAddedLocked(f Fence) {
	fws := slices.SortedFunc(maps.Values(s.added[f.ID]), func(a, b forward.Forward) int {
		return strings.Compare(a.String(), b.String())
	})
	for _, fw := range fws {
		if _, err := s.fwd.Add(fw); err != nil {
			delete(s.added[f.ID], fw.Route())
			s.log.Warn("forward added at run time not restored with the gateway", "fence", f.Name, "forward", fw.String(), "err", err)
			continue
		}
		s.log.Info("forward added at run time restored with the gateway", "fence", f.Name, "forward", fw.String())
	}
}

// addForward starts fw, a forward added at run time, and keeps it for the
// gateway's restarts.
func (s *gatewaySet) addForward(fw forward.Forward) (forward.Forward, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	added, err := s.fwd.Add(fw)
	if err != nil {
		return added, err
	}
	if s.added[added.Fence] == nil {
		s.added[added.Fence] = map[forward.Route]forward.Forward{}
	}
	s.added[added.Fence][added.Route()] = added
	return added, nil
}

// removeForward stops fw (added at run time or configured) and forgets it.
func (s *gatewaySet) removeForward(fw forward.Forward) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fwd.Remove(fw); err != nil {
		return err
	}
	delete(s.added[fw.Fence], fw.Normalize().Route())
	return nil
}

// startForwards makes fence f reachable through gw for port forwards and
// starts its configured forwards; on failure none stays.
func (s *gatewaySet) startForwards(f Fence, gw *stack.Gateway) error {
	err := s.fwd.AttachFence(f.ID, forward.Fence{Name: f.Name, Dialer: gw, Prefixes: gw.Prefixes(),
		UDPIdleTimeout: f.Gateway.UDPIdleTimeout})
	if err != nil {
		return err
	}
	for _, fw := range f.Forwards {
		if _, err := s.fwd.Add(fw); err != nil {
			s.fwd.DetachFence(f.ID)
			return err
		}
	}
	return nil
}

// get returns the gateway serving fence id, nil when there is none (not
// configured, or yielded).
func (s *gatewaySet) get(id uint32) *stack.Gateway {
	if g := s.getServed(id); g != nil {
		return g.gw
	}
	return nil
}

// getServed is get with the gateway's registrations.
func (s *gatewaySet) getServed(id uint32) *servedGateway {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serving[id]
}

// yieldedTo returns the outer MAC of the peer fence id's gateway was
// yielded to ("" when not yielded).
func (s *gatewaySet) yieldedTo(id uint32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.yielded[id]
}

// configured lists the fences with a gateway in the configuration (the
// uplink's GatewayFences: it leaves yielded ones out of its hellos). It
// takes no lock: the uplink calls it from its reader while a hook may hold
// s.mu closing a gateway port.
func (s *gatewaySet) configured() []uint32 { return *s.cfgIDs.Load() }

// served lists the fences whose gateway runs here now, sorted.
func (s *gatewaySet) served() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint32, 0, len(s.serving))
	for id := range s.serving {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// conflict is uplink.Config.OnGatewayConflict: on yield, the gateway of
// fence id is detached and closed. The winner keeps serving (the uplink
// logged the conflict).
func (s *gatewaySet) conflict(id uint32, peer [6]byte, yield bool) {
	if !yield {
		return
	}
	mac := net.HardwareAddr(peer[:]).String()
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.serving[id]
	if s.closed || g == nil {
		return
	}
	delete(s.serving, id)
	s.yielded[id] = mac
	f := s.fences[id]
	s.fwd.DetachFence(id)
	if err := g.h.Close(); err != nil {
		s.log.Warn("close yielded gateway", "fence", f.Name, "err", err)
	}
	g.close()
	s.log.Error("gateway yielded: another host serves this fence's gateway and wins the tie-break (lower outer MAC); this host's gateway is detached; configure the gateway on one host only",
		"fence", f.Name, "fence_id", id, "peer", mac)
}

// resume is uplink.Config.OnGatewayResume: the fence's gateway starts
// again from the configuration.
func (s *gatewaySet) resume(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fences[id]
	if s.closed || !ok || s.serving[id] != nil {
		return
	}
	prev := s.yielded[id]
	delete(s.yielded, id)
	if err := s.startLocked(f); err != nil {
		s.log.Error("gateway resume failed", "fence", f.Name, "fence_id", id, "err", err)
		return
	}
	s.log.Warn("gateway resumed: no other host serves this fence's gateway any more", "fence", f.Name, "fence_id", id, "previous_peer", prev)
}

// close detaches and closes every gateway; later hooks do nothing.
func (s *gatewaySet) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	ids := make([]uint32, 0, len(s.serving))
	for id := range s.serving {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i := len(ids) - 1; i >= 0; i-- {
		g := s.serving[ids[i]]
		if err := g.h.Close(); err != nil {
			errs = append(errs, fmt.Errorf("gateway of fence %d: %w", ids[i], err))
		}
		g.close()
	}
	clear(s.serving)
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// startGateway starts fence f's gateway, attaches it to the switch like
// any port and starts its forwards.
func startGateway(rt *instance, f Fence) error { return rt.gateways.start(f) }

// startUplink starts the uplink and attaches it to the switch as its trunk.
func startUplink(rt *instance) error {
	uc := rt.cfg.Uplink
	uc.Logger = rt.log.With("component", "uplink")
	uc.LocalFences = rt.sw.LocalFences
	uc.GatewayFences = rt.gateways.configured
	uc.OnGatewayConflict = rt.gateways.conflict
	uc.OnGatewayResume = rt.gateways.resume
	uc.OnPeerDown = func(h [6]byte) { rt.sw.FlushHost(vswitch.MAC(h)) }
	if uc.Seal != nil {
		sc := *uc.Seal
		ctr, start, limit, err := openSealCounter(rt.cfg.StateDir, uc.Installation, uc.HostID, time.Now())
		if err != nil {
			return err
		}
		sc.Counter, sc.Limit, sc.Reserve = start, limit, ctr.reserve
		uc.Seal = &sc
	}
	u, err := uplink.New(uc)
	if err != nil {
		return err
	}
	if err := rt.sw.AttachTrunk(u); err != nil {
		u.Close()
		return err
	}
	rt.self.add("udp", u.LocalAddr()) // zero (nothing) on the raw uplink
	rt.uplink = u
	if rt.cfg.Gossip != nil {
		return startGossip(rt, u)
	}
	return nil
}

// gatewayFences lists the fences whose gateway runs here now.
func (rt *instance) gatewayFences() []uint32 { return rt.gateways.served() }
