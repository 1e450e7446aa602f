package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/stack"
	"github.com/corralnet/corral/stack/dhcp"
	"github.com/corralnet/corral/switch/admin"
)

// Gateway status: GET /v1/gateways[?fence=F] and `corral gateways [FENCE]`.

// gatewayStatus is one fence's gateway in GET /v1/gateways.
type gatewayStatus struct {
	Fence      uint32        `json:"fence"`
	Name       string        `json:"name"`
	MAC        string        `json:"mac"`
	Subnet     string        `json:"subnet"`
	Addr       string        `json:"addr"`
	DNS        string        `json:"dns"`
	IPv6Prefix string        `json:"ipv6_prefix,omitempty"` // "" when IPv6 is off
	Addr6      string        `json:"addr6,omitempty"`
	DNS6       string        `json:"dns6,omitempty"`
	Leases     []dhcp.Lease  `json:"leases"`
	Forwards   []forwardJSON `json:"forwards"`
	Stats      gatewayStats  `json:"stats"`
}

// gatewayStats is stack.Stats with JSON names.
type gatewayStats struct {
	InFrames     uint64 `json:"in_frames"`
	OutFrames    uint64 `json:"out_frames"`
	InDrops      uint64 `json:"in_drops"`
	InFiltered   uint64 `json:"in_filtered"`
	OutDrops     uint64 `json:"out_drops"`
	TCPConns     int64  `json:"tcp_conns"`
	TCPRefused   uint64 `json:"tcp_refused"`
	UDPFlows     int64  `json:"udp_flows"`
	UDPRefused   uint64 `json:"udp_refused"`
	ICMPRelayed  uint64 `json:"icmp_relayed"`
	ICMPReplies  uint64 `json:"icmp_replies"`
	ICMPDropped  uint64 `json:"icmp_dropped"`
	DHCPLeases   int    `json:"dhcp_leases"`
	DHCPRequests uint64 `json:"dhcp_requests"`
	DNSQueries   uint64 `json:"dns_queries"`
}

func toGatewayStats(s stack.Stats) gatewayStats {
	return gatewayStats{
		InFrames: s.InFrames, OutFrames: s.OutFrames, InDrops: s.InDrops, InFiltered: s.InFiltered, OutDrops: s.OutDrops,
		TCPConns: s.TCPConns, TCPRefused: s.TCPRefused, UDPFlows: s.UDPFlows, UDPRefused: s.UDPRefused,
		ICMPRelayed: s.ICMPRelayed, ICMPReplies: s.ICMPReplies, ICMPDropped: s.ICMPDropped,
		DHCPLeases: s.DHCPLeases, DHCPRequests: s.DHCPRequests, DNSQueries: s.DNSQueries,
	}
}

func gatewayStatusOf(f Fence, g *stack.Gateway) gatewayStatus {
	mac := g.MAC()
	gs := gatewayStatus{
		Fence:  f.ID,
		Name:   f.Name,
		MAC:    net.HardwareAddr(mac[:]).String(),
		Addr:   addrString(g.Addr()),
		DNS:    addrString(g.DNSAddr()),
		Addr6:  addrString(g.Addr6()),
		DNS6:   addrString(g.DNSAddr6()),
		Leases: g.Leases(),
		Stats:  toGatewayStats(g.Stats()),
	}
	subnet := stack.DefaultSubnet
	prefix6 := stack.DefaultIPv6Prefix
	noIPv6 := false
	if c := f.Gateway; c != nil {
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
	if gs.Leases == nil {
		gs.Leases = []dhcp.Lease{}
	}
	gs.Forwards = fenceForwardsOf(f, g).Forwards
	return gs
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (gr *gatewayAPI) gateways(w http.ResponseWriter, r *http.Request) {
	out := []gatewayStatus{}
	if want := r.URL.Query().Get("fence"); want != "" {
		f, g, err := gr.gateway(want)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		out = append(out, gatewayStatusOf(f, g))
	} else {
		for _, f := range gr.fences {
			if g := gr.gws.get(f.ID); g != nil {
				out = append(out, gatewayStatusOf(f, g))
			}
		}
	}
	admin.WriteJSON(w, http.StatusOK, out)
}

func init() {
	registerCommand(func(c *cli) *cobra.Command {
		return &cobra.Command{
			Use:   "gateways [FENCE]",
			Short: "Show the gateways of a running switch: addresses, leases, forwards, NAT counters",
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) > 1 {
					return usageError{fmt.Errorf("gateways takes at most one FENCE, got %d", len(args))}
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				path := "/v1/gateways"
				if len(args) == 1 {
					path += "?fence=" + url.QueryEscape(args[0])
				}
				var gs []gatewayStatus
				return c.query(cmd, path, &gs, func(w io.Writer) { printGateways(w, gs) })
			},
		}
	})
}

func printGateways(w io.Writer, gs []gatewayStatus) {
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
		fmt.Fprintf(w, "  frames in %d out %d, drops in %d out %d, filtered %d\n", s.InFrames, s.OutFrames, s.InDrops, s.OutDrops, s.InFiltered)
		fmt.Fprintf(w, "  NAT: tcp %d open %d refused, udp %d flows %d refused, icmp %d relayed %d replies %d dropped\n",
			s.TCPConns, s.TCPRefused, s.UDPFlows, s.UDPRefused, s.ICMPRelayed, s.ICMPReplies, s.ICMPDropped)
		fmt.Fprintf(w, "  DHCP %d requests, %d leases; DNS %d queries\n", s.DHCPRequests, s.DHCPLeases, s.DNSQueries)
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
			fmt.Fprintf(w, "  forward %s %s -> %s\n", f.Proto, f.Listen, f.Target)
		}
	}
}
