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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/stack"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// Config is the validated, typed configuration of a corral process.
type Config struct {
	Switch   vswitch.Config
	Fences   []Fence
	Admin    attach.Addr // Scheme "" when there is no admin socket
	Metrics  string      // host:port, "" for none
	StateDir string
	// Uplink is the uplink configuration; valid only when HasUplink.
	Uplink    uplink.Config
	HasUplink bool
	Log       LogConfig
}

// Fence is one fence with its attachments and gateway.
type Fence struct {
	vswitch.FenceConfig
	PortMaxMACs int
	Listen      []attach.Addr
	Dial        []attach.Addr
	Gateway     *stack.Config // nil: no gateway
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
		v.pending,
		v.log,
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

// stateDir checks state_dir (default: $XDG_STATE_HOME/corral) and gives it
// to the gateways (their leases).
func (v *validator) stateDir() error {
	cfg := v.cfg
	cfg.StateDir = v.raw.StateDir
	if cfg.StateDir != "" {
		s, err := expand("state_dir", cfg.StateDir)
		if err != nil {
			return err
		}
		cfg.StateDir = s
	} else {
		cfg.StateDir = defaultStateDir()
	}
	for i := range cfg.Fences {
		if g := cfg.Fences[i].Gateway; g != nil {
			g.StateDir = cfg.StateDir
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

// runtimeDir is $XDG_RUNTIME_DIR, else /run/user/UID when it exists, else
// os.TempDir()/corral-UID's parent (the caller appends "corral/").
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	uid := strconv.Itoa(os.Getuid())
	if d := filepath.Join("/run/user", uid); isDir(d) {
		return d
	}
	return filepath.Join(os.TempDir(), "corral-"+uid)
}

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

// tempRuntimeDir reports the os.TempDir fallback of runtimeDir when it is
// the one in use, else "".
func tempRuntimeDir() string {
	if os.Getenv("XDG_RUNTIME_DIR") != "" {
		return ""
	}
	d := runtimeDir()
	if strings.HasPrefix(d, os.TempDir()) {
		return d
	}
	return ""
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
	for j, fw := range g.Forwards {
		k := fmt.Sprintf("%s.forwards[%d]", key, j)
		proto := strings.ToLower(fw.Proto)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
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
		if sc.NoIPv6 && t.Addr().Unmap().Is6() {
			return nil, cfgErr(k+".target", "%q: IPv6 target while %s.ipv6 is false", fw.Target, key)
		}
		sf := stack.Forward{Proto: proto, Listen: l, Target: t}
		if err := sf.Validate(); err != nil {
			return nil, cfgErr(k, "%v", strings.TrimPrefix(err.Error(), stack.ErrInvalidConfig.Error()+": "))
		}
		sc.Forwards = append(sc.Forwards, sf)
	}
	if err := sc.Validate(); err != nil {
		return nil, cfgErr(key, "%v", strings.TrimPrefix(err.Error(), stack.ErrInvalidConfig.Error()+": "))
	}
	return sc, nil
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

// checkForwardConflicts rejects one host address forwarded by two fences.
func checkForwardConflicts(fences []Fence) error {
	seen := map[string]string{}
	for i, f := range fences {
		if f.Gateway == nil {
			continue
		}
		for j, fw := range f.Gateway.Forwards {
			if fw.Listen.Port() == 0 {
				continue
			}
			k := fmt.Sprintf("fences[%d].gateway.forwards[%d].listen", i, j)
			uk := fw.Proto + " " + fw.Listen.String()
			if prev, dup := seen[uk]; dup {
				return cfgErr(k, "%s %s already used by %s", fw.Proto, fw.Listen, prev)
			}
			seen[uk] = k
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
