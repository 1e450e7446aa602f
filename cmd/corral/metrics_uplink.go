package main

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralnet/corral/uplink"
)

// The uplink's counters (uplink.Status.Counters) as metrics: one family
// per quantity with its unit in the name (frames, bytes, hellos, sends,
// errors), and every drop_* counter as a reason of
// corral_uplink_drops_total (frames). The families are made from
// uplink.CounterNames, so a counter added to the uplink gets its own
// family; one that appears only at run time goes to
// corral_uplink_other_total{name}.

// uplinkCounterMetric maps a counter name to its family's name (without
// corral_ and _total) and help; counters not listed are
// uplink_<name>_total with a generic help.
var uplinkCounterMetric = map[string][2]string{
	"rx_frames":        {"uplink_rx_frames", "Inner frames received on the uplink and delivered to the switch."},
	"rx_bytes":         {"uplink_rx_bytes", "Bytes of the inner frames received on the uplink."},
	"tx_frames":        {"uplink_tx_frames", "Inner frames sent on the uplink."},
	"tx_bytes":         {"uplink_tx_bytes", "Bytes of the inner frames sent on the uplink."},
	"tx_sends":         {"uplink_tx_sends", "Send calls on the uplink's socket (datagrams or batches)."},
	"rx_hellos":        {"uplink_rx_hellos", "Hellos received from peers."},
	"tx_hellos":        {"uplink_tx_hellos", "Hellos sent."},
	"rx_fragments":     {"uplink_rx_fragments", "Fragments received."},
	"tx_fragmented":    {"uplink_tx_fragmented_frames", "Frames sent in fragments."},
	"rx_reassembled":   {"uplink_rx_reassembled_frames", "Frames reassembled from fragments."},
	"duplicate_mac":    {"uplink_duplicate_macs", "Times a peer announced an outer MAC (host) already held by another."},
	"tx_errors":        {"uplink_tx_errors", "Failed sends on the uplink's socket."},
	"rx_errors":        {"uplink_rx_errors", "Failed receives on the uplink's socket."},
	"tx_gso_sends":     {"uplink_tx_gso_sends", "Sends that used UDP GSO."},
	"rx_gro_buffers":   {"uplink_rx_gro_buffers", "Receive buffers that held UDP GRO-coalesced datagrams."},
	"gateway_conflict": {"uplink_gateway_conflict_events", "Times a peer announced a gateway that also runs here."},
	"peers_expired":    {"uplink_peers_expired", "Peers dropped from the host table for silence."},
}

var (
	mUplinkDrops = desc("uplink_drops_total", "Uplink frames dropped, by reason (the uplink's drop_* counters).", "reason")
	mUplinkOther = desc("uplink_other_total", "Uplink counters without a family of their own, by name.", "name")
	// mUplinkCounters are the families of the non-drop counters, by
	// counter name.
	mUplinkCounters = uplinkCounterDescs()
)

func uplinkCounterDescs() map[string]*prometheus.Desc {
	m := map[string]*prometheus.Desc{}
	for _, n := range uplink.CounterNames() {
		if strings.HasPrefix(n, "drop_") {
			continue
		}
		name, help := "uplink_"+n, "Uplink counter "+n+"."
		if x, ok := uplinkCounterMetric[n]; ok {
			name, help = x[0], x[1]
		}
		m[n] = desc(name+"_total", help)
	}
	return m
}

// uplinkCounterFamilies are the descriptors of the uplink's counters, for
// Describe.
func uplinkCounterFamilies() []*prometheus.Desc {
	out := []*prometheus.Desc{mUplinkDrops, mUplinkOther}
	for _, n := range uplink.CounterNames() {
		if d, ok := mUplinkCounters[n]; ok {
			out = append(out, d)
		}
	}
	return out
}

// collectUplinkCounters sends the uplink's counters as metrics.
func collectUplinkCounters(counters map[string]uint64, counter func(*prometheus.Desc, uint64, ...string)) {
	for k, v := range counters {
		if r, ok := strings.CutPrefix(k, "drop_"); ok {
			counter(mUplinkDrops, v, r)
		} else if d, ok := mUplinkCounters[k]; ok {
			counter(d, v)
		} else {
			counter(mUplinkOther, v, k)
		}
	}
}
