package main

import (
	"slices"

	"github.com/corralnet/corral/attach"
)

// What reload (reload.go) needs of the attach points and the gateways.

// addFence adds fence id to the attach points.
func (p *attachPoints) addFence(id uint32, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fences = append(p.fences, &attachFence{id: id, name: name})
}

// remove drops fence id.
func (p *attachPoints) remove(id uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fences = slices.DeleteFunc(p.fences, func(f *attachFence) bool { return f.id == id })
}

// removeAddr drops listened address a of fence id.
func (p *attachPoints) removeAddr(id uint32, a attach.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fences {
		if f.id == id {
			f.addrs = slices.DeleteFunc(f.addrs, func(x attachPoint) bool { return !x.dial && x.addr == a })
		}
	}
}

// removeDials drops the dialed addresses of fence id.
func (p *attachPoints) removeDials(id uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fences {
		if f.id == id {
			f.addrs = slices.DeleteFunc(f.addrs, func(x attachPoint) bool { return x.dial })
		}
	}
}

// stop stops fence id's gateway (its forwards go with it) and forgets
// its configuration and its forwards added at run time: a reload removed
// the gateway or its fence.
func (s *gatewaySet) stop(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(id)
	delete(s.added, id)
}

// restart stops fence f's gateway and starts it with f's configuration
// (a reload changed its settings); its forwards added at run time start
// again with it.
func (s *gatewaySet) restart(f Fence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(f.ID)
	s.fences[f.ID] = f
	s.setConfiguredLocked()
	return s.startLocked(f)
}

func (s *gatewaySet) stopLocked(id uint32) {
	if g := s.serving[id]; g != nil {
		g.h.Close()
		s.fwd.DetachFence(id)
		g.close()
		delete(s.serving, id)
	}
	delete(s.fences, id)
	delete(s.yielded, id)
	s.setConfiguredLocked()
}

// setFence records fence f's configuration for a later resume (a reload
// changed its forwards), when it has a gateway.
func (s *gatewaySet) setFence(f Fence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Gateway != nil {
		if _, ok := s.fences[f.ID]; ok {
			s.fences[f.ID] = f
		}
	}
}

// setConfiguredLocked recomputes the configured gateways from s.fences
// and the served ones. s.mu is held.
func (s *gatewaySet) setConfiguredLocked() {
	ids := []uint32{}
	for id := range s.fences {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.cfgIDs.Store(&ids)
}

// fence returns the configuration of fence id, when it has a gateway.
func (s *gatewaySet) fence(id uint32) (Fence, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fences[id]
	return f, ok
}

// configuredFences returns the fences with a gateway, by ID.
func (s *gatewaySet) configuredFences() []Fence {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fence, 0, len(s.fences))
	for _, f := range s.fences {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Fence) int { return int(a.ID) - int(b.ID) })
	return out
}
