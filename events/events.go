// Package events is corral's event bus: what happens to a running switch
// (ports attach and detach, peers come and go, leases are granted, MACs
// move, gateways conflict) as [Event] values, published by cmd from the
// callbacks of the switch, the uplink and the gateways (which do not
// import this package) and read by subscribers such as the admin API's
// GET /v1/events.
//
// Publishing never blocks and never waits for a subscriber: each
// subscriber has a bounded buffer, and an event that does not fit is
// dropped for that subscriber only, and counted ([Sub.Dropped]). Events
// are rare next to frames; Publish with no subscriber costs an atomic
// load.
package events

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kind names what happened.
type Kind string

// The kinds of events.
const (
	PortAttach      Kind = "port_attach"
	PortDetach      Kind = "port_detach"
	PeerUp          Kind = "peer_up"
	PeerDown        Kind = "peer_down"
	LeaseGranted    Kind = "lease_granted"
	MACMove         Kind = "mac_move"
	GatewayConflict Kind = "gateway_conflict"
	Reload          Kind = "reload"
)

// Event is one thing that happened. Fields that do not apply to its kind
// are empty and left out of its JSON.
type Event struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// Fence and FenceName name the fence, when the event has one.
	Fence     uint32 `json:"fence,omitempty"`
	FenceName string `json:"fence_name,omitempty"`
	// Port is a port's name (attach, detach, a MAC's new port).
	Port   string `json:"port,omitempty"`
	PortID uint64 `json:"port_id,omitempty"`
	// MAC is a guest's MAC (lease, move).
	MAC string `json:"mac,omitempty"`
	// IP and Hostname are a lease's.
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Peer is a remote host's outer MAC, PeerName its host name and
	// PeerAddr its address, when known.
	Peer     string `json:"peer,omitempty"`
	PeerName string `json:"peer_name,omitempty"`
	PeerAddr string `json:"peer_addr,omitempty"`
	// From and To are where a moved MAC was and is ("port NAME", "host
	// NAME-OR-OUTER-MAC").
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Detail says more (a detach's error, a reload's changes).
	Detail string `json:"detail,omitempty"`
}

// DefaultBuffer is a subscriber's buffer when Subscribe is given 0.
const DefaultBuffer = 256

// Bus delivers published events to its subscribers. The zero Bus is not
// usable; use [New]. Its methods are safe for concurrent use.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Sub]struct{} // guarded by mu
	n    atomic.Int32      // len(subs)
	now  func() time.Time

	published atomic.Uint64
}

// New returns a bus without subscribers.
func New() *Bus { return &Bus{subs: map[*Sub]struct{}{}, now: time.Now} }

// Active reports whether anyone subscribes: a publisher may skip building
// an event when not.
func (b *Bus) Active() bool { return b != nil && b.n.Load() > 0 }

// Publish delivers e to every subscriber that has room, stamping its Time
// when zero. It never blocks. A nil bus discards e.
func (b *Bus) Publish(e Event) {
	if !b.Active() {
		return
	}
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	b.published.Add(1)
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Published counts the events published while someone subscribed.
func (b *Bus) Published() uint64 { return b.published.Load() }

// Subscribers is the number of subscribers.
func (b *Bus) Subscribers() int { return int(b.n.Load()) }

// Sub is one subscription: read its events from C until Close.
type Sub struct {
	b       *Bus
	ch      chan Event
	C       <-chan Event
	dropped atomic.Uint64
	once    sync.Once
}

// Subscribe returns a subscription with a buffer of buf events (0:
// DefaultBuffer). Events published while the buffer is full are dropped
// for it and counted.
func (b *Bus) Subscribe(buf int) *Sub {
	if buf <= 0 {
		buf = DefaultBuffer
	}
	s := &Sub{b: b, ch: make(chan Event, buf)}
	s.C = s.ch
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.n.Store(int32(len(b.subs)))
	b.mu.Unlock()
	return s
}

// Dropped counts the events this subscriber lost to a full buffer.
func (s *Sub) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription; C is not closed (events still in it may be
// read).
func (s *Sub) Close() {
	s.once.Do(func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.n.Store(int32(len(s.b.subs)))
		s.b.mu.Unlock()
	})
}
