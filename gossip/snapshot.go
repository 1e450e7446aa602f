package gossip

import (
	"net/netip"
	"time"
)

// State is a member's state as memberlist sees it.
type State uint8

// Member states.
const (
	StateAlive State = iota
	StateSuspect
	StateDead
	StateLeft
)

var stateNames = [...]string{"alive", "suspect", "dead", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// up reports whether a member in state s is used on the data path:
// suspect members are alive until memberlist declares them dead (SWIM).
func (s State) up() bool { return s == StateAlive || s == StateSuspect }

// Member is one host of the cluster as a [Snapshot] shows it. Its slices
// are shared and must not be modified.
type Member struct {
	// Name is the memberlist node name.
	Name string
	// Self is set on this host's own entry.
	Self bool
	// State is alive, suspect, dead or left.
	State State
	// Since is when the member entered State (as this host saw it).
	Since time.Time
	// Addr is the member's gossip address.
	Addr netip.AddrPort
	// Valid is false when the member's metadata did not decode or names
	// another installation: such a member is listed but gets no frames.
	Valid bool
	// Meta fields, when Valid.
	Installation uint8
	OuterMAC     [6]byte
	Instance     uint64
	DataAddrs    []netip.AddrPort
	// Fences are the fences the member has, gateways included, sorted.
	Fences []uint32
	// Gateways are the fences whose gateway the member claims, sorted.
	Gateways []uint32
}

// fenceMAC keys the MAC table: an inner MAC within one fence.
type fenceMAC struct {
	fence uint32
	mac   [6]byte
}

// Snapshot is an immutable view of the cluster: members, the hosts of
// each local fence, the remote MACs of each local fence and the gateway
// claims. Load one per batch with [Node.Snapshot]; its lookups take no
// lock and do not allocate. Returned slices are shared: do not modify
// them.
//
// The lookups use only builtin and net/netip types so that a consumer
// (the uplink) can describe them with an interface of its own.
type Snapshot struct {
	// Gen increases with every new snapshot.
	Gen uint64
	// Time is when it was built.
	Time time.Time

	self    [6]byte
	members []Member // sorted by name, self included
	byOuter map[[6]byte]int32
	hosts   map[uint32][][6]byte // local fence → remote up hosts, sorted
	macs    map[fenceMAC][6]byte // local fence, inner MAC → remote host
	claims  map[uint32][][6]byte // fence → up claimants, winner first
}

// Self returns this host's outer MAC.
func (s *Snapshot) Self() [6]byte { return s.self }

// Members returns every known member, sorted by name, this host
// included.
func (s *Snapshot) Members() []Member { return s.members }

// Member returns the member whose metadata carries outer MAC outer.
func (s *Snapshot) Member(outer [6]byte) (Member, bool) {
	i, ok := s.byOuter[outer]
	if !ok {
		return Member{}, false
	}
	return s.members[i], true
}

// Hosts returns the outer MACs of the other hosts, alive or suspect,
// that have fence id, sorted; nil for a fence this host does not have.
// Floods of the fence go to exactly these hosts.
func (s *Snapshot) Hosts(id uint32) [][6]byte { return s.hosts[id] }

// HasFence reports whether this host has fence id.
func (s *Snapshot) HasFence(id uint32) bool {
	_, ok := s.hosts[id]
	return ok
}

// Lookup returns the outer MAC of the host whose local ports hold inner
// MAC mac in fence id, for fences this host has; ok is false when no
// other host announces it.
func (s *Snapshot) Lookup(id uint32, mac [6]byte) (outer [6]byte, ok bool) {
	outer, ok = s.macs[fenceMAC{id, mac}]
	return outer, ok
}

// DataAddrs returns the data addresses of the host with outer MAC outer.
func (s *Snapshot) DataAddrs(outer [6]byte) []netip.AddrPort {
	i, ok := s.byOuter[outer]
	if !ok {
		return nil
	}
	return s.members[i].DataAddrs
}

// HostName returns the name of the member with outer MAC outer ("" when
// none has it).
func (s *Snapshot) HostName(outer [6]byte) string {
	i, ok := s.byOuter[outer]
	if !ok {
		return ""
	}
	return s.members[i].Name
}

// Gateway returns the host that serves fence id's gateway: of the hosts
// (alive or suspect, this one included) that claim it, the one with the
// lowest outer MAC, the rule of the hello protocol, so every host
// computes the same owner.
func (s *Snapshot) Gateway(id uint32) (owner [6]byte, ok bool) {
	c := s.claims[id]
	if len(c) == 0 {
		return owner, false
	}
	return c[0], true
}

// GatewayClaims returns every host claiming fence id's gateway, winner
// first; more than one is a conflict that the losers must resolve by
// detaching their gateway.
func (s *Snapshot) GatewayClaims(id uint32) [][6]byte { return s.claims[id] }

// MACCount returns how many remote MACs the snapshot holds.
func (s *Snapshot) MACCount() int { return len(s.macs) }
