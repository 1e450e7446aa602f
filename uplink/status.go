package uplink

import (
	"github.com/corralnet/corral/fence"
	"slices"
	"time"
)

// Status is a JSON-friendly snapshot of an uplink, for the admin API.
type Status struct {
	Transport     string            `json:"transport"` // "udp" or "raw"
	Addr          string            `json:"addr"`      // bound UDP address or interface
	OuterMAC      string            `json:"outer_mac"`
	HostID        uint16            `json:"host_id"`
	Installation  uint8             `json:"installation"`
	Name          string            `json:"name"`
	MTU           int               `json:"mtu"`
	MaxEncapLen   int               `json:"max_encap_len"`
	HelloInterval string            `json:"hello_interval"`
	Group         string            `json:"group,omitempty"`
	GSO           bool              `json:"gso"` // UDP segmentation offload in use
	GRO           bool              `json:"gro"` // UDP receive offload in use
	StaticPeers   []string          `json:"static_peers,omitempty"`
	Peers         []PeerStatus      `json:"peers"`
	Counters      map[string]uint64 `json:"counters"`
	// RxByFence counts inbound frames delivered to the switch, per fence.
	RxByFence map[uint32]uint64 `json:"rx_by_fence"`
	// Reassembly are the fragment reassembler's counters.
	Reassembly fence.ReassemblyStats `json:"reassembly"`
	// GatewayYields are the configured gateway fences this host does not
	// serve because a peer that wins the tie-break serves them. Never nil.
	GatewayYields []GatewayYield `json:"gateway_yields"`
	// Seal is the sealed uplink's state (keys by ID, never key bytes);
	// nil when the uplink is not sealed.
	Seal *SealStatus `json:"seal,omitempty"`
	// Accept says which sources an unsealed UDP uplink accepts: "peers"
	// (the configured ones), "any" (LearnPeers, or a group: any address
	// that echoed a cookie), "directory" (the members' announced
	// addresses, Config.Directory); "sealed" (any source whose frames
	// open) or "segment" (raw).
	Accept string `json:"accept"`
}

// PeerStatus is one remote host of the host table.
type PeerStatus struct {
	OuterMAC   string    `json:"outer_mac"`
	Addr       string    `json:"addr,omitempty"` // UDP address; empty on raw
	Name       string    `json:"name"`
	HostID     uint16    `json:"host_id"`
	HelloKnown bool      `json:"hello_known"`
	Fences     []uint32  `json:"fences"`
	Gateways   []uint32  `json:"gateways"`
	LastHello  time.Time `json:"last_hello"`
	LastSeen   time.Time `json:"last_seen"`
	// Keys is, on a sealed uplink, the key state of every fence the peer
	// announces or sent frames of: whether this host can read and send
	// them ("no key" when it holds no key of the fence).
	Keys []PeerKey `json:"keys,omitempty"`
}

// Status returns a snapshot of the uplink: its address, its peers and its
// counters (drops by reason included).
func (u *Uplink) Status() Status {
	s := Status{
		Transport:     u.transportName(),
		Addr:          u.addrString(),
		OuterMAC:      u.self.String(),
		HostID:        u.cfg.HostID,
		Installation:  u.cfg.Installation,
		Name:          u.cfg.HostName,
		MTU:           u.cfg.MTU,
		MaxEncapLen:   u.link.maxEncap,
		HelloInterval: u.cfg.HelloInterval.String(),
		Peers:         []PeerStatus{},
		Counters:      u.ctr.snapshot(),
		RxByFence:     u.fenceCtr.snapshot(),
		Reassembly:    u.rx.reasm.Stats(),
		GatewayYields: u.gw.yields(),
		Seal:          u.sealStatus(),
	}
	switch {
	case u.seal != nil:
		s.Accept = "sealed"
	case u.link.raw != nil:
		s.Accept = "segment"
	case u.peerAddrs != nil:
		s.Accept = "peers"
	case u.cfg.Directory:
		s.Accept = "directory"
	default:
		s.Accept = "any"
	}
	if u.link.group != nil {
		s.Group = u.cfg.Group.String()
	}
	if u.link.udp != nil {
		s.GSO, s.GRO = u.link.udp.gso.Load(), u.link.udp.gro != nil
	}
	for _, p := range u.link.statics {
		s.StaticPeers = append(s.StaticPeers, p.ap.String())
	}
	for _, p := range u.hosts.load().peers {
		ps := PeerStatus{
			OuterMAC:   p.mac.String(),
			Name:       p.name,
			HostID:     p.hostID,
			HelloKnown: p.helloKnown,
			Fences:     slices.Clone(p.fences),
			Gateways:   slices.Clone(p.gateways),
			LastHello:  p.lastHello,
			LastSeen:   time.Unix(0, p.seen.Load()),
			Keys:       u.peerKeys(p),
		}
		if ps.Fences == nil {
			ps.Fences = []uint32{}
		}
		if ps.Gateways == nil {
			ps.Gateways = []uint32{}
		}
		if p.ap.IsValid() {
			ps.Addr = p.ap.String()
		}
		s.Peers = append(s.Peers, ps)
	}
	return s
}
