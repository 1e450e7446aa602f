package main

import (
	"fmt"
	"io"
	"net/http"
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
			admin.WriteJSON(w, http.StatusOK, u.Status())
		}))
		return nil
	})
	registerCommand(func(c *cli) *cobra.Command {
		return &cobra.Command{
			Use:   "peers",
			Short: "Show the uplink and the remote hosts it knows",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				var st uplink.Status
				return c.query(cmd, "/v1/peers", &st, func(w io.Writer) { printPeers(w, st) })
			},
		}
	})
}

func printPeers(w io.Writer, st uplink.Status) {
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
