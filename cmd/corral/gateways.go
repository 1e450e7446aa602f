package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/stack"
)

// The gateways in the admin API: adminGateways adapts the gateway set
// (wire.go) and package stack's gateways to admin.Gateways, converting
// stack's snapshots and errors into the API's. `corral gateways [FENCE]`
// shows them (GET /v1/gateways).

// adminGateways implements admin.Gateways over the gateway set and the
// process's port forwards.
type adminGateways struct {
	set    *gatewaySet
	fwd    *forward.Forwarder
	fences map[uint32]Fence // every configured fence, by ID; read-only
}

func newAdminGateways(set *gatewaySet, fwd *forward.Forwarder, fences []Fence) adminGateways {
	a := adminGateways{set: set, fwd: fwd, fences: make(map[uint32]Fence, len(fences))}
	for _, f := range fences {
		a.fences[f.ID] = f
	}
	return a
}

// Gateway implements admin.Gateways.Gateway.
func (a adminGateways) Gateway(id uint32) admin.Gateway {
	g := a.set.getServed(id)
	if g == nil {
		return nil
	}
	f, _ := a.set.fence(id)
	return adminGateway{gw: g.gw, cfg: f.Gateway, fwd: a.fwd, set: a.set, fence: id}
}

// Configured implements admin.Gateways.Configured.
func (a adminGateways) Configured(id uint32) bool {
	f, ok := a.set.fence(id)
	return ok && f.Gateway != nil
}

// YieldedTo implements admin.Gateways.YieldedTo.
func (a adminGateways) YieldedTo(id uint32) string { return a.set.yieldedTo(id) }

// Served implements admin.Gateways.Served.
func (a adminGateways) Served() []uint32 { return a.set.served() }

// adminGateway implements admin.Gateway over a stack.Gateway and the
// forwards into its fence.
type adminGateway struct {
	gw    *stack.Gateway
	cfg   *stack.Config // its configuration (subnet, IPv6 prefix)
	fwd   *forward.Forwarder
	set   *gatewaySet // forwards are added and removed through it
	fence uint32
}

// Status implements admin.Gateway.Status.
func (g adminGateway) Status() admin.GatewayStatus {
	mac := g.gw.MAC()
	gs := admin.GatewayStatus{
		MAC:   net.HardwareAddr(mac[:]).String(),
		Addr:  addrString(g.gw.Addr()),
		DNS:   addrString(g.gw.DNSAddr()),
		Addr6: addrString(g.gw.Addr6()),
		DNS6:  addrString(g.gw.DNSAddr6()),
		Stats: gatewayStatsOf(g.gw.Stats()),
	}
	if a := g.gw.SocksAddr(); a.IsValid() {
		gs.Socks = a.String()
	}
	for _, l := range g.gw.Leases() {
		gs.Leases = append(gs.Leases, admin.Lease{MAC: l.MAC, IP: l.IP, Hostname: l.Hostname, Expiry: l.Expiry})
	}
	subnet := stack.DefaultSubnet
	prefix6 := stack.DefaultIPv6Prefix
	noIPv6 := false
	if c := g.cfg; c != nil {
		if c.Subnet.IsValid() {
			subnet = c.Subnet.Masked()
		}
		if c.IPv6Prefix.IsValid() {
			prefix6 = c.IPv6Prefix.Masked()
		}
		noIPv6 = c.NoIPv6
	}
	gs.Subnet = subnet.String()
	if !noIPv6 {
		gs.IPv6Prefix = prefix6.String()
	}
	return gs
}

func gatewayStatsOf(s stack.Stats) admin.GatewayStats {
	return admin.GatewayStats{
		InFrames: s.InFrames, OutFrames: s.OutFrames, InDrops: s.InDrops, InFiltered: s.InFiltered, OutDrops: s.OutDrops,
		TCPConns: s.TCPConns, TCPRefused: s.TCPRefused, UDPFlows: s.UDPFlows, UDPRefused: s.UDPRefused,
		ICMPRelayed: s.ICMPRelayed, ICMPReplies: s.ICMPReplies, ICMPDropped: s.ICMPDropped,
		DHCPLeases: s.DHCPLeases, DHCPRequests: s.DHCPRequests, DNSQueries: s.DNSQueries,
		SocksConns: s.Socks.Active, SocksConnects: s.Socks.Connects, SocksAssociates: s.Socks.Associates,
		SocksRefused: s.Socks.Refused, SocksFailed: s.Socks.Failed, SocksOverLimit: s.Socks.OverLimit,
		SocksBad: s.Socks.BadRequests, SocksUDPDropped: s.Socks.UDPDropped,
		InBadChecksum: s.InBadChecksum, OutWaits: s.OutWaits, OutQueued: s.OutQueued, NATGuests: s.NATGuests,
		TCPRefusals: refusalMap(s.TCPRefusals), UDPRefusals: refusalMap(s.UDPRefusals), ICMPRefusals: refusalMap(s.ICMPRefusals),
	}
}

// refusalMap names every reason of a refusal count (zeros included).
func refusalMap(r [stack.NumRefusals]uint64) map[string]uint64 {
	m := make(map[string]uint64, len(r))
	for i, v := range r {
		m[stack.Refusal(i).String()] = v
	}
	return m
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Forwards implements admin.Gateway.Forwards.
func (g adminGateway) Forwards() []admin.Forward {
	var out []admin.Forward
	for _, f := range g.fwd.Forwards(g.fence) {
		out = append(out, forwardOf(f))
	}
	return out
}

func forwardOf(f forward.Forward) admin.Forward {
	return admin.ForwardSpec{Proto: f.Proto, Listen: f.Listen, Target: f.Target, SNI: f.SNI, Host: f.Host}.Forward()
}

// forwardSpec converts an admin API forward of fence id for the
// Forwarder.
func forwardSpec(id uint32, s admin.ForwardSpec) forward.Forward {
	return forward.Forward{Fence: id, Proto: s.Proto, Listen: s.Listen, Target: s.Target, SNI: s.SNI, Host: s.Host}
}

// AddForward implements admin.Gateway.AddForward.
func (g adminGateway) AddForward(s admin.ForwardSpec) (admin.Forward, error) {
	added, err := g.set.addForward(forwardSpec(g.fence, s))
	if err != nil {
		return admin.Forward{}, forwardError(err)
	}
	return forwardOf(added), nil // as running: a listen port 0 is bound
}

// RemoveForward implements admin.Gateway.RemoveForward.
func (g adminGateway) RemoveForward(s admin.ForwardSpec) error {
	return forwardError(g.set.removeForward(forwardSpec(g.fence, s)))
}

// forwardError wraps package forward's errors in the API's (admin answers
// each with its status); the original stays in the chain, except where
// its reason is all the user needs.
func forwardError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, forward.ErrExists):
		return fmt.Errorf("%w: %w", admin.ErrForwardExists, err)
	case errors.Is(err, forward.ErrConflict):
		msg := err.Error()
		if i := strings.LastIndex(msg, forward.ErrConflict.Error()+": "); i >= 0 {
			msg = msg[i+len(forward.ErrConflict.Error())+2:]
		}
		return fmt.Errorf("%w: %s", admin.ErrForwardConflict, msg)
	case errors.Is(err, forward.ErrNotFound):
		return fmt.Errorf("%w: %w", admin.ErrForwardNotFound, err)
	case errors.Is(err, forward.ErrInvalid):
		msg := err.Error()
		if i := strings.LastIndex(msg, forward.ErrInvalid.Error()+": "); i >= 0 {
			msg = msg[i+len(forward.ErrInvalid.Error())+2:]
		}
		return fmt.Errorf("%w: %s", admin.ErrInvalidForward, msg)
	case errors.Is(err, forward.ErrNoFence), errors.Is(err, forward.ErrClosed):
		return fmt.Errorf("%w: %w", admin.ErrGatewayClosed, err)
	}
	return err
}

func (c *cli) newGatewaysCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gateways [FENCE]",
		Short: "Show the gateways of a running switch: addresses, leases, forwards, NAT counters",
		Args:  optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, withFence((*admin.Client).Gateways, args), printGateways)
		},
	}
}

// printRefusals prints the NAT refusals by reason, a row per reason that
// has any, in the order of stack.Refusal; nothing when there are none.
func printRefusals(w io.Writer, s admin.GatewayStats) {
	header := false
	for r := range stack.NumRefusals {
		k := r.String()
		tcp, udp, icmp := s.TCPRefusals[k], s.UDPRefusals[k], s.ICMPRefusals[k]
		if tcp+udp+icmp == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "  REFUSED\tTCP\tUDP\tICMP")
			header = true
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d\n", k, tcp, udp, icmp)
	}
}

func printGateways(w io.Writer, gs []admin.GatewayStatus) {
	if len(gs) == 0 {
		fmt.Fprintln(w, "no gateways")
		return
	}
	for i, g := range gs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "fence %s (%d): gateway %s in %s, DNS %s, MAC %s\n", g.Name, g.Fence, g.Addr, g.Subnet, g.DNS, g.MAC)
		if g.IPv6Prefix != "" {
			fmt.Fprintf(w, "  IPv6 %s: gateway %s, DNS %s\n", g.IPv6Prefix, orDash(g.Addr6), orDash(g.DNS6))
		} else {
			fmt.Fprintln(w, "  IPv6 off")
		}
		s := g.Stats
		fmt.Fprintf(w, "  frames in %d out %d, drops in %d out %d, filtered %d, bad checksums %d, out waits %d\n",
			s.InFrames, s.OutFrames, s.InDrops, s.OutDrops, s.InFiltered, s.InBadChecksum, s.OutWaits)
		fmt.Fprintf(w, "  NAT: tcp %d open %d refused, udp %d flows %d refused, icmp %d relayed %d replies %d dropped; %d guests\n",
			s.TCPConns, s.TCPRefused, s.UDPFlows, s.UDPRefused, s.ICMPRelayed, s.ICMPReplies, s.ICMPDropped, s.NATGuests)
		printRefusals(w, s)
		fmt.Fprintf(w, "  DHCP %d requests, %d leases; DNS %d queries\n", s.DHCPRequests, s.DHCPLeases, s.DNSQueries)
		if g.Socks != "" {
			fmt.Fprintf(w, "  SOCKS5 %s: %d open, %d connects, %d udp associations, %d refused (outside the fence), %d failed, %d over limit, %d bad, %d udp dropped\n",
				g.Socks, s.SocksConns, s.SocksConnects, s.SocksAssociates, s.SocksRefused, s.SocksFailed, s.SocksOverLimit, s.SocksBad, s.SocksUDPDropped)
		}
		if len(g.Leases) > 0 {
			fmt.Fprintln(w, "  LEASE\tMAC\tHOSTNAME\tEXPIRES")
			for _, l := range g.Leases {
				exp := "-"
				if !l.Expiry.IsZero() {
					exp = time.Until(l.Expiry).Round(time.Second).String()
				}
				fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", l.IP, l.MAC, orDash(l.Hostname), exp)
			}
		}
		for _, f := range g.Forwards {
			fmt.Fprintf(w, "  forward %s -> %s\n", forwardRoute(f), f.Target)
		}
	}
}
