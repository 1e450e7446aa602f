package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

// `corral peers`: the uplink and the remote hosts it knows (GET /v1/peers).

func (c *cli) newPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Show the uplink and the remote hosts it knows",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Peers, printPeers)
		},
	}
}

func printPeers(w io.Writer, st admin.PeersResponse) {
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
	for _, c := range st.GatewayConflicts {
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
