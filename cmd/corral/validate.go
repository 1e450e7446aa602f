package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/stack"
	"github.com/corralnet/corral/stack/dns"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// Config is the validated, typed configuration of a corral process.
type Config struct {
	Switch  vswitch.Config
	Ports   PortLimits // limits.* of listeners and ports (portlimits.go)
	Fences  []Fence
	Admin   attach.Addr // Scheme "" when there is no admin socket
	Metrics string      // host:port, "" for none
	// StateDir is state_dir, the root of every instance's state.
	StateDir string
	// InstanceDir is this instance's state directory under StateDir
	// (state.go), "" without a StateDir; InstanceKey says what names it
	// ("admin unix:///…" or "host.name NAME").
	InstanceDir, InstanceKey string
	// Uplink is the uplink configuration; valid only when HasUplink.
	Uplink    uplink.Config
	HasUplink bool
	// Seal is where a sealed uplink's keys come from (nil: unsealed);
	// Uplink.Seal holds the keys read at start.
	Seal *SealSettings
	// Gossip is uplink.gossip (gossip.go); nil: hellos.
	Gossip *GossipSettings
	Log    LogConfig
}

// Fence is one fence with its attachments and gateway.
type Fence struct {
	vswitch.FenceConfig
	PortMaxMACs int
	Listen      []attach.Addr
	Dial        []attach.Addr
	Gateway     *stack.Config // nil: no gateway
	// Forwards are the gateway's port forwards (Fence set), started with
	// it.
	Forwards []forward.Forward
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// maxHostID bounds host.id (DESIGN.md section 1: 0 and 0xFFFF are
// reserved). The fence ID range is fence.MinFenceID … fence.MaxFenceID.
const maxHostID = 0xFFFE

// validate converts raw into a Config, checking every key: one step per
// section of the configuration, in order (later steps read what earlier
// ones set). Its errors are *ConfigError naming the key.
func validate(raw *fileConfig) (*Config, error) {
	v := &validator{raw: raw, cfg: &Config{}, used: map[string]string{}}
	for _, step := range []func() error{
		v.portLimits,
		v.log,
		v.queueLimit,
		v.fences,
		v.admin,
		v.metrics,
		v.stateDir,
		v.uplink,
		v.gatewayMTU,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return v.cfg, nil
}

// validator carries a validation's state from step to step.
type validator struct {
	raw  *fileConfig
	cfg  *Config
	used map[string]string // address key (addrKey) → the key that binds it, "fences[i].listen[j]"
}

// Bounds of limits.max_queued_bytes: at least a few maximum frames, at
// most 1 TiB.
const (
	minQueuedBytes = 1 << 20
	maxQueuedBytes = 1 << 40
)

// queueLimit checks limits.max_queued_bytes, the switch's bound on the
// bytes queued for all ports together.
func (v *validator) queueLimit() error {
	n := v.raw.Limits.MaxQueuedBytes
	if n == nil {
		return nil // vswitch.DefaultMaxQueuedBytes
	}
	if *n < minQueuedBytes || *n > maxQueuedBytes {
		return cfgErr("limits.max_queued_bytes", "%d: want %d (1 MiB) … %d (1 TiB)", *n, minQueuedBytes, int64(maxQueuedBytes))
	}
	v.cfg.Switch.MaxQueuedBytes = *n
	return nil
}

// log checks log.format and log.level.
func (v *validator) log() error {
	raw, cfg := v.raw, v.cfg
	switch strings.ToLower(raw.Log.Format) {
	case "", "text":
		cfg.Log.Format = "text"
	case "json":
		cfg.Log.Format = "json"
	default:
		return cfgErr("log.format", "%q: want text or json", raw.Log.Format)
	}
	if raw.Log.Level != "" {
		if err := cfg.Log.Level.UnmarshalText([]byte(raw.Log.Level)); err != nil {
			return cfgErr("log.level", "%q: want debug, info, warn or error", raw.Log.Level)
		}
	}
	return nil
}

// fences checks fences[]: IDs and names unique, addresses bound once, the
// gateways, and no host address forwarded by two fences.
func (v *validator) fences() error {
	if len(v.raw.Fences) == 0 {
		return cfgErr("fences", "no fence configured")
	}
	ids := map[uint32]int{}   // fence ID → index
	names := map[string]int{} // fence name → index
	for i, rf := range v.raw.Fences {
		key := fmt.Sprintf("fences[%d]", i)
		f, err := fenceIdentity(key, rf, ids, names)
		if err != nil {
			return err
		}
		ids[f.ID], names[f.Name] = i, i
		if err := v.fenceAddrs(key, rf, &f); err != nil {
			return err
		}
		if f.Gateway, err = gatewayConfig(key+".gateway", f, rf.Gateway); err != nil {
			return err
		}
		if g := f.Gateway; g != nil && g.Socks.IsValid() && g.Socks.Port() != 0 {
			// The SOCKS endpoint binds a TCP address like a tcp:// listener.
			k, uk := key+".gateway.socks", "tcp:"+g.Socks.String()
			if prev, dup := v.used[uk]; dup {
				return cfgErr(k, "%q already used by %s", rf.Gateway.Socks, prev)
			}
			v.used[uk] = k
		}
		if f.Forwards, err = forwardsConfig(key+".gateway", f, rf.Gateway); err != nil {
			return err
		}
		v.cfg.Fences = append(v.cfg.Fences, f)
	}
	return checkForwardConflicts(v.cfg.Fences)
}

// fenceIdentity checks one fence's ID and name (unique among those in ids
// and names) and its MAC limits.
func fenceIdentity(key string, rf fileFence, ids map[uint32]int, names map[string]int) (Fence, error) {
	f := Fence{}
	if rf.ID == nil {
		return f, cfgErr(key+".id", "missing")
	}
	if *rf.ID < 0 || *rf.ID > math.MaxUint32 || !fence.ValidFenceID(uint32(*rf.ID)) {
		return f, cfgErr(key+".id", "%#x out of range %d..0x%X", *rf.ID, fence.MinFenceID, fence.MaxFenceID)
	}
	f.ID = uint32(*rf.ID)
	if j, dup := ids[f.ID]; dup {
		return f, cfgErr(key+".id", "%d already used by fences[%d]", f.ID, j)
	}
	if rf.Name == "" {
		return f, cfgErr(key+".name", "missing")
	}
	if strings.ContainsAny(rf.Name, " \t\n/") {
		return f, cfgErr(key+".name", "%q: no spaces or slashes", rf.Name)
	}
	if j, dup := names[rf.Name]; dup {
		return f, cfgErr(key+".name", "%q already used by fences[%d]", rf.Name, j)
	}
	f.Name = rf.Name
	if rf.MaxMACs < 0 {
		return f, cfgErr(key+".max_macs", "%d: must not be negative", rf.MaxMACs)
	}
	f.MaxMACs = int(rf.MaxMACs)
	if rf.PortMACs < 0 {
		return f, cfgErr(key+".port_max_macs", "%d: must not be negative", rf.PortMACs)
	}
	f.PortMaxMACs = int(rf.PortMACs)
	if r := rf.BUMRate; r != nil { // nil: vswitch.DefaultBUMRate
		switch {
		case *r < 0 || *r > vswitch.MaxBUMRate:
			return f, cfgErr(key+".bum_rate", "%d: want 0 (off) … %d frames/s", *r, vswitch.MaxBUMRate)
		case *r == 0:
			f.BUMRate = -1 // storm control off
		default:
			f.BUMRate = int(*r)
		}
	}
	return f, nil
}

// fenceAddrs checks one fence's listen and dial addresses: each resource
// (socket path, host:port, vsock port, stdio) is bound once in all.
func (v *validator) fenceAddrs(key string, rf fileFence, f *Fence) error {
	for j, s := range rf.Listen {
		k := fmt.Sprintf("%s.listen[%d]", key, j)
		a, err := parseAttachAddr(k, s)
		if err != nil {
			return err
		}
		if uk := addrKey(a); uk != "" {
			if prev, dup := v.used[uk]; dup {
				return cfgErr(k, "%q already used by %s", s, prev)
			}
			v.used[uk] = k
		}
		f.Listen = append(f.Listen, a)
	}
	for j, s := range rf.Dial {
		k := fmt.Sprintf("%s.dial[%d]", key, j)
		a, err := parseAttachAddr(k, s)
		if err != nil {
			return err
		}
		if a.Scheme == attach.Stdio {
			if prev, dup := v.used["stdio"]; dup {
				return cfgErr(k, "%q already used by %s", s, prev)
			}
			v.used["stdio"] = k
		}
		f.Dial = append(f.Dial, a)
	}
	return nil
}

// admin checks admin.listen: a unix socket no fence listens on.
func (v *validator) admin() error {
	s := v.raw.Admin.Listen
	if s == "" {
		return nil
	}
	a, err := parseAttachAddr("admin.listen", s)
	if err != nil {
		return err
	}
	if a.Scheme != attach.Unix {
		return cfgErr("admin.listen", "%q: the admin API listens on unix:// only", s)
	}
	if prev, dup := v.used[addrKey(a)]; dup {
		return cfgErr("admin.listen", "%q already used by %s", s, prev)
	}
	v.cfg.Admin = a
	return nil
}

// metrics checks metrics.listen.
func (v *validator) metrics() error {
	s := v.raw.Metrics.Listen
	if s == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return cfgErr("metrics.listen", "%q: want host:port", s)
	}
	v.cfg.Metrics = s
	return nil
}

// stateDir checks state_dir (default: $XDG_STATE_HOME/corral), names this
// instance's directory under it (state.go: by the admin socket, else by
// host.name) and gives that to the gateways (their leases).
func (v *validator) stateDir() error {
	cfg := v.cfg
	cfg.StateDir = v.raw.StateDir
	if cfg.StateDir != "" {
		s, err := expand("state_dir", cfg.StateDir)
		if err != nil {
			return err
		}
		cfg.StateDir = filepath.Clean(s)
	} else {
		cfg.StateDir = defaultStateDir()
	}
	if cfg.StateDir != "" {
		cfg.InstanceKey, cfg.InstanceDir = instanceState(cfg.StateDir, cfg.Admin, configHostName(v.raw))
	}
	for i := range cfg.Fences {
		if g := cfg.Fences[i].Gateway; g != nil {
			g.StateDir = cfg.InstanceDir
		}
	}
	return nil
}

// uplink checks the host.* and uplink.* keys (uplink_config.go).
func (v *validator) uplink() error { return uplinkConfig(v.cfg, v.raw) }

// gatewayMTU: over an uplink, gateways advertise the MTU that avoids
// fragmentation (DESIGN.md 3.4) unless gateway.mtu is set.
func (v *validator) gatewayMTU() error {
	cfg := v.cfg
	if !cfg.HasUplink {
		return nil
	}
	mtu := guestMTU(cfg.Uplink)
	for i := range cfg.Fences {
		if g := cfg.Fences[i].Gateway; g != nil && g.MTU == 0 {
			g.MTU = mtu
		}
	}
	return nil
}

// parseAttachAddr expands $VARs in s and parses it as an attachment address.
func parseAttachAddr(key, s string) (attach.Addr, error) {
	e, err := expand(key, s)
	if err != nil {
		return attach.Addr{}, err
	}
	a, err := attach.ParseAddr(e)
	if err != nil {
		return attach.Addr{}, cfgErr(key, "%q: %v", s, err)
	}
	if err := attach.CheckOS(a); err != nil {
		return attach.Addr{}, cfgErr(key, "%q: %v", s, err)
	}
	return a, nil
}

// expand replaces $VAR and ${VAR}; $XDG_RUNTIME_DIR falls back to
// runtimeDir(). An unset variable is an error.
func expand(key, s string) (string, error) {
	var missing string
	out := os.Expand(s, func(name string) string {
		if name == "XDG_RUNTIME_DIR" {
			return runtimeDir()
		}
		v, ok := os.LookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", cfgErr(key, "%q: environment variable $%s is not set", s, missing)
	}
	return out, nil
}

// runtimeDir is $XDG_RUNTIME_DIR, else /tmp/corral-UID: exactly what the
// shell's ${XDG_RUNTIME_DIR:-/tmp/corral-$(id -u)} gives, so that the
// documented command lines name the sockets corral creates (the caller
// appends "corral/"). The fallback is /tmp itself, not $TMPDIR (macOS
// points that at a long per-user path, and socket paths are short).
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return fallbackRuntimeDir()
}

// fallbackRuntimeDir is the runtime directory without $XDG_RUNTIME_DIR.
func fallbackRuntimeDir() string { return "/tmp/corral-" + strconv.Itoa(os.Getuid()) }

// ensurePrivateDir makes sure dir is a directory of this user that nobody
// else can write: created with mode 0700 when missing, refused when it
// exists with other owners or group/world permissions (a shared /tmp
// fallback must not let another user pre-create it).
func ensurePrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Getuid() || st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("runtime directory %s is not a private directory of uid %d (mode %v); set XDG_RUNTIME_DIR", dir, os.Getuid(), st.Mode())
	}
	return nil
}

// tempRuntimeDir reports the /tmp fallback of runtimeDir when it is the
// one in use, else "".
func tempRuntimeDir() string {
	if os.Getenv("XDG_RUNTIME_DIR") != "" {
		return ""
	}
	return fallbackRuntimeDir()
}

func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "corral")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "corral")
	}
	return ""
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// addrKey names the resource an address binds so that two listeners on one
// resource are caught: a socket path (whatever its scheme), a TCP or UDP
// host:port, a vsock port. Port 0 (any free port) never conflicts.
func addrKey(a attach.Addr) string {
	switch a.Scheme {
	case attach.Unix, attach.Unixgram, attach.Unixpacket:
		return "path:" + filepath.Clean(a.Target)
	case attach.TCP, attach.UDP:
		host, port, err := net.SplitHostPort(a.Target)
		if err != nil || port == "0" {
			return ""
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.Unmap().String()
		}
		return string(a.Scheme) + ":" + net.JoinHostPort(host, port)
	case attach.Stdio:
		return "stdio"
	case attach.Vsock:
		t := a.Target
		if i := strings.LastIndexByte(t, ':'); i >= 0 {
			t = t[i+1:]
		}
		if t == "0" {
			return ""
		}
		return "vsock:" + t
	}
	return ""
}

// gatewayConfig converts one fence's gateway keys; nil when disabled.
func gatewayConfig(key string, f Fence, g fileGateway) (*stack.Config, error) {
	if !g.Enabled {
		return nil, nil
	}
	sc := &stack.Config{Fence: f.ID, FenceName: f.Name}
	if g.Subnet != "" {
		p, err := netip.ParsePrefix(g.Subnet)
		if err != nil {
			return nil, cfgErr(key+".subnet", "%q: %v", g.Subnet, err)
		}
		sc.Subnet = p
	}
	if g.MAC != "" {
		hw, err := net.ParseMAC(g.MAC)
		if err != nil || len(hw) != 6 {
			return nil, cfgErr(key+".mac", "%q: want a 6-byte MAC", g.MAC)
		}
		copy(sc.MAC[:], hw)
	}
	sc.MTU = int(g.MTU)
	sc.Domain = g.Domain
	var err error
	if sc.LeaseTime, err = parseDuration(key+".lease_time", g.LeaseTime); err != nil {
		return nil, err
	}
	if sc.UDPIdleTimeout, err = parseDuration(key+".udp_idle_timeout", g.UDPIdleTimeout); err != nil {
		return nil, err
	}
	sc.NoIPv6 = g.IPv6 != nil && !*g.IPv6
	if g.IPv6Prefix != "" {
		p, err := netip.ParsePrefix(g.IPv6Prefix)
		if err != nil {
			return nil, cfgErr(key+".ipv6_prefix", "%q: %v", g.IPv6Prefix, err)
		}
		if !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 {
			return nil, cfgErr(key+".ipv6_prefix", "%q: want an IPv6 /64 such as fd00:1::/64", g.IPv6Prefix)
		}
		if sc.NoIPv6 {
			return nil, cfgErr(key+".ipv6_prefix", "%q: set while %s.ipv6 is false", g.IPv6Prefix, key)
		}
		sc.IPv6Prefix = p
	}
	if sc.Allow, err = parsePrefixes(key+".allow", g.Allow); err != nil {
		return nil, err
	}
	if sc.Deny, err = parsePrefixes(key+".deny", g.Deny); err != nil {
		return nil, err
	}
	sc.MaxTCPConns = int(g.MaxTCPConns)
	sc.MaxUDPFlows = int(g.MaxUDPFlows)
	if err := natGuestLimits(key, g, sc); err != nil {
		return nil, err
	}
	for j, r := range g.Resolvers {
		ap, err := parseAddrPort(r, 53)
		if err != nil {
			return nil, cfgErr(fmt.Sprintf("%s.resolvers[%d]", key, j), "%q: %v", r, err)
		}
		sc.Resolvers = append(sc.Resolvers, ap)
	}
	if g.Socks != "" {
		if sc.Socks, err = parseSocks(key+".socks", g.Socks); err != nil {
			return nil, err
		}
	}
	if sc.DNSRecords, err = dnsRecords(key+".dns.records", sc.Domain, g.DNS.Records); err != nil {
		return nil, err
	}
	if err := sc.Validate(); err != nil {
		return nil, cfgErr(key, "%v", strings.TrimPrefix(err.Error(), stack.ErrInvalidConfig.Error()+": "))
	}
	return sc, nil
}

// forwardsConfig converts one fence's gateway.forwards (key is the
// gateway's); nil without a gateway. A target must be inside the fence's
// subnet or IPv6 prefix.
func forwardsConfig(key string, f Fence, g fileGateway) ([]forward.Forward, error) {
	if f.Gateway == nil {
		if len(g.Forwards) > 0 {
			return nil, cfgErr(key+".forwards", "set while %s.enabled is false", key)
		}
		return nil, nil
	}
	prefixes := gatewayPrefixes(f.Gateway)
	var out []forward.Forward
	for j, fw := range g.Forwards {
		k := fmt.Sprintf("%s.forwards[%d]", key, j)
		proto := strings.ToLower(fw.Proto)
		if proto == "" {
			proto = forward.TCP
		}
		if proto != forward.TCP && proto != forward.UDP {
			return nil, cfgErr(k+".proto", "%q: want tcp or udp", fw.Proto)
		}
		l, err := netip.ParseAddrPort(fw.Listen)
		if err != nil {
			return nil, cfgErr(k+".listen", "%q: want IP:port", fw.Listen)
		}
		t, err := netip.ParseAddrPort(fw.Target)
		if err != nil {
			return nil, cfgErr(k+".target", "%q: want IP:port", fw.Target)
		}
		if f.Gateway.NoIPv6 && t.Addr().Unmap().Is6() {
			return nil, cfgErr(k+".target", "%q: IPv6 target while %s.ipv6 is false", fw.Target, key)
		}
		if !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(t.Addr().Unmap()) }) {
			return nil, cfgErr(k+".target", "%q: outside the fence's subnets %v", fw.Target, prefixes)
		}
		ff := forward.Forward{Fence: f.ID, Proto: proto, Listen: l, Target: t, SNI: fw.SNI, Host: fw.Host}
		if err := ff.Validate(); err != nil {
			return nil, cfgErr(k, "%v", strings.TrimPrefix(err.Error(), forward.ErrInvalid.Error()+": "))
		}
		out = append(out, ff.Normalize())
	}
	return out, nil
}

// natGuestLimits converts gateway.host_loopback, max_tcp_conns_per_guest,
// max_udp_flows_per_guest and tcp_idle_timeout (issue 8).
func natGuestLimits(key string, g fileGateway, sc *stack.Config) error {
	sc.NoHostLoopback = g.HostLoopback != nil && !*g.HostLoopback
	perGuest := func(k string, v *int64, fence int64, fenceKey string, def int64) (int, error) {
		if v == nil {
			return 0, nil
		}
		if fence == 0 {
			fence = def
		}
		if *v < 1 || *v > fence {
			return 0, cfgErr(key+"."+k, "%d: want 1..%d (%s.%s); omit it for a quarter of that", *v, fence, key, fenceKey)
		}
		return int(*v), nil
	}
	var err error
	if sc.MaxTCPConnsPerGuest, err = perGuest("max_tcp_conns_per_guest", g.MaxTCPConnsPerGuest, g.MaxTCPConns, "max_tcp_conns", stack.DefaultMaxTCPConns); err != nil {
		return err
	}
	if sc.MaxUDPFlowsPerGuest, err = perGuest("max_udp_flows_per_guest", g.MaxUDPFlowsPerGuest, g.MaxUDPFlows, "max_udp_flows", stack.DefaultMaxUDPFlows); err != nil {
		return err
	}
	if g.TCPIdleTimeout != "" {
		d, err := time.ParseDuration(g.TCPIdleTimeout)
		if err != nil || d < time.Second {
			return cfgErr(key+".tcp_idle_timeout", "%q: want a duration of at least 1s, such as 2h4m (the default)", g.TCPIdleTimeout)
		}
		sc.TCPIdleTimeout = d
	}
	return nil
}

// parseSocks parses gateway.socks: "IP:port", or a bare port on
// 127.0.0.1. A missing host (":1080", every interface) is refused: a
// SOCKS endpoint reaches the whole fence, so an address other than
// loopback must be written out.
func parseSocks(key, s string) (netip.AddrPort, error) {
	if p, err := strconv.ParseUint(s, 10, 16); err == nil {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)), nil
	}
	if strings.HasPrefix(s, ":") {
		return netip.AddrPort{}, cfgErr(key, "%q: no host would listen on every interface; write 127.0.0.1%s (anyone who reaches the endpoint reaches the fence)", s, s)
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, cfgErr(key, "%q: want IP:port such as 127.0.0.1:1080", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// dnsRecords converts gateway.dns.records; domain is the gateway's
// (names of one label go under it).
func dnsRecords(key, domain string, raw []fileDNSRecord) ([]dns.Record, error) {
	var out []dns.Record
	for j, r := range raw {
		k := fmt.Sprintf("%s[%d]", key, j)
		rec := dns.Record{Name: r.Name, Type: r.Type, Data: r.Data}
		if r.TTL != "" {
			if n, err := strconv.ParseUint(r.TTL, 10, 31); err == nil {
				rec.TTL = time.Duration(n) * time.Second
			} else if d, err := time.ParseDuration(r.TTL); err == nil {
				rec.TTL = d
			} else {
				return nil, cfgErr(k+".ttl", "%q: want seconds or a duration such as 5m", r.TTL)
			}
		}
		if err := rec.Validate(); err != nil {
			return nil, cfgErr(k, "%s", strings.TrimPrefix(err.Error(), dns.ErrInvalidRecord.Error()+": "))
		}
		out = append(out, rec)
	}
	if err := dns.ValidateRecords(domain, out); err != nil {
		return nil, cfgErr(key, "%s", strings.TrimPrefix(err.Error(), dns.ErrInvalidRecord.Error()+": "))
	}
	return out, nil
}

// gatewayPrefixes returns where a gateway's guests are: its subnet and,
// unless IPv6 is off, its IPv6 prefix (defaults applied).
func gatewayPrefixes(c *stack.Config) []netip.Prefix {
	subnet, prefix6 := stack.DefaultSubnet, stack.DefaultIPv6Prefix
	if c.Subnet.IsValid() {
		subnet = c.Subnet.Masked()
	}
	if c.IPv6Prefix.IsValid() {
		prefix6 = c.IPv6Prefix.Masked()
	}
	if c.NoIPv6 {
		return []netip.Prefix{subnet}
	}
	return []netip.Prefix{subnet, prefix6}
}

// checkForwardConflicts rejects two forwards with one route (protocol,
// listen address, sni or host), in one fence or in two (forwards share a
// listen address only with distinct names, package forward), and a TCP
// forward on a fence's SOCKS endpoint address.
func checkForwardConflicts(fences []Fence) error {
	seen := map[forward.Route]string{}
	socks := map[netip.AddrPort]string{}
	for i, f := range fences {
		if f.Gateway != nil && f.Gateway.Socks.IsValid() && f.Gateway.Socks.Port() != 0 {
			socks[f.Gateway.Socks] = fmt.Sprintf("fences[%d].gateway.socks", i)
		}
	}
	for i, f := range fences {
		for j, fw := range f.Forwards {
			if prev, ok := socks[fw.Listen]; ok && fw.Proto == forward.TCP {
				return cfgErr(fmt.Sprintf("fences[%d].gateway.forwards[%d].listen", i, j), "tcp %s already used by %s", fw.Listen, prev)
			}
			if fw.Listen.Port() == 0 {
				continue // a new socket on a free port each
			}
			k := fmt.Sprintf("fences[%d].gateway.forwards[%d].listen", i, j)
			r := fw.Route()
			if prev, dup := seen[r]; dup {
				return cfgErr(k, "%s already used by %s", r, strings.TrimSuffix(prev, ".listen"))
			}
			seen[r] = k
		}
	}
	return nil
}

// parsePrefixes parses a list of CIDR prefixes; a bare address is a
// one-address prefix (/32 or /128).
func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if p != p.Masked() {
				return nil, cfgErr(k, "%q: host bits set (did you mean %s?)", s, p.Masked())
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, cfgErr(k, "%q: want a prefix such as 192.0.2.0/24 or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func parseDuration(key, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, cfgErr(key, "%q: want a duration such as 30s or 1h", s)
	}
	return d, nil
}

// parseAddrPort parses "IP:port", "[IPv6]:port" or a bare IP (defPort).
func parseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("port 0")
		}
		return ap, nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want IP:port or IP")
	}
	return netip.AddrPortFrom(ip, defPort), nil
}
