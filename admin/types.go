package admin

import (
	"net/netip"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// The JSON types of the API: the server writes them, [Client] reads them.
// They are admin's own, converted from the packages' snapshots
// (vswitch.Status, uplink.Status, the gateways' status), so that the API
// changes only here.

// ErrorResponse is the body of every error answer (4xx, 5xx).
type ErrorResponse struct {
	Error string `json:"error"`
}

// StatusResponse is the body of GET /v1/status: the switch's fences,
// ports and trunk, the version and the start time.
type StatusResponse struct {
	Fences []FenceStatus `json:"fences"`
	Ports  []PortStatus  `json:"ports"`
	// Trunk is nil when no trunk (uplink) is attached.
	Trunk *TrunkStatus `json:"trunk,omitempty"`
	// QueuedBytes are the buffer bytes queued for all ports and the
	// trunk together, bounded by MaxQueuedBytes (limits.max_queued_bytes).
	QueuedBytes    int64     `json:"queued_bytes"`
	MaxQueuedBytes int64     `json:"max_queued_bytes"`
	Version        string    `json:"version,omitempty"`
	Started        time.Time `json:"started"`
	// Listeners are the fences' listen addresses with their port counts
	// and limit counters (limits.ports_per_listener, frame_timeout,
	// datagram_idle_timeout).
	Listeners []ListenerStatus `json:"listeners,omitempty"`
}

// ListenerStatus is one listen address of a fence in GET /v1/status.
type ListenerStatus struct {
	Fence string `json:"fence"`
	Addr  string `json:"addr"`
	Ports int    `json:"ports"` // ports now (datagram: peers)
	// Refused counts connections, or datagrams of new peers, refused
	// because the listener had limits.ports_per_listener ports.
	Refused uint64 `json:"refused"`
	// FrameTimeouts counts stream ports closed for limits.frame_timeout.
	FrameTimeouts uint64 `json:"frame_timeouts"`
	// Expired counts datagram peers closed after
	// limits.datagram_idle_timeout.
	Expired uint64 `json:"expired"`
}

// FenceStatus is one fence in GET /v1/status and GET /v1/fences.
type FenceStatus struct {
	ID      uint32 `json:"id"`
	Name    string `json:"name"`
	Ports   int    `json:"ports"`    // local ports attached
	MACs    int    `json:"macs"`     // bridge table entries (local and remote)
	MaxMACs int    `json:"max_macs"` // table limit
	// MaxPorts is limits.ports_per_fence; PortsRefused counts the ports
	// refused because the fence had that many.
	MaxPorts     int    `json:"max_ports"`
	PortsRefused uint64 `json:"ports_refused"`

	FramesIn  uint64 `json:"frames_in"`  // frames accepted from local ports and the trunk
	BytesIn   uint64 `json:"bytes_in"`   //
	FramesOut uint64 `json:"frames_out"` // frames queued to local ports and the trunk
	BytesOut  uint64 `json:"bytes_out"`  //
	Floods    uint64 `json:"floods"`     // frames flooded (broadcast, multicast, unknown unicast)
	Moves     uint64 `json:"moves"`      // MACs that moved to another port or host
	// LearnRefused counts new MACs not learned because the table was full.
	LearnRefused uint64 `json:"learn_refused"`
	// Drops counts dropped frames by reason; only non-zero reasons are
	// present.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// PortStatus is one port in GET /v1/status and GET /v1/ports.
type PortStatus struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Fence     uint32 `json:"fence"`
	FenceName string `json:"fence_name,omitempty"`
	MACs      int    `json:"macs"` // source MACs learned on this port
	MaxMACs   int    `json:"max_macs"`
	// PinMAC is the pinned source MAC, "" when the port is not pinned.
	PinMAC      string `json:"pin_mac,omitempty"`
	QueueLen    int    `json:"queue_len"`    // transmit queue capacity in frames
	Queued      int    `json:"queued"`       // frames waiting in the transmit queue
	QueueBytes  int    `json:"queue_bytes"`  // transmit queue capacity in frame bytes
	QueuedBytes int    `json:"queued_bytes"` // bytes of the frames waiting

	RxFrames uint64 `json:"rx_frames"` // frames read from the port (inbound)
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"` // frames written to the port (outbound)
	TxBytes  uint64 `json:"tx_bytes"`
	// Drops counts frames dropped on this port by reason; only non-zero
	// reasons are present.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// TrunkStatus is the switch's trunk (the uplink's side) in GET /v1/status.
type TrunkStatus struct {
	RxFrames    uint64            `json:"rx_frames"`
	RxBytes     uint64            `json:"rx_bytes"`
	TxFrames    uint64            `json:"tx_frames"`
	TxBytes     uint64            `json:"tx_bytes"`
	QueueLen    int               `json:"queue_len"`
	Queued      int               `json:"queued"`
	QueueBytes  int               `json:"queue_bytes"`
	QueuedBytes int               `json:"queued_bytes"`
	Drops       map[string]uint64 `json:"drops,omitempty"`
}

// FDBPage is the body of GET /v1/fdb: one page of the bridge tables.
type FDBPage struct {
	// Fences are the fences of the page, by ID, each with its entries of
	// the page, by MAC. A fence whose table spans pages appears on each
	// of them.
	Fences []FenceFDB `json:"fences"`
	// Next is the after= of the next page with the same fence= ("" on the
	// last page): a MAC with fence=, else "FENCEID/MAC" or "FENCEID/".
	Next string `json:"next,omitempty"`
}

// FenceFDB is one fence's bridge table (or its part on one page) in GET
// /v1/fdb.
type FenceFDB struct {
	Fence   uint32     `json:"fence"`
	Name    string     `json:"name"`
	Entries []FDBEntry `json:"entries"`
}

// FDBEntry is one bridge table entry.
type FDBEntry struct {
	MAC string `json:"mac"` // inner MAC, "52:54:00:12:34:56"
	// Port is the local port's ID, 0 when the MAC lives on a remote host.
	Port     uint64 `json:"port,omitempty"`
	PortName string `json:"port_name,omitempty"`
	// Host is the remote host's outer MAC, "" for a local port.
	Host string `json:"host,omitempty"`
	// HostName is the remote host's name, when the uplink knows it.
	HostName string `json:"host_name,omitempty"`
	// Age is the number of seconds since a frame from MAC was last seen.
	Age float64 `json:"age"`
}

// PeersResponse is the body of GET /v1/peers: the uplink, the remote
// hosts it knows, its counters, and the gateway conflicts seen in them.
type PeersResponse struct {
	Transport     string       `json:"transport"` // "udp" or "raw"
	Addr          string       `json:"addr"`      // bound UDP address or interface
	OuterMAC      string       `json:"outer_mac"`
	HostID        uint16       `json:"host_id"`
	Installation  uint8        `json:"installation"`
	Name          string       `json:"name"`
	MTU           int          `json:"mtu"`
	MaxEncapLen   int          `json:"max_encap_len"`
	HelloInterval string       `json:"hello_interval"`
	Group         string       `json:"group,omitempty"`
	GSO           bool         `json:"gso"` // UDP segmentation offload in use
	GRO           bool         `json:"gro"` // UDP receive offload in use
	StaticPeers   []string     `json:"static_peers,omitempty"`
	Peers         []PeerStatus `json:"peers"`
	// Gossip is the membership and fence state of uplink.gossip (nil:
	// hellos).
	Gossip *GossipStatus `json:"gossip,omitempty"`
	// Counters are the uplink's counters by name (rx_frames, drop_*,
	// gateway_conflict …).
	Counters map[string]uint64 `json:"counters"`
	// RxByFence counts inbound frames delivered to the switch, per fence.
	RxByFence map[uint32]uint64 `json:"rx_by_fence"`
	// Reassembly are the fragment reassembler's counters.
	Reassembly ReassemblyStats `json:"reassembly"`
	// GatewayYields are the configured gateway fences this host does not
	// serve because a peer that wins the tie-break serves them. Always
	// present.
	GatewayYields []GatewayYield `json:"gateway_yields"`
	// GatewayConflicts lists fences whose gateway runs here and that a
	// peer announces in its hellos as served by it too. Such a conflict
	// lasts until the uplink's tie-break makes one host yield (the
	// yielding host lists the fence in GatewayYields; both log it at error
	// level and count gateway_conflict). Always present, empty when all is
	// well.
	GatewayConflicts []GatewayConflict `json:"gateway_conflicts"`
	// Accept says which sources the uplink accepts: "peers" (unsealed
	// UDP: the configured uplink.udp.peers), "any" (unsealed UDP with
	// learn_peers or a group: addresses that echoed a cookie),
	// "directory" (unsealed with gossip: the members' announced
	// addresses), "sealed" (any source whose frames open), "segment"
	// (unsealed raw uplink).
	Accept string `json:"accept"`
	// Seal is the sealed uplink's state; absent when unsealed. It holds
	// key IDs only, never a key.
	Seal *SealStatus `json:"seal,omitempty"`
}

// SealStatus is the sealed uplink in GET /v1/peers.
type SealStatus struct {
	Cipher string `json:"cipher"` // "aes-256-gcm" or "chacha20-poly1305"
	// Keys lists the fences this host holds keys of (fence 0: hellos).
	Keys []SealKeyStatus `json:"keys"`
	// Counter is the last send counter used; CounterLimit the first one
	// not reserved on disk yet.
	Counter      uint64 `json:"counter"`
	CounterLimit uint64 `json:"counter_limit"`
	// KeyChanges counts key reloads (SIGHUP).
	KeyChanges uint64 `json:"key_changes"`
}

// SealKeyStatus is one fence's keys by ID.
type SealKeyStatus struct {
	Fence uint32 `json:"fence"`
	// SendKeyID is the key frames are sealed with; absent when the fence
	// has receive-only keys only.
	SendKeyID *uint8  `json:"send_key_id,omitempty"`
	KeyIDs    []uint8 `json:"key_ids"` // every key frames are opened with
}

// PeerKey is, on a sealed uplink, one fence of a peer: whether this host
// can read and send its frames.
type PeerKey struct {
	Fence uint32 `json:"fence"`
	// State: "ok" (frames opened, the last with KeyID), "no key" (this
	// host holds no key of the fence: it can neither read nor inject it),
	// "failing" (frames did not open since the last that did: the peer
	// holds another key), "unused" (a key is held, no frame came yet).
	State  string `json:"state"`
	KeyID  *uint8 `json:"key_id,omitempty"`
	Opened uint64 `json:"opened"`
	Failed uint64 `json:"failed"`
}

// PeerStatus is one remote host of the uplink's host table.
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
	// Keys is the key state per fence on a sealed uplink.
	Keys []PeerKey `json:"keys,omitempty"`
}

// ReassemblyStats are the uplink's fragment reassembly counters
// (fence.ReassemblyStats). The JSON keys are the Go field names, as the
// API has always had them.
type ReassemblyStats struct {
	Whole         uint64 `json:"Whole"`         // whole frames passed through
	Firsts        uint64 `json:"Firsts"`        // first fragments stored
	Completed     uint64 `json:"Completed"`     // frames reassembled and delivered
	Replaced      uint64 `json:"Replaced"`      // pending firsts replaced by a new first with the same host and Seq
	Orphans       uint64 `json:"Orphans"`       // last fragments with no first
	Mismatched    uint64 `json:"Mismatched"`    // last fragments that did not fit their first
	Expired       uint64 `json:"Expired"`       // pending firsts that timed out
	EvictedHost   uint64 `json:"EvictedHost"`   // pending firsts evicted by the per-host bound
	EvictedTotal  uint64 `json:"EvictedTotal"`  // pending firsts evicted by the total bound
	EvictedWindow uint64 `json:"EvictedWindow"` // pending firsts evicted as too far behind the host's newest Seq
	TooBig        uint64 `json:"TooBig"`        // fragments dropped for size
	Invalid       uint64 `json:"Invalid"`       // frames too short or with a reserved fragment type
}

// GatewayYield is a fence whose gateway this host is configured to serve
// but has yielded to a peer that serves it too and wins the tie-break.
type GatewayYield struct {
	Fence    uint32    `json:"fence"`
	Peer     string    `json:"peer"` // the winner's outer MAC
	PeerName string    `json:"peer_name"`
	Since    time.Time `json:"since"`
}

// GatewayConflict is one fence whose gateway is served here and announced
// by a peer too.
type GatewayConflict struct {
	Fence    uint32 `json:"fence"`
	Peer     string `json:"peer"` // the peer's outer MAC
	PeerName string `json:"peer_name"`
	PeerAddr string `json:"peer_addr,omitempty"`
}

// GatewayStatus is one fence's gateway in GET /v1/gateways.
type GatewayStatus struct {
	Fence      uint32       `json:"fence"`
	Name       string       `json:"name"`
	MAC        string       `json:"mac"`
	Subnet     string       `json:"subnet"`
	Addr       string       `json:"addr"`
	DNS        string       `json:"dns"`
	IPv6Prefix string       `json:"ipv6_prefix,omitempty"` // "" when IPv6 is off
	Addr6      string       `json:"addr6,omitempty"`
	DNS6       string       `json:"dns6,omitempty"`
	Socks      string       `json:"socks,omitempty"` // the SOCKS5 endpoint's address, "" without one
	Leases     []Lease      `json:"leases"`
	Forwards   []Forward    `json:"forwards"`
	Stats      GatewayStats `json:"stats"`
}

// Lease is one DHCP lease of a gateway.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	// Expiry is zero for an address offered and never acknowledged.
	Expiry time.Time `json:"expiry"`
}

// GatewayStats are a gateway's counters.
type GatewayStats struct {
	InFrames     uint64 `json:"in_frames"`     // frames from the fence
	OutFrames    uint64 `json:"out_frames"`    // frames to the fence
	InDrops      uint64 `json:"in_drops"`      // inbound frames malformed
	InFiltered   uint64 `json:"in_filtered"`   // inbound frames meant for others
	OutDrops     uint64 `json:"out_drops"`     // outbound packets released unsent (only when the gateway closes)
	TCPConns     int64  `json:"tcp_conns"`     // NATed TCP connections open now
	TCPRefused   uint64 `json:"tcp_refused"`   // NATed TCP connections refused
	UDPFlows     int64  `json:"udp_flows"`     // NATed UDP flows open now
	UDPRefused   uint64 `json:"udp_refused"`   // UDP flows refused
	ICMPRelayed  uint64 `json:"icmp_relayed"`  // echo requests sent on the host
	ICMPReplies  uint64 `json:"icmp_replies"`  // echo replies delivered to guests
	ICMPDropped  uint64 `json:"icmp_dropped"`  // echo requests refused
	DHCPLeases   int    `json:"dhcp_leases"`   // leases held
	DHCPRequests uint64 `json:"dhcp_requests"` // DHCP requests answered
	DNSQueries   uint64 `json:"dns_queries"`   // DNS queries received

	// The SOCKS5 endpoint (zero without one).
	SocksConns      int64  `json:"socks_conns,omitempty"`       // clients connected now
	SocksConnects   uint64 `json:"socks_connects,omitempty"`    // CONNECTs that reached a guest
	SocksAssociates uint64 `json:"socks_associates,omitempty"`  // UDP associations opened
	SocksRefused    uint64 `json:"socks_refused,omitempty"`     // destinations outside the fence, refused
	SocksFailed     uint64 `json:"socks_failed,omitempty"`      // names that did not resolve, dials that failed
	SocksOverLimit  uint64 `json:"socks_over_limit,omitempty"`  // clients closed at once: connection limit
	SocksBad        uint64 `json:"socks_bad,omitempty"`         // malformed or unsupported requests, handshake timeouts
	SocksUDPDropped uint64 `json:"socks_udp_dropped,omitempty"` // UDP datagrams dropped
	InBadChecksum   uint64 `json:"in_bad_checksum"`             // inbound packets with a bad IPv4, TCP, UDP or ICMP checksum, dropped
	OutWaits        uint64 `json:"out_waits"`                   // times the gateway waited for the switch to read (backpressure; nothing is dropped)
	OutQueued       int64  `json:"out_queued"`                  // outbound packets queued now
	NATGuests       int    `json:"nat_guests"`                  // guests (source MACs) holding NAT connections or flows
	// TCPRefusals, UDPRefusals and ICMPRefusals count the refused flows
	// (a SYN, a new flow's datagram, an echo request) by reason, every
	// reason present: limit_fence, limit_guest, syn_backlog, policy, self,
	// host_loopback_off, unroutable, source, dial_failed, handshake,
	// no_raw_socket, forward_limit. Their sums are TCPRefused, UDPRefused
	// and ICMPDropped.
	TCPRefusals  map[string]uint64 `json:"tcp_refusals"`
	UDPRefusals  map[string]uint64 `json:"udp_refusals"`
	ICMPRefusals map[string]uint64 `json:"icmp_refusals"`
}

// Forward is one port forward: in requests (POST and DELETE
// /v1/forwards, where Fence names the fence) and in answers. Addresses
// are "IP:port".
//
// SNI or Host (TCP only, one of them) names the connections the forward
// takes on its listen address: TLS connections whose ClientHello names
// SNI, HTTP/1 requests whose Host (without its port) is Host. Forwards of
// several fences share a listen address with distinct names; one without
// a name there takes the connections that name none of them. In DELETE
// requests they select the forward to remove.
type Forward struct {
	Fence  string `json:"fence,omitempty"` // requests and POST/DELETE answers: fence name or ID
	Proto  string `json:"proto"`           // "tcp" or "udp"
	Listen string `json:"listen"`          // host address
	Target string `json:"target,omitempty"`
	SNI    string `json:"sni,omitempty"`
	Host   string `json:"host,omitempty"`
}

// FenceForwards is one fence's forwards in GET /v1/forwards.
type FenceForwards struct {
	Fence    uint32    `json:"fence"`
	Name     string    `json:"name"`
	Forwards []Forward `json:"forwards"`
}

// Conversions from the packages' snapshots.

func statusOf(st vswitch.Status) StatusResponse {
	out := StatusResponse{Fences: fencesOf(st.Fences), Ports: portsOf(st.Ports, st.Fences),
		QueuedBytes: st.QueuedBytes, MaxQueuedBytes: st.MaxQueuedBytes}
	if t := st.Trunk; t != nil {
		out.Trunk = &TrunkStatus{
			RxFrames: t.RxFrames, RxBytes: t.RxBytes, TxFrames: t.TxFrames, TxBytes: t.TxBytes,
			QueueLen: t.QueueLen, Queued: t.Queued, QueueBytes: t.QueueBytes, QueuedBytes: t.QueuedBytes,
			Drops: t.Drops,
		}
	}
	return out
}

// fencesOf converts fences; never nil.
func fencesOf(fs []vswitch.FenceStatus) []FenceStatus {
	out := make([]FenceStatus, 0, len(fs))
	for _, f := range fs {
		out = append(out, FenceStatus{
			ID: f.ID, Name: f.Name, Ports: f.Ports, MACs: f.MACs, MaxMACs: f.MaxMACs,
			MaxPorts: f.MaxPorts, PortsRefused: f.PortsRefused,
			FramesIn: f.FramesIn, BytesIn: f.BytesIn, FramesOut: f.FramesOut, BytesOut: f.BytesOut,
			Floods: f.Floods, Moves: f.Moves, LearnRefused: f.LearnRefused, Drops: f.Drops,
		})
	}
	return out
}

// portsOf converts ports, naming their fences from fences; never nil.
func portsOf(ps []vswitch.PortStatus, fences []vswitch.FenceStatus) []PortStatus {
	names := make(map[uint32]string, len(fences))
	for _, f := range fences {
		names[f.ID] = f.Name
	}
	out := make([]PortStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, PortStatus{
			ID: p.ID, Name: p.Name, Fence: p.Fence, FenceName: names[p.Fence], MACs: p.MACs, MaxMACs: p.MaxMACs, PinMAC: p.PinMAC,
			QueueLen: p.QueueLen, Queued: p.Queued, QueueBytes: p.QueueBytes, QueuedBytes: p.QueuedBytes,
			RxFrames: p.RxFrames, RxBytes: p.RxBytes, TxFrames: p.TxFrames, TxBytes: p.TxBytes, Drops: p.Drops,
		})
	}
	return out
}

// fdbOf converts a bridge table, naming remote hosts from hosts (outer
// MAC → name); never nil.
func fdbOf(es []vswitch.FDBEntry, hosts map[string]string) []FDBEntry {
	out := make([]FDBEntry, 0, len(es))
	for _, e := range es {
		out = append(out, FDBEntry{MAC: e.MAC, Port: e.Port, PortName: e.PortName, Host: e.Host, HostName: hosts[e.Host], Age: e.Age})
	}
	return out
}

// peersOf converts the uplink's status (without the gateway conflicts).
func peersOf(st uplink.Status) PeersResponse {
	r := st.Reassembly
	out := PeersResponse{
		Transport: st.Transport, Addr: st.Addr, OuterMAC: st.OuterMAC, HostID: st.HostID,
		Installation: st.Installation, Name: st.Name, MTU: st.MTU, MaxEncapLen: st.MaxEncapLen,
		HelloInterval: st.HelloInterval, Group: st.Group, GSO: st.GSO, GRO: st.GRO,
		StaticPeers: st.StaticPeers,
		Peers:       make([]PeerStatus, 0, len(st.Peers)),
		Counters:    st.Counters,
		RxByFence:   st.RxByFence,
		Reassembly: ReassemblyStats{
			Whole: r.Whole, Firsts: r.Firsts, Completed: r.Completed, Replaced: r.Replaced,
			Orphans: r.Orphans, Mismatched: r.Mismatched, Expired: r.Expired,
			EvictedHost: r.EvictedHost, EvictedTotal: r.EvictedTotal, EvictedWindow: r.EvictedWindow,
			TooBig: r.TooBig, Invalid: r.Invalid,
		},
		GatewayYields: make([]GatewayYield, 0, len(st.GatewayYields)),
		Accept:        st.Accept,
	}
	if s := st.Seal; s != nil {
		out.Seal = &SealStatus{Cipher: s.Cipher, Counter: s.Counter, CounterLimit: s.CounterLimit,
			KeyChanges: s.KeyChanges, Keys: make([]SealKeyStatus, 0, len(s.Keys))}
		for _, k := range s.Keys {
			out.Seal.Keys = append(out.Seal.Keys, SealKeyStatus{Fence: k.Fence, SendKeyID: k.SendKeyID, KeyIDs: k.KeyIDs})
		}
	}
	for _, p := range st.Peers {
		ps := PeerStatus{
			OuterMAC: p.OuterMAC, Addr: p.Addr, Name: p.Name, HostID: p.HostID, HelloKnown: p.HelloKnown,
			Fences: p.Fences, Gateways: p.Gateways, LastHello: p.LastHello, LastSeen: p.LastSeen,
		}
		for _, k := range p.Keys {
			ps.Keys = append(ps.Keys, PeerKey{Fence: k.Fence, State: k.State, KeyID: k.KeyID, Opened: k.Opened, Failed: k.Failed})
		}
		out.Peers = append(out.Peers, ps)
	}
	for _, y := range st.GatewayYields {
		out.GatewayYields = append(out.GatewayYields, GatewayYield{Fence: y.Fence, Peer: y.Peer, PeerName: y.PeerName, Since: y.Since})
	}
	return out
}

// GossipStatus is uplink.gossip's view in GET /v1/peers.
type GossipStatus struct {
	Name      string   `json:"name"`
	Addr      string   `json:"addr"`
	Profile   string   `json:"profile"`
	Encrypted bool     `json:"encrypted"`
	Join      []string `json:"join"`
	// Members are every known member, this host included, sorted by name.
	Members []GossipMember `json:"members"`
	// Fences are this host's fences as gossip sees them.
	Fences             []GossipFence `json:"fences"`
	DuplicateOuterMACs []string      `json:"duplicate_outer_macs,omitempty"`
	// Counters: bytes_in, bytes_out, updates_sent, updates_received,
	// macs_sent, macs_received, macs_refused, …
	Counters map[string]uint64 `json:"counters"`
}

// GossipMember is one member of the gossip cluster.
type GossipMember struct {
	Name      string    `json:"name"`
	Self      bool      `json:"self,omitempty"`
	State     string    `json:"state"` // alive, suspect, dead, left
	Since     time.Time `json:"since,omitzero"`
	Addr      string    `json:"addr"`
	Valid     bool      `json:"valid"` // metadata decoded, same installation
	OuterMAC  string    `json:"outer_mac,omitempty"`
	DataAddrs []string  `json:"data_addrs,omitempty"`
	Fences    []uint32  `json:"fences"`
	Gateways  []uint32  `json:"gateways"`
}

// GossipFence is one local fence in GossipStatus.
type GossipFence struct {
	ID            uint32   `json:"id"`
	Hosts         []string `json:"hosts"` // the other hosts that have it
	LocalMACs     int      `json:"local_macs"`
	RemoteMACs    int      `json:"remote_macs"`
	Gateway       string   `json:"gateway,omitempty"`
	GatewayClaims []string `json:"gateway_claims,omitempty"`
}
