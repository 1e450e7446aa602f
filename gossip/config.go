package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Profile selects memberlist's timing: "lan" (the default) or "wan".
type Profile string

// Profiles.
const (
	ProfileLAN Profile = "lan"
	ProfileWAN Profile = "wan"
)

// Defaults and bounds.
const (
	// DefaultPort is the gossip port, TCP and UDP (memberlist's).
	DefaultPort = 7946
	// MaxNameLen is the longest node name.
	MaxNameLen = 64
	// SecretKeyLen is the length of Config.SecretKey: AES-256-GCM.
	SecretKeyLen = 32
	// DefaultMaxMACsPerHost bounds the MACs accepted from one host in one
	// fence.
	DefaultMaxMACsPerHost = 4096
	// DefaultMaxMACs bounds the remote MACs held in all.
	DefaultMaxMACs = 1 << 18
	// DefaultSyncInterval is the LAN anti-entropy period per fence.
	DefaultSyncInterval = 30 * time.Second
	// DefaultDeadRetention is how long a dead or left member stays listed.
	DefaultDeadRetention = 5 * time.Minute
	// DefaultJoinBackoff and DefaultJoinMaxBackoff bound the join retries.
	DefaultJoinBackoff    = time.Second
	DefaultJoinMaxBackoff = 30 * time.Second
	// inboxLen bounds the fence-state messages waiting to be applied and
	// outboxLen those waiting to be sent; beyond, they are dropped and
	// counted (anti-entropy repairs the loss).
	inboxLen  = 4096
	outboxLen = 8192
)

// Config configures a [Node]. The zero value of each field is documented;
// call [Config.Validate] (New does).
type Config struct {
	// Name is the memberlist node name, unique in the cluster, 1 to
	// MaxNameLen bytes of UTF-8. A restarted host keeps its name.
	Name string
	// OuterMAC is this host's outer MAC (DESIGN 3.2); unique too.
	OuterMAC [6]byte
	// Installation is the installation ID; hosts of another installation
	// are refused (the memberlist label is "corral/<installation>").
	Installation uint8
	// DataAddrs are where this host's uplink receives frames, at most
	// MaxDataAddrs; an unspecified IP (an uplink on 0.0.0.0) is announced
	// as the advertised gossip address's IP. Empty: none announced (raw
	// uplink: hosts are reached by outer MAC).
	DataAddrs []netip.AddrPort
	// BindAddr is the gossip address, TCP and UDP, e.g. 0.0.0.0:7946.
	// Ignored when Transport is set. Port 0 picks a free port.
	BindAddr netip.AddrPort
	// AdvertiseAddr, if valid, is the gossip address announced to others
	// (NAT, or BindAddr unspecified); otherwise memberlist picks one.
	AdvertiseAddr netip.AddrPort
	// Join lists members to join, "host:port" (port default 7946). The
	// join is retried with exponential backoff (JoinBackoff up to
	// JoinMaxBackoff) until one answers, and again whenever this host
	// finds itself alone; empty: this host waits to be joined.
	Join []string
	// JoinBackoff and JoinMaxBackoff: zero means DefaultJoinBackoff and
	// DefaultJoinMaxBackoff.
	JoinBackoff, JoinMaxBackoff time.Duration
	// Profile is "lan" (zero value) or "wan".
	Profile Profile
	// SecretKey, if set, is a 32-byte AES-256-GCM key: all gossip is
	// encrypted and authenticated with it (memberlist's keyring), so a
	// host without it can neither join, read nor forge membership. nil:
	// no encryption.
	SecretKey []byte
	// PreviousKeys are accepted on receive besides SecretKey (a rotation
	// of the installation secret: hosts switch one by one), never used to
	// send. Each SecretKeyLen bytes; only with SecretKey.
	PreviousKeys [][]byte
	// Transport, if set, replaces memberlist's UDP+TCP transport (tests
	// use package memnet). The Node counts its bytes either way.
	Transport memberlist.NodeAwareTransport
	// MaxMACsPerHost bounds the MACs accepted from one host in one fence,
	// also the local MACs announced per fence; zero: DefaultMaxMACsPerHost.
	MaxMACsPerHost int
	// MaxMACs bounds the remote MACs held in all; zero: DefaultMaxMACs.
	MaxMACs int
	// SyncInterval is the anti-entropy period: every interval each local
	// fence compares its table with one random member. Zero: the
	// profile's (30 s LAN, 60 s WAN).
	SyncInterval time.Duration
	// DeadRetention is how long dead and left members stay listed; zero:
	// DefaultDeadRetention.
	DeadRetention time.Duration
	// OnChange, if set, is called with each new snapshot, from the
	// Node's own goroutine, in order; it must not block.
	OnChange func(*Snapshot)
	// Logger receives the Node's and memberlist's logs; nil discards.
	Logger *slog.Logger

	// tune, if set, adjusts the memberlist configuration (tests).
	tune func(*memberlist.Config)
	// dilate, when above 1, runs every timer of the Node and of
	// memberlist dilate times slower (the scale simulation: a thousand
	// members share one process and two cores; with time stretched, each
	// gets the CPU time per protocol second a host of its own would have).
	// The simulation divides the durations it measures by dilate and
	// multiplies the rates by it. Zero or one: real time.
	dilate int
}

// dur stretches a protocol duration by the time dilation (Config.dilate).
func (c *Config) dur(d time.Duration) time.Duration {
	if c.dilate > 1 {
		return d * time.Duration(c.dilate)
	}
	return d
}

// dilateMemberlist stretches every duration of mc by the time dilation.
func (c *Config) dilateMemberlist(mc *memberlist.Config) {
	for _, d := range []*time.Duration{&mc.ProbeInterval, &mc.ProbeTimeout, &mc.GossipInterval, &mc.PushPullInterval,
		&mc.GossipToTheDeadTime, &mc.TCPTimeout, &mc.DeadNodeReclaimTime, &mc.QueueCheckInterval} {
		*d = c.dur(*d)
	}
}

// Validate reports whether c is usable.
func (c *Config) Validate() error {
	if c.Name == "" || len(c.Name) > MaxNameLen || !utf8.ValidString(c.Name) {
		return fmt.Errorf("gossip: name %q must be 1 to %d bytes of UTF-8", c.Name, MaxNameLen)
	}
	if c.OuterMAC[0]&1 != 0 || c.OuterMAC == [6]byte{} {
		return fmt.Errorf("gossip: outer MAC %x must be a nonzero unicast address", c.OuterMAC)
	}
	m := Meta{DataAddrs: c.DataAddrs}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("gossip: data addresses: %w", err)
	}
	if c.Transport == nil && !c.BindAddr.IsValid() {
		return errors.New("gossip: BindAddr or Transport is required")
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileWAN:
	default:
		return fmt.Errorf("gossip: profile %q: want %q or %q", c.Profile, ProfileLAN, ProfileWAN)
	}
	if c.SecretKey != nil && len(c.SecretKey) != SecretKeyLen {
		return fmt.Errorf("gossip: secret key is %d bytes, want %d", len(c.SecretKey), SecretKeyLen)
	}
	for _, k := range c.PreviousKeys {
		if c.SecretKey == nil || len(k) != SecretKeyLen {
			return fmt.Errorf("gossip: a previous key needs a secret key and %d bytes", SecretKeyLen)
		}
	}
	if c.MaxMACsPerHost < 0 || c.MaxMACs < 0 || c.SyncInterval < 0 || c.DeadRetention < 0 ||
		c.JoinBackoff < 0 || c.JoinMaxBackoff < 0 {
		return errors.New("gossip: bounds and intervals must not be negative")
	}
	if slices.Contains(c.Join, "") {
		return errors.New("gossip: empty join address")
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.MaxMACsPerHost == 0 {
		c.MaxMACsPerHost = DefaultMaxMACsPerHost
	}
	if c.MaxMACs == 0 {
		c.MaxMACs = DefaultMaxMACs
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
		if c.Profile == ProfileWAN {
			c.SyncInterval = 2 * DefaultSyncInterval
		}
	}
	if c.DeadRetention == 0 {
		c.DeadRetention = DefaultDeadRetention
	}
	if c.JoinBackoff == 0 {
		c.JoinBackoff = DefaultJoinBackoff
	}
	if c.JoinMaxBackoff == 0 {
		c.JoinMaxBackoff = DefaultJoinMaxBackoff
	}
	c.JoinMaxBackoff = max(c.JoinMaxBackoff, c.JoinBackoff)
	c.SyncInterval, c.DeadRetention = c.dur(c.SyncInterval), c.dur(c.DeadRetention)
	c.JoinBackoff, c.JoinMaxBackoff = c.dur(c.JoinBackoff), c.dur(c.JoinMaxBackoff)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// memberlistConfig returns the tuned memberlist configuration of profile
// p. The package doc explains each knob with the numbers behind it.
func memberlistConfig(p Profile) *memberlist.Config {
	if p == ProfileWAN {
		mc := memberlist.DefaultWANConfig()
		// WAN: memberlist's defaults (5 s probes, suspicion 6·log10(n)·5 s),
		// with push/pull at 120 s base for the bandwidth budget.
		mc.PushPullInterval = 120 * time.Second
		return mc
	}
	mc := memberlist.DefaultLANConfig()
	// Failure withdrawn within 10 s at 1,000 hosts: probe twice a second
	// (each member is probed by someone about every 0.5 s), suspect after
	// a missed ack plus the indirect probes, and declare dead after
	// 3·log10(n)·0.5 s = 4.5 s once one other host confirms (Lifeguard,
	// k = SuspicionMult−2 = 1), 9 s at most without confirmation.
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 2
	// Push/pull (full membership exchange, both ways, TCP) dominates the
	// steady-state bandwidth at scale: 60 s base, scaled by memberlist to
	// 6× (360 s) at 1,000 hosts.
	mc.PushPullInterval = 60 * time.Second
	mc.GossipToTheDeadTime = 15 * time.Second
	return mc
}
