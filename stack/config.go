package stack

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/stack/dhcp"
	"github.com/corralnet/corral/stack/dns"
)

// Defaults, like QEMU's user networking.
var (
	// DefaultSubnet is the fence's IPv4 subnet when Config.Subnet is zero.
	DefaultSubnet = netip.MustParsePrefix("10.0.2.0/24")
)

// DefaultIPv6Prefix is the fence's IPv6 ULA prefix when Config.IPv6Prefix
// is zero ("corra" in ASCII after fd): gateway ::2, DNS ::3, guests by SLAAC.
var DefaultIPv6Prefix = netip.MustParsePrefix("fd63:6f72:7261::/64")

const (
	// DefaultMTU is the MTU advertised when Config.MTU is 0. At 1500 no
	// DHCP option 26 is sent (1500 is every client's default).
	DefaultMTU = 1500
	// DefaultDomain is the DNS domain of lease names when Config.Domain is "".
	DefaultDomain = "corral.internal"
	// DefaultLeaseTime is the DHCP lease time when Config.LeaseTime is 0.
	DefaultLeaseTime = time.Hour
	// DefaultMaxTCPConns and DefaultMaxUDPFlows are the fence's NAT
	// tables when Config.MaxTCPConns / MaxUDPFlows are 0; a guest's share
	// is a quarter of them by default.
	DefaultMaxTCPConns = 1024
	DefaultMaxUDPFlows = 1024
	// DefaultUDPIdleTimeout ends a UDP flow without traffic.
	DefaultUDPIdleTimeout = 60 * time.Second
	// DefaultTCPIdleTimeout ends an open NATed TCP connection without
	// traffic in either direction: RFC 5382 (REQ-5) asks a NAT for at
	// least 2 h 4 min, so that TCP keepalives (every 2 h by default)
	// keep a connection open.
	DefaultTCPIdleTimeout = 2*time.Hour + 4*time.Minute
	// TCPHalfClosedTimeout ends a NATed TCP connection one side of which
	// has closed (sent FIN) and that carried nothing since, or
	// Config.TCPIdleTimeout when that is shorter. RFC 5382 asks at least
	// 4 min for such "transitory" connections; Linux conntrack keeps
	// FIN_WAIT 2 min, CLOSE_WAIT 1 min.
	TCPHalfClosedTimeout = 4 * time.Minute

	// Host numbers inside Subnet.
	gatewayHost   = 2
	dnsHost       = 3
	dhcpFirstHost = 15
)

// Errors returned by [Config.Validate], [New], [Gateway.DialTCP] and
// [Gateway.DialUDP].
var (
	ErrInvalidConfig = errors.New("stack: invalid config")
	ErrClosed        = errors.New("stack: gateway closed")
)

// Config configures one fence's gateway. The zero value of every field has
// the documented default meaning; only Fence is required.
type Config struct {
	// Fence is the fence ID (for logs and to derive the MAC).
	Fence uint32
	// FenceName is the fence's name (for logs and the lease file name).
	FenceName string
	// Subnet is the IPv4 subnet; zero means DefaultSubnet (10.0.2.0/24).
	// The gateway is host .2, DNS host .3, DHCP leases start at host .15.
	// Prefix length must be between 8 and 29.
	Subnet netip.Prefix
	// IPv6Prefix is the fence's IPv6 /64 (router advertisements for
	// SLAAC, gateway ::2 reaching the host's ::1, DNS ::3); zero means
	// DefaultIPv6Prefix.
	IPv6Prefix netip.Prefix
	// NoIPv6 turns IPv6 off (no addresses, no router advertisements).
	NoIPv6 bool
	// MAC is the gateway's MAC; zero means derived from Fence: a locally
	// administered unicast address 52:55:0a:xx:xx:xx (xx = Fence, 24 bits).
	MAC [6]byte
	// MTU is the guest MTU advertised in DHCP option 26 and used on the
	// gateway's link; 0 means DefaultMTU (1500, option not sent).
	// Range 576 … 65520.
	MTU int
	// Domain is the DNS domain under which lease hostnames resolve
	// (e.g. "vm1.corral.internal"); "" means DefaultDomain.
	Domain string
	// LeaseTime is the DHCP lease time; 0 means DefaultLeaseTime.
	LeaseTime time.Duration
	// StateDir is where leases are persisted (file
	// "leases-<fence id>.json", written atomically). "" keeps leases in
	// memory only.
	StateDir string
	// Resolvers are the upstream DNS servers; empty means the nameservers
	// of /etc/resolv.conf (read once at New).
	Resolvers []netip.AddrPort
	// DNSRecords are static records the fence's DNS answers (checked by
	// dns.ValidateRecords under Domain).
	DNSRecords []dns.Record
	// Allow, when not empty, lists the only host destinations NATed guest
	// flows may reach (the gateway's own address, which means the host's
	// loopback, is checked as 127.0.0.1 / ::1). Deny lists destinations
	// refused even when allowed. Refused flows are counted.
	Allow, Deny []netip.Prefix
	// Socks, when valid, is the host address of the fence's SOCKS5
	// endpoint (port 0: any free port; see Gateway.SocksAddr): CONNECT
	// and UDP ASSOCIATE to the fence's guests only, names resolved by the
	// fence's DNS. Anyone who can connect to it reaches the fence: keep it
	// on loopback.
	Socks netip.AddrPort
	// SocksMaxConns bounds the SOCKS5 endpoint's concurrent clients; 0
	// means socks.DefaultMaxConns (256).
	SocksMaxConns int
	// MaxTCPConns bounds concurrent NATed TCP connections of the fence
	// (port-forward connections count too); 0 means DefaultMaxTCPConns.
	MaxTCPConns int
	// MaxUDPFlows bounds concurrent NATed UDP flows of the fence (and
	// port-forward flows); 0 means DefaultMaxUDPFlows.
	MaxUDPFlows int
	// MaxTCPConnsPerGuest and MaxUDPFlowsPerGuest bound what one guest
	// holds of those tables, so that one guest's scan never keeps the
	// others off the network; 0 means a quarter of the fence's limit (at
	// least 1). A guest is a source MAC: NATed flows are charged to the
	// MAC of the frame that opened them, whatever source IP it carried
	// (a guest that sends from many MACs is bounded by the switch's
	// per-port MAC limit, fences[].port_max_macs). At most
	// MaxTCPConns / MaxUDPFlows.
	MaxTCPConnsPerGuest int
	MaxUDPFlowsPerGuest int
	// UDPIdleTimeout ends a UDP flow without traffic; 0 means
	// DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// TCPIdleTimeout ends a NATed TCP connection without traffic; 0 means
	// DefaultTCPIdleTimeout. A half-closed connection ends after
	// min(TCPIdleTimeout, TCPHalfClosedTimeout) without traffic; a
	// connection reset on either side ends at once.
	TCPIdleTimeout time.Duration
	// NoHostLoopback turns off the mapping of the gateway's addresses (.2,
	// ::2) to the host's loopback (127.0.0.1, ::1), which QEMU's user
	// networking has and corral has by default: flows to them are then
	// refused and counted (RefusedHostLoopbackOff); ICMP echo requests to
	// them are answered by the gateway itself.
	NoHostLoopback bool
	// IsSelf, when set, reports whether a NAT destination on the host
	// (after the gateway address is mapped to the loopback) reaches a
	// socket of this process; proto is "tcp" or "udp". Such flows are
	// refused and counted (RefusedSelf), so that a guest can never reach
	// corral itself (a fence's listener, the uplink, metrics, another
	// fence's forwards) through the host. It is called for each flow a
	// guest opens, from the stack's receive path: it must be fast and
	// must not block. ICMP echo carries no port and reaches no socket.
	IsSelf func(proto string, dst netip.AddrPort) bool
	// Reserve, when set, is told of the host sockets the gateway binds on
	// its own behalf for clients (the SOCKS5 endpoint's UDP relays) and
	// returns what ends the registration; cmd passes the same registry
	// IsSelf reads, so that no guest's NAT reaches them.
	Reserve func(proto string, addr netip.AddrPort) (release func())
	// OnLease, when set, is called with every DHCP lease the gateway
	// acknowledges (new or renewed); it must not block.
	OnLease func(dhcp.Lease)
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
}

// Validate checks cfg. It does not modify it; [New] applies defaults.
func (c *Config) Validate() error {
	if !fence.ValidFenceID(c.Fence) {
		return fmt.Errorf("%w: fence id %d: want %d…0x%X", ErrInvalidConfig, c.Fence, fence.MinFenceID, fence.MaxFenceID)
	}
	if c.Subnet.IsValid() {
		if !c.Subnet.Addr().Is4() {
			return fmt.Errorf("%w: subnet %v: want IPv4", ErrInvalidConfig, c.Subnet)
		}
		if b := c.Subnet.Bits(); b < 8 || b > 29 {
			return fmt.Errorf("%w: subnet %v: prefix length must be 8…29", ErrInvalidConfig, c.Subnet)
		}
	}
	if c.IPv6Prefix.IsValid() && (!c.IPv6Prefix.Addr().Is6() || c.IPv6Prefix.Addr().Is4In6() || c.IPv6Prefix.Bits() != 64) {
		return fmt.Errorf("%w: ipv6 prefix %v: want an IPv6 /64", ErrInvalidConfig, c.IPv6Prefix)
	}
	if c.MAC != [6]byte{} && c.MAC[0]&1 != 0 {
		return fmt.Errorf("%w: mac: must be unicast", ErrInvalidConfig)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65520) {
		return fmt.Errorf("%w: mtu %d: want 576…65520", ErrInvalidConfig, c.MTU)
	}
	if c.Domain != "" && (strings.HasPrefix(c.Domain, ".") || strings.Contains(c.Domain, "..") || strings.ContainsAny(c.Domain, " /")) {
		return fmt.Errorf("%w: domain %q", ErrInvalidConfig, c.Domain)
	}
	if c.Socks.IsValid() && c.Socks.Addr().Zone() != "" {
		return fmt.Errorf("%w: socks %v: no zones", ErrInvalidConfig, c.Socks)
	}
	if c.LeaseTime < 0 || c.MaxTCPConns < 0 || c.MaxUDPFlows < 0 || c.UDPIdleTimeout < 0 || c.SocksMaxConns < 0 ||
		c.MaxTCPConnsPerGuest < 0 || c.MaxUDPFlowsPerGuest < 0 || c.TCPIdleTimeout < 0 {
		return fmt.Errorf("%w: negative lease time, limit or timeout", ErrInvalidConfig)
	}
	if c.MaxTCPConnsPerGuest > cmp.Or(c.MaxTCPConns, DefaultMaxTCPConns) {
		return fmt.Errorf("%w: max TCP connections per guest %d: above the fence's %d", ErrInvalidConfig,
			c.MaxTCPConnsPerGuest, cmp.Or(c.MaxTCPConns, DefaultMaxTCPConns))
	}
	if c.MaxUDPFlowsPerGuest > cmp.Or(c.MaxUDPFlows, DefaultMaxUDPFlows) {
		return fmt.Errorf("%w: max UDP flows per guest %d: above the fence's %d", ErrInvalidConfig,
			c.MaxUDPFlowsPerGuest, cmp.Or(c.MaxUDPFlows, DefaultMaxUDPFlows))
	}
	for _, r := range c.Resolvers {
		if !r.IsValid() || r.Port() == 0 {
			return fmt.Errorf("%w: resolver %v", ErrInvalidConfig, r)
		}
	}
	if err := dns.ValidateRecords(c.Domain, c.DNSRecords); err != nil {
		return fmt.Errorf("%w: dns %v", ErrInvalidConfig, strings.TrimPrefix(err.Error(), dns.ErrInvalidRecord.Error()+": "))
	}
	for _, p := range append(append([]netip.Prefix(nil), c.Allow...), c.Deny...) {
		if !p.IsValid() {
			return fmt.Errorf("%w: allow/deny: invalid prefix", ErrInvalidConfig)
		}
	}
	return nil
}

// withDefaults returns a copy of c with defaults applied.
func (c Config) withDefaults() Config {
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	c.Subnet = c.Subnet.Masked()
	if !c.IPv6Prefix.IsValid() {
		c.IPv6Prefix = DefaultIPv6Prefix
	}
	c.IPv6Prefix = c.IPv6Prefix.Masked()
	if c.MAC == [6]byte{} {
		c.MAC = [6]byte{0x52, 0x55, 0x0a, byte(c.Fence >> 16), byte(c.Fence >> 8), byte(c.Fence)}
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.TrimSuffix(strings.ToLower(c.Domain), ".")
	if c.LeaseTime == 0 {
		c.LeaseTime = DefaultLeaseTime
	}
	c.MaxTCPConns = cmp.Or(c.MaxTCPConns, DefaultMaxTCPConns)
	c.MaxUDPFlows = cmp.Or(c.MaxUDPFlows, DefaultMaxUDPFlows)
	c.MaxTCPConnsPerGuest = cmp.Or(c.MaxTCPConnsPerGuest, max(c.MaxTCPConns/4, 1))
	c.MaxUDPFlowsPerGuest = cmp.Or(c.MaxUDPFlowsPerGuest, max(c.MaxUDPFlows/4, 1))
	c.UDPIdleTimeout = cmp.Or(c.UDPIdleTimeout, DefaultUDPIdleTimeout)
	c.TCPIdleTimeout = cmp.Or(c.TCPIdleTimeout, DefaultTCPIdleTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("fence", c.FenceName, "fence_id", c.Fence)
	return c
}

// hostAddr returns host number n of an IPv4 prefix.
func hostAddr(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// hostAddr6 returns host number n of an IPv6 prefix.
func hostAddr6(p netip.Prefix, n byte) netip.Addr {
	b := p.Masked().Addr().As16()
	b[15] = n
	return netip.AddrFrom16(b)
}
