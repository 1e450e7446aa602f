package admin

import (
	"net/http"
	"slices"

	"github.com/corralnet/corral/uplink"
)

// GET /v1/peers: the uplink's status and the gateway conflicts in it.

func (s *Server) peers(w http.ResponseWriter, r *http.Request) {
	if s.up == nil {
		writeError(w, http.StatusNotFound, "no uplink configured (uplink.udp.listen or uplink.raw.interface)")
		return
	}
	st := s.up.Status()
	resp := peersOf(st)
	resp.GatewayConflicts = GatewayConflicts(s.gws.Served(), st.Peers)
	if s.gossip != nil {
		g := s.gossip.Status()
		resp.Gossip = &g
	}
	writeJSON(w, http.StatusOK, resp)
}

// GatewayConflicts intersects local, the fences whose gateway runs here,
// with the gateways every peer announces. It never returns nil.
func GatewayConflicts(local []uint32, peers []uplink.PeerStatus) []GatewayConflict {
	out := []GatewayConflict{}
	if len(local) == 0 {
		return out
	}
	for _, p := range peers {
		for _, g := range p.Gateways {
			if slices.Contains(local, g) {
				out = append(out, GatewayConflict{Fence: g, Peer: p.OuterMAC, PeerName: p.Name, PeerAddr: p.Addr})
			}
		}
	}
	return out
}
