package main

import (
	"context"
	"errors"
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
			// The fences' names, for the tables (fence NAME (ID)).
			var names map[uint32]string
			peers := func(ac *admin.Client, ctx context.Context) (admin.PeersResponse, error) {
				if fs, err := ac.Fences(ctx); err == nil {
					names = map[uint32]string{}
					for _, f := range fs {
						names[f.ID] = f.Name
					}
				}
				return ac.Peers(ctx)
			}
			err := callAdmin(c, cmd, peers, func(w io.Writer, st admin.PeersResponse) { printPeersNamed(w, st, names) })
			if errors.Is(err, admin.ErrNoUplink) {
				// Not a failure: this corral switches its fences locally.
				return c.print(cmd, noUplink{Uplink: false, Peers: []admin.PeerStatus{}}, func(w io.Writer) {
					fmt.Fprintln(w, "no uplink configured: this corral's fences stay on this host (uplink.udp.listen or uplink.raw.interface joins other hosts)")
				})
			}
			return err
		},
	}
}

// noUplink is what `corral peers --json` prints without an uplink.
type noUplink struct {
	Uplink bool               `json:"uplink"`
	Peers  []admin.PeerStatus `json:"peers"`
}

func printPeers(w io.Writer, st admin.PeersResponse) { printPeersNamed(w, st, nil) }

// printPeersNamed prints the uplink's table, naming fences by names
// (fence ID → name; nil or a missing ID: the ID alone).
func printPeersNamed(w io.Writer, st admin.PeersResponse, names map[uint32]string) {
	label := func(id uint32) string {
		if n := names[id]; n != "" {
			return fmt.Sprintf("%s (%d)", n, id)
		}
		return fmt.Sprint(id)
	}
	labels := func(v []uint32) string {
		if len(v) == 0 {
			return "-"
		}
		s := make([]string, len(v))
		for i, id := range v {
			s[i] = label(id)
		}
		return strings.Join(s, ",")
	}
	fmt.Fprintf(w, "uplink %s %s, outer MAC %s (host %s, id %#04x, installation %d), MTU %d\n",
		st.Transport, st.Addr, st.OuterMAC, st.Name, st.HostID, st.Installation, st.MTU)
	printSeal(w, st)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PEER\tOUTER MAC\tADDR\tHOST ID\tFENCES\tGATEWAYS\tLAST SEEN")
	for _, p := range st.Peers {
		seen := "-"
		if !p.LastSeen.IsZero() {
			seen = time.Since(p.LastSeen).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%#04x\t%s\t%s\t%s\n", orDash(p.Name), p.OuterMAC, orDash(p.Addr), p.HostID,
			labels(p.Fences), labels(p.Gateways), seen)
		for _, k := range p.Keys {
			fmt.Fprintf(w, "  fence %s: %s\n", label(k.Fence), peerKeyText(k))
		}
	}
	if g := st.Gossip; g != nil {
		printGossip(w, g)
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
		fmt.Fprintf(w, "\nERROR: fence %s: gateway configured here but not served: yielded to peer %s (%s) since %s, which serves it too and wins the tie-break (lower outer MAC); configure it on one host only\n",
			label(y.Fence), orDash(y.PeerName), y.Peer, y.Since.Format(time.RFC3339))
	}
	for _, c := range st.GatewayConflicts {
		fmt.Fprintf(w, "\nERROR: fence %s: gateway served here and by peer %s (%s %s); configure it on one host only\n",
			label(c.Fence), orDash(c.PeerName), c.Peer, c.PeerAddr)
	}
}

// printSeal prints how the uplink is secured: sealed with which keys, or
// which sources it accepts.
func printSeal(w io.Writer, st admin.PeersResponse) {
	s := st.Seal
	if s == nil {
		switch st.Accept {
		case "peers":
			fmt.Fprintln(w, "not sealed: frames are accepted from the configured peers only (uplink.udp.peers)")
		case "any":
			fmt.Fprintln(w, "not sealed: frames are accepted from any address that echoed a cookie (uplink.udp.learn_peers or a group): anyone on the network who receives at an address can inject them")
		case "directory":
			fmt.Fprintln(w, "not sealed: frames are accepted from the gossip members' announced addresses only: anyone who can spoof them can inject frames")
		case "segment":
			fmt.Fprintln(w, "not sealed: frames are accepted from anyone on the segment")
		}
		return
	}
	var keys []string
	for _, k := range s.Keys {
		var idl []string
		for _, id := range k.KeyIDs {
			t := fmt.Sprintf("%#02x", id)
			if k.SendKeyID != nil && *k.SendKeyID == id {
				t += " (send)"
			}
			idl = append(idl, t)
		}
		what := fmt.Sprintf("fence %d", k.Fence)
		if k.Fence == 0 {
			what = "hellos"
		}
		keys = append(keys, what+": "+strings.Join(idl, ", "))
	}
	fmt.Fprintf(w, "sealed (%s); keys: %s\n", s.Cipher, strings.Join(keys, "; "))
}

// peerKeyText says whether this host can read and send a peer's fence.
func peerKeyText(k admin.PeerKey) string {
	switch k.State {
	case "ok":
		id := ""
		if k.KeyID != nil {
			id = fmt.Sprintf(" with key %#02x", *k.KeyID)
		}
		return fmt.Sprintf("ok: %d frames opened%s", k.Opened, id)
	case "no key":
		return "NO KEY here: this host can neither read nor send this fence's frames"
	case "failing":
		return fmt.Sprintf("FAILING: %d frames did not open (the peer holds another key)", k.Failed)
	case "unused":
		return "key held, no frame yet"
	}
	return k.State
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

// printGossip prints the gossip members with their state, fences and
// gateways, and this host's fences as gossip sees them.
func printGossip(w io.Writer, g *admin.GossipStatus) {
	enc := "not encrypted"
	if g.Encrypted {
		enc = "encrypted (key from the installation secret)"
	}
	fmt.Fprintf(w, "\ngossip %s as %s, profile %s, %s, join %s\n", g.Addr, g.Name, g.Profile, enc, orDash(strings.Join(g.Join, ",")))
	fmt.Fprintln(w, "MEMBER\tSTATE\tSINCE\tGOSSIP ADDR\tOUTER MAC\tDATA ADDRS\tFENCES\tGATEWAYS")
	for _, m := range g.Members {
		name, since := m.Name, "-"
		if m.Self {
			name += " (this host)"
		}
		if !m.Since.IsZero() {
			since = time.Since(m.Since).Round(time.Second).String() + " ago"
		}
		state := m.State
		if !m.Valid {
			state += " (bad metadata)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, state, since, m.Addr, orDash(m.OuterMAC),
			orDash(strings.Join(m.DataAddrs, ",")), ids(m.Fences), ids(m.Gateways))
	}
	for _, f := range g.Fences {
		gw := ""
		if f.Gateway != "" {
			gw = ", gateway " + f.Gateway
			if len(f.GatewayClaims) > 1 {
				gw += " (CONFLICT: claimed by " + strings.Join(f.GatewayClaims, ", ") + "; the first serves)"
			}
		}
		fmt.Fprintf(w, "fence %d: hosts %s; %d local MACs, %d remote%s\n", f.ID, orDash(strings.Join(f.Hosts, ",")), f.LocalMACs, f.RemoteMACs, gw)
	}
	for _, d := range g.DuplicateOuterMACs {
		fmt.Fprintf(w, "ERROR: member %s claims an outer MAC another member has (set distinct host.id values)\n", d)
	}
}
