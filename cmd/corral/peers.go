package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/switch/admin"
	"github.com/corralnet/corral/uplink"
)

// The uplink's admin route and CLI command: GET /v1/peers returns
// uplink.Status (404 without an uplink) and `corral peers` shows it.

func init() {
	runHooks = append(runHooks, func(rt *instance) error {
		if rt.admin == nil {
			return nil
		}
		u := rt.uplink
		rt.admin.Handle("GET /v1/peers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u == nil {
				admin.WriteError(w, http.StatusNotFound, "no uplink configured (uplink.udp.listen or uplink.raw.interface)")
				return
			}
			st := u.Status()
			admin.WriteJSON(w, http.StatusOK, peersResponse{
				Status:           st,
				GatewayConflicts: gatewayConflicts(rt.gatewayFences(), st.Peers),
			})
		}))
		return nil
	})
	registerCommand(func(c *cli) *cobra.Command {
		return &cobra.Command{
			Use:   "peers",
			Short: "Show the uplink and the remote hosts it knows",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				var st peersResponse
				return c.query(cmd, "/v1/peers", &st, func(w io.Writer) { printPeers(w, st) })
			},
		}
	})
}

// peersResponse is the body of GET /v1/peers: uplink.Status (its fields
// inline, gateway_yields included) and the gateway conflicts seen in it.
type peersResponse struct {
	uplink.Status
	// GatewayConflicts lists fences whose gateway runs here and that a
	// peer announces in its hellos as served by it too (issue 4 item 7).
	// Such a conflict lasts until the uplink's tie-break makes one host
	// yield (the yielding host lists the fence in gateway_yields; both
	// log it at error level and count gateway_conflict). Always present,
	// empty when all is well.
	GatewayConflicts []gatewayConflict `json:"gateway_conflicts"`
}

// gatewayConflict is one fence served by a gateway here and on a peer.
type gatewayConflict struct {
	Fence    uint32 `json:"fence"`
	Peer     string `json:"peer"` // the peer's outer MAC
	PeerName string `json:"peer_name"`
	PeerAddr string `json:"peer_addr,omitempty"`
}

// gatewayConflicts intersects the local gateway fences with every peer's
// announced gateways.
func gatewayConflicts(local []uint32, peers []uplink.PeerStatus) []gatewayConflict {
	out := []gatewayConflict{}
	if len(local) == 0 {
		return out
	}
	for _, p := range peers {
		for _, g := range p.Gateways {
			if slices.Contains(local, g) {
				out = append(out, gatewayConflict{Fence: g, Peer: p.OuterMAC, PeerName: p.Name, PeerAddr: p.Addr})
			}
		}
	}
	return out
}

func printPeers(w io.Writer, resp peersResponse) {
	st := resp.Status
	fmt.Fprintf(w, "uplink %s %s, outer MAC %s (host %s, id %#04x, installation %d), MTU %d\n\n",
		st.Transport, st.Addr, st.OuterMAC, st.Name, st.HostID, st.Installation, st.MTU)
	fmt.Fprintln(w, "PEER\tOUTER MAC\tADDR\tHOST ID\tFENCES\tGATEWAYS\tLAST SEEN")
	for _, p := range st.Peers {
		seen := "-"
		if !p.LastSeen.IsZero() {
			seen = time.Since(p.LastSeen).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%#04x\t%s\t%s\t%s\n", orDash(p.Name), p.OuterMAC, orDash(p.Addr), p.HostID,
			ids(p.Fences), ids(p.Gateways), seen)
	}
	nonZero := map[string]uint64{}
	for k, v := range st.Counters {
		if v != 0 {
			nonZero[k] = v
		}
	}
	if len(nonZero) > 0 {
		fmt.Fprintf(w, "\ncounters:%s\n", strings.TrimPrefix(fmtDrops(nonZero), ", drops"))
	}
	for _, y := range st.GatewayYields {
		fmt.Fprintf(w, "\nERROR: fence %d: gateway configured here but not served: yielded to peer %s (%s) since %s, which serves it too and wins the tie-break (lower outer MAC); configure it on one host only\n",
			y.Fence, orDash(y.PeerName), y.Peer, y.Since.Format(time.RFC3339))
	}
	for _, c := range resp.GatewayConflicts {
		fmt.Fprintf(w, "\nERROR: fence %d: gateway served here and by peer %s (%s %s); configure it on one host only\n",
			c.Fence, orDash(c.PeerName), c.Peer, c.PeerAddr)
	}
}

func ids(v []uint32) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
