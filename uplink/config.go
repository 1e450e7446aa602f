package uplink

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"time"

	"github.com/corralnet/corral/fence"
)

// DefaultMTU is the path MTU of the uplink network when Config.MTU is 0.
const DefaultMTU = 1500

// MinMTU is the smallest uplink MTU accepted (the IPv4 minimum datagram size).
const MinMTU = 576

// DefaultHelloInterval is the period of hellos when Config.HelloInterval is 0.
const DefaultHelloInterval = 5 * time.Second

// PeerExpiryIntervals is how many hello intervals a peer may stay silent
// before it is expired and its MACs flushed (DESIGN.md 4.6).
const PeerExpiryIntervals = 3

// Config configures an [Uplink]. Fields have no tags; cmd converts its YAML
// into this struct. The zero value of a field means its documented default.
type Config struct {
	// OUI is the fence OUI of the installation; it must be a locally
	// administered unicast prefix. Zero: fence.DefaultOUI.
	OUI fence.OUI
	// Installation is the 8-bit installation ID.
	Installation uint8
	// HostID is this host's 16-bit ID (1 … 0xFFFE). See [DeriveHostID].
	HostID uint16
	// HostName is sent in hellos and shown in peer lists.
	HostName string
	// EtherType is the fence EtherType. Zero: fence.EtherType.
	EtherType uint16

	// MTU is the path MTU of the uplink network. Zero: DefaultMTU (1500).
	// For the raw uplink the interface MTU is used when it is smaller.
	MTU int

	// UDPListen is the UDP address to bind. Zero value: no UDP uplink.
	// An unspecified address with port 0 is invalid; use e.g. 0.0.0.0:7407.
	UDPListen netip.AddrPort
	// Peers are static UDP peers that always receive hellos and, until their
	// hello says otherwise, every flood.
	Peers []netip.AddrPort
	// Group is an optional multicast group: joined on listen; floods and
	// hellos are sent to it once instead of to every peer.
	Group netip.AddrPort

	// LearnPeers, on an unsealed UDP uplink, accepts datagrams from any
	// address and learns it as a peer's. Otherwise (the default) only
	// datagrams from the Peers addresses are accepted, and, with a Group,
	// from any address (members of the group). A sealed uplink learns an
	// address from any frame that opens, whatever LearnPeers says.
	LearnPeers bool

	// Directory: a control plane other than hellos (gossip, DESIGN.md
	// 4.7) tells the uplink its peers through SetDirectory. No hello is
	// sent and peers do not expire by silence: a host is a peer while the
	// directory lists it in a local fence; unsealed, frames are accepted
	// only from a peer's announced address, sealed from a peer whose
	// frames open. Exclusive with Peers, Group and LearnPeers.
	Directory bool

	// RawInterface is the interface of the raw (AF_PACKET) uplink. "": none.
	RawInterface string

	// Seal, when not nil, seals every frame (DESIGN.md 3.6) and accepts
	// only sealed frames that open. Nil: the basic, unsealed scheme.
	Seal *SealConfig

	// HelloInterval is the hello period. Zero: DefaultHelloInterval. Peers
	// expire after PeerExpiryIntervals intervals without a hello or frame.
	HelloInterval time.Duration

	// LocalFences returns the fences that have local ports (hook, typically
	// vswitch.Switch.LocalFences). Nil: none announced.
	LocalFences func() []uint32
	// GatewayFences returns the fences whose gateway this host is
	// configured to serve (yielded ones included: the uplink leaves those
	// out of its hellos itself). May be nil.
	GatewayFences func() []uint32
	// OnGatewayConflict is called (from the uplink's own goroutine, in
	// order with OnGatewayResume) when a peer's hello claims the gateway
	// of a fence that GatewayFences lists and this host serves. yield
	// true: the peer wins the tie-break (lower outer MAC); this host must
	// stop serving the fence (the uplink already stopped announcing it).
	// yield false: this host wins and keeps serving; the peer yields.
	// Each conflict is reported once (again only after the peer restarts
	// or is expired and comes back). May be nil.
	OnGatewayConflict func(fence uint32, peer [6]byte, yield bool)
	// OnGatewayResume is called when a yielded fence is free again: no
	// known peer that wins the tie-break claims it any more (the winner
	// expired, or its hello stopped naming the fence). This host may serve
	// it again; the uplink announces it again. May be nil.
	OnGatewayResume func(fence uint32)
	// OnPeerDown is called (from the uplink's own goroutine) when a peer
	// expires, with its outer MAC (typically vswitch.Switch.FlushHost).
	OnPeerDown func(host [6]byte)

	// Logger receives logs. Nil: discard.
	Logger *slog.Logger

	// noOffload turns UDP GSO/GRO off (tests of the plain path).
	noOffload bool
	// trustLearned skips the return-routability check of learned
	// addresses (tests that hand-make datagrams from a plain socket).
	trustLearned bool
}

// Config errors, each wrapped with the field's name by Validate.
var (
	ErrOUINotLocalUnicast = errors.New("OUI must be locally administered unicast (second-lowest bit of the first byte set, lowest clear)")
	ErrHostIDReserved     = errors.New("host ID must be 1 … 0xFFFE")
	ErrMTUTooSmall        = fmt.Errorf("MTU must be at least %d", MinMTU)
	ErrNoTransport        = errors.New("neither a UDP listen address nor a raw interface is configured")
	ErrBadAddr            = errors.New("invalid address")
	ErrBadEtherType       = errors.New("EtherType must be at least 0x0600")
	ErrBothTransports     = errors.New("a UDP uplink and a raw uplink are exclusive; configure one")
	ErrBothControl        = errors.New("two control planes")
)

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.OUI == (fence.OUI{}) {
		c.OUI = fence.DefaultOUI
	}
	if c.EtherType == 0 {
		c.EtherType = fence.EtherType
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.HelloInterval == 0 {
		c.HelloInterval = DefaultHelloInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks c (after defaults) and returns an error naming the first
// bad field.
func (c *Config) Validate() error {
	d := c.withDefaults()
	if d.OUI[0]&0x02 == 0 || d.OUI[0]&0x01 != 0 {
		return fmt.Errorf("uplink: OUI %02x:%02x:%02x: %w", d.OUI[0], d.OUI[1], d.OUI[2], ErrOUINotLocalUnicast)
	}
	if d.HostID == 0 || d.HostID == 0xFFFF {
		return fmt.Errorf("uplink: HostID %#04x: %w", d.HostID, ErrHostIDReserved)
	}
	if d.EtherType < 0x0600 {
		return fmt.Errorf("uplink: EtherType %#04x: %w", d.EtherType, ErrBadEtherType)
	}
	if d.MTU < MinMTU {
		return fmt.Errorf("uplink: MTU %d: %w", d.MTU, ErrMTUTooSmall)
	}
	if d.MTU > 65535 {
		return fmt.Errorf("uplink: MTU %d: must be at most 65535", d.MTU)
	}
	if d.HelloInterval < 0 {
		return fmt.Errorf("uplink: HelloInterval %v: must not be negative", d.HelloInterval)
	}
	hasUDP := d.UDPListen.IsValid()
	if !hasUDP && d.RawInterface == "" {
		return fmt.Errorf("uplink: UDPListen/RawInterface: %w", ErrNoTransport)
	}
	if hasUDP && d.RawInterface != "" {
		return fmt.Errorf("uplink: UDPListen/RawInterface: %w", ErrBothTransports)
	}
	if hasUDP && d.UDPListen.Addr().Zone() != "" && !d.UDPListen.Addr().Is6() {
		return fmt.Errorf("uplink: UDPListen %v: %w", d.UDPListen, ErrBadAddr)
	}
	for i, p := range d.Peers {
		if !p.IsValid() || p.Port() == 0 || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
			return fmt.Errorf("uplink: Peers[%d] %v: %w: need a unicast IP and a non-zero port", i, p, ErrBadAddr)
		}
		if !hasUDP {
			return fmt.Errorf("uplink: Peers[%d]: %w: peers need UDPListen", i, ErrBadAddr)
		}
	}
	if d.Directory && (len(d.Peers) > 0 || d.Group.IsValid() || d.LearnPeers) {
		return fmt.Errorf("uplink: Directory: %w: static peers, a group and learned peers are the hello protocol's; a directory replaces them", ErrBothControl)
	}
	if d.Seal != nil {
		if err := d.Seal.validate(); err != nil {
			return err
		}
	}
	if d.Group.IsValid() {
		if !d.Group.Addr().IsMulticast() || d.Group.Port() == 0 {
			return fmt.Errorf("uplink: Group %v: %w: need a multicast IP and a non-zero port", d.Group, ErrBadAddr)
		}
		if !hasUDP {
			return fmt.Errorf("uplink: Group: %w: a group needs UDPListen", ErrBadAddr)
		}
	}
	return nil
}

// DeriveHostID hashes the machine ID (e.g. the contents of /etc/machine-id)
// and the configured host name into a host ID. The result is never 0 or
// 0xFFFF. Collisions are possible and detected by hellos.
func DeriveHostID(machineID []byte, name string) uint16 {
	h := fnv.New64a()
	h.Write(machineID)
	h.Write([]byte{0})
	h.Write([]byte(name))
	s := h.Sum64()
	id := uint16(s) ^ uint16(s>>16) ^ uint16(s>>32) ^ uint16(s>>48)
	// Map into 1 … 0xFFFE.
	return uint16(uint32(id)%0xFFFE) + 1
}
