package main

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/gossip"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// GossipSettings is uplink.gossip (DESIGN.md 4.7, issue 10): membership
// and fence state on memberlist instead of hellos.
type GossipSettings struct {
	Listen  netip.AddrPort // TCP and UDP
	Join    []string       // host:port
	Profile gossip.Profile
}

// gossipKeyInfo is the HKDF-SHA256 info label of the gossip key derived
// from the installation secret (distinct from every fence key's).
const gossipKeyInfo = "corral gossip key v1"

// gossipPublishInterval is how often the local fences, gateways and the
// MACs of the local ports are compared with what gossip announces.
const gossipPublishInterval = time.Second

// gossipConfig checks uplink.gossip and, when set, turns the uplink's
// hellos off (c.Directory).
func gossipConfig(cfg *Config, raw *fileConfig, c *uplink.Config) error {
	g := raw.Uplink.Gossip
	if g.Listen == "" {
		if len(g.Join) > 0 || g.Profile != "" {
			return cfgErr("uplink.gossip.listen", "required when uplink.gossip.join or profile is set")
		}
		return nil
	}
	if !cfg.HasUplink {
		return cfgErr("uplink.gossip.listen", "gossip carries the uplink's control plane; configure uplink.udp.listen or uplink.raw.interface")
	}
	s := &GossipSettings{Profile: gossip.ProfileLAN}
	ap, err := parseHostPort(g.Listen, gossip.DefaultPort, true)
	if err != nil {
		return cfgErr("uplink.gossip.listen", "%q: %v", g.Listen, err)
	}
	s.Listen = ap
	for i, j := range g.Join {
		hp, err := joinAddr(j)
		if err != nil {
			return cfgErr(fmt.Sprintf("uplink.gossip.join[%d]", i), "%q: %v", j, err)
		}
		s.Join = append(s.Join, hp)
	}
	switch p := gossip.Profile(strings.ToLower(g.Profile)); p {
	case "", gossip.ProfileLAN:
	case gossip.ProfileWAN:
		s.Profile = p
	default:
		return cfgErr("uplink.gossip.profile", "%q: want lan or wan", g.Profile)
	}
	u := raw.Uplink.UDP
	switch {
	case len(u.Peers) > 0:
		return cfgErr("uplink.udp.peers", "with uplink.gossip, peers come from gossip; remove the static peers")
	case u.Group != "":
		return cfgErr("uplink.udp.group", "with uplink.gossip, floods go to the fence's hosts from gossip; remove the group")
	case u.LearnPeers != nil && *u.LearnPeers:
		return cfgErr("uplink.udp.learn_peers", "with uplink.gossip, peers come from gossip, never from datagrams")
	}
	if len(c.HostName) > gossip.MaxNameLen {
		return cfgErr("host.name", "%q: gossip node names are at most %d bytes", c.HostName, gossip.MaxNameLen)
	}
	c.Directory = true
	cfg.Gossip = s
	return nil
}

// parseHostPort parses "IP:port", ":port" (0.0.0.0) or a bare IP
// (defPort); port 0 only when zeroOK.
func parseHostPort(s string, defPort uint16, zeroOK bool) (netip.AddrPort, error) {
	if rest, ok := strings.CutPrefix(s, ":"); ok {
		s = "0.0.0.0:" + rest
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 && !zeroOK {
			return ap, fmt.Errorf("port 0")
		}
		return ap, nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want IP:port, :port or IP")
	}
	return netip.AddrPortFrom(ip, defPort), nil
}

// joinAddr checks a join address, "host:port" or "host" (port 7946).
func joinAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), strconv.Itoa(gossip.DefaultPort)
	}
	if host == "" || strings.ContainsAny(host, " /\t") {
		return "", fmt.Errorf("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q out of range 1..65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// gossipKeys derives the gossip keys from the installation secret (and
// the previous one during a rotation): HKDF-SHA256, info
// "corral gossip key v1" · installation ID, 32 bytes (memberlist's
// AES-256-GCM keyring).
func gossipKeys(ss *SealSettings) (key []byte, previous [][]byte, err error) {
	derive := func(sec []byte) ([]byte, error) {
		return hkdf.Key(sha256.New, sec, nil, gossipKeyInfo+string([]byte{ss.Installation}), gossip.SecretKeyLen)
	}
	secret, err := readSecret("uplink.seal.secret_file", ss.SecretFile)
	if err != nil {
		return nil, nil, err
	}
	if key, err = derive(secret); err != nil {
		return nil, nil, cfgErr("uplink.seal.secret_file", "%v", err)
	}
	if ss.PreviousSecretFile != "" {
		prev, err := readPrevious("uplink.seal.previous_secret_file", ss.PreviousSecretFile)
		if err != nil {
			return nil, nil, err
		}
		if prev != nil {
			k, err := derive(prev)
			if err != nil {
				return nil, nil, cfgErr("uplink.seal.previous_secret_file", "%v", err)
			}
			previous = append(previous, k)
		}
	}
	return key, previous, nil
}

// startGossip starts the gossip node of a running uplink u: its view
// goes to the uplink (SetDirectory), and a publisher announces the local
// fences, the gateways served and the MACs of the local ports.
func startGossip(rt *instance, u *uplink.Uplink) error {
	gs := rt.cfg.Gossip
	gc := gossip.Config{
		Name:           rt.cfg.Uplink.HostName,
		OuterMAC:       u.OuterMAC(),
		Installation:   rt.cfg.Uplink.Installation,
		BindAddr:       gs.Listen,
		Join:           gs.Join,
		Profile:        gs.Profile,
		MaxMACsPerHost: rt.cfg.Switch.MaxHostMACs,
		Logger:         rt.log.With("component", "gossip"),
		OnChange:       func(s *gossip.Snapshot) { u.SetDirectory(s) },
	}
	if a := u.LocalAddr(); a.IsValid() {
		gc.DataAddrs = []netip.AddrPort{a}
	}
	if rt.cfg.Seal != nil {
		var err error
		if gc.SecretKey, gc.PreviousKeys, err = gossipKeys(rt.cfg.Seal); err != nil {
			return err
		}
	}
	// Registered before it binds, so that no guest's NAT reaches it.
	if gs.Listen.Port() != 0 {
		rt.self.add("tcp", gs.Listen)
		rt.self.add("udp", gs.Listen)
	}
	n, err := gossip.New(gc)
	if err != nil {
		return err
	}
	if a := n.LocalAddr(); a.IsValid() {
		rt.self.add("tcp", netip.AddrPortFrom(gs.Listen.Addr(), a.Port()))
		rt.self.add("udp", netip.AddrPortFrom(gs.Listen.Addr(), a.Port()))
	}
	u.SetDirectory(n.Snapshot())
	p := &gossipPublisher{n: n, sw: rt.sw, u: u, log: rt.log.With("component", "gossip")}
	p.publish()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(gossipPublishInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.publish()
			}
		}
	}()
	rt.gossip = n
	rt.onClose(func() error {
		close(done)
		wg.Wait()
		// Announce the departure: the others withdraw this host's fences
		// and MACs at once rather than after failure detection.
		if err := n.Leave(2 * time.Second); err != nil {
			rt.log.Warn("gossip leave", "err", err)
		}
		return n.Close()
	})
	return nil
}

// gossipPublisher compares the switch's local state with what gossip
// announces, once per gossipPublishInterval: a cheap diff of the local
// ports' MACs per fence (the switch's table, no hook in its data path).
type gossipPublisher struct {
	n   *gossip.Node
	sw  *vswitch.Switch
	u   *uplink.Uplink
	log *slog.Logger

	fences, gws []uint32
	macs        map[uint32][][6]byte
	warned      bool
}

func (p *gossipPublisher) publish() {
	fences, gws := p.sw.LocalFences(), p.u.GatewaysServed()
	if !slices.Equal(fences, p.fences) || !slices.Equal(gws, p.gws) {
		if err := p.n.SetLocalFences(fences, gws); err != nil {
			if !p.warned {
				p.warned = true
				p.log.Error("gossip: cannot announce the local fences", "fences", len(fences), "gateways", len(gws), "err", err)
			}
			return
		}
		p.fences, p.gws = fences, gws
	}
	if p.macs == nil {
		p.macs = map[uint32][][6]byte{}
	}
	all := append(slices.Clone(fences), gws...)
	for id := range p.macs {
		if !slices.Contains(all, id) {
			delete(p.macs, id)
		}
	}
	for _, id := range all {
		var macs [][6]byte
		for _, m := range p.sw.LocalMACs(id, nil) { // learned on this host's ports
			if m[0]&1 == 0 {
				macs = append(macs, m)
			}
		}
		if len(macs) > p.n.MaxMACsPerHost() {
			macs = macs[:p.n.MaxMACsPerHost()]
		}
		if old, ok := p.macs[id]; ok && slices.Equal(old, macs) {
			continue
		}
		if err := p.n.SetLocalMACs(id, macs); err != nil {
			continue // not a local fence for gossip (yet): next round
		}
		p.macs[id] = macs
	}
}

// gossipAdmin adapts the gossip node to admin.Gossip.
type gossipAdmin struct{ n *gossip.Node }

func (g gossipAdmin) Status() admin.GossipStatus {
	st := g.n.Status()
	c := st.Counters
	out := admin.GossipStatus{
		Name: st.Name, Addr: st.Addr.String(), Profile: string(st.Profile), Encrypted: st.Encrypted,
		Join: st.Join, DuplicateOuterMACs: st.DuplicateOuterMACs,
		Members: []admin.GossipMember{}, Fences: []admin.GossipFence{},
		Counters: map[string]uint64{
			"bytes_in": c.BytesIn, "bytes_out": c.BytesOut,
			"updates_sent": c.UpdatesSent, "updates_received": c.UpdatesReceived,
			"macs_sent": c.MACsSent, "macs_received": c.MACsReceived, "macs_refused": c.MACsRefused,
			"syncs_sent": c.SyncsSent, "syncs_received": c.SyncsReceived, "pulls": c.Pulls,
			"not_member": c.NotMember, "stale": c.Stale, "bad_messages": c.BadMessages, "bad_meta": c.BadMeta,
			"duplicate_outer_mac": c.DuplicateOuterMAC, "in_dropped": c.InDropped, "out_dropped": c.OutDropped,
			"send_errors": c.SendErrors, "join_attempts": c.JoinAttempts,
		},
	}
	if out.Join == nil {
		out.Join = []string{}
	}
	for _, m := range st.Members {
		am := admin.GossipMember{Name: m.Name, Self: m.Self, State: m.State.String(), Since: m.Since,
			Addr: m.Addr.String(), Valid: m.Valid, Fences: orEmpty(m.Fences), Gateways: orEmpty(m.Gateways)}
		if m.Valid {
			am.OuterMAC = net.HardwareAddr(m.OuterMAC[:]).String()
			for _, a := range m.DataAddrs {
				am.DataAddrs = append(am.DataAddrs, a.String())
			}
		}
		out.Members = append(out.Members, am)
	}
	for _, f := range st.Fences {
		hosts := f.Hosts
		if hosts == nil {
			hosts = []string{}
		}
		out.Fences = append(out.Fences, admin.GossipFence{ID: f.ID, Hosts: hosts, LocalMACs: len(f.LocalMACs),
			RemoteMACs: f.RemoteMACs, Gateway: f.Gateway, GatewayClaims: f.GatewayClaims})
	}
	return out
}

func orEmpty(l []uint32) []uint32 {
	if l == nil {
		return []uint32{}
	}
	return l
}

// reloadGossipKeys re-derives the gossip keys from the key files (SIGHUP,
// after the uplink's keys): gossip follows a rotation of the
// installation secret in the same three rounds.
func reloadGossipKeys(rt *instance) error {
	if rt.gossip == nil || rt.cfg.Seal == nil {
		return nil
	}
	key, prev, err := gossipKeys(rt.cfg.Seal)
	if err != nil {
		return err
	}
	return rt.gossip.SetKeys(key, prev)
}
