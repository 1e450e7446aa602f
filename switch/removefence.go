package vswitch

import "fmt"

// RemoveFence removes fence id: no port attaches to it any more, its
// ports are detached and closed (RemoveFence waits for them), and trunk
// frames of it are dropped as of an unknown fence. Other fences are not
// touched (a reload removes a fence this way).
func (s *Switch) RemoveFence(id uint32) error {
	s.mu.Lock()
	old := *s.fences.Load()
	f := old[id]
	if f == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrUnknownFence, id)
	}
	m := make(map[uint32]*fence, len(old))
	for k, v := range old {
		if k != id {
			m[k] = v
		}
	}
	s.fences.Store(&m)
	ports := *f.ports.Load()
	s.mu.Unlock()
	for _, p := range ports {
		p.fail(nil)
		<-p.done
	}
	return nil
}
