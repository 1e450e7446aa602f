package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/gossip"
	"github.com/corralnet/corral/stack"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// Prometheus metrics (DESIGN.md section 7): metrics.listen serves the text
// format at /metrics. A custom Collector reads the switch's, the uplink's
// and the gateways' Status/Stats snapshots at scrape time, so the hot path
// keeps its own counters and nothing is added to it.

// metricsSources are what a scrape reads; nil functions are skipped.
type metricsSources struct {
	switchStatus func() vswitch.Status
	uplinkStatus func() (uplink.Status, bool) // false: no uplink
	gateways     func() []gatewayMetrics
	forwards     func() forward.Stats
	listeners    func() []admin.ListenerStatus
	// localGateways lists the fences whose gateway runs here (for
	// conflicts with peers).
	localGateways func() []uint32
	// gossip reads the gossip node's counters; nil without uplink.gossip.
	gossip func() gossip.Counters
}

// gatewayMetrics is one gateway's scrape.
type gatewayMetrics struct {
	fence    string
	stats    stack.Stats
	forwards int
	socks    bool // it has a SOCKS5 endpoint
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("corral_"+name, help, labels, nil)
}

var (
	mFenceFramesIn  = desc("fence_frames_in_total", "Frames accepted from local ports and the trunk.", "fence")
	mFenceBytesIn   = desc("fence_bytes_in_total", "Bytes accepted from local ports and the trunk.", "fence")
	mFenceFramesOut = desc("fence_frames_out_total", "Frames queued to local ports and the trunk.", "fence")
	mFenceBytesOut  = desc("fence_bytes_out_total", "Bytes queued to local ports and the trunk.", "fence")
	mFenceFloods    = desc("fence_floods_total", "Frames flooded (broadcast, multicast, unknown unicast).", "fence")
	mFenceMoves     = desc("fence_moves_total", "MACs that moved to another port or host.", "fence")
	mFenceRefused   = desc("fence_learn_refused_total", "New MACs not learned because the table was full.", "fence")
	mFenceDrops     = desc("fence_drops_total", "Frames dropped in the fence, by reason.", "fence", "reason")
	mFenceMACs      = desc("fence_macs", "Bridge table entries (local and remote).", "fence")
	mQueuedBytes    = desc("switch_queued_bytes", "Buffer bytes queued for all ports and the trunk together.")
	mMaxQueuedBytes = desc("switch_max_queued_bytes", "Bound of switch_queued_bytes (limits.max_queued_bytes); frames beyond it are dropped as global_queue_full.")
	mFenceMaxMACs   = desc("fence_max_macs", "Bridge table limit.", "fence")
	mFencePorts     = desc("fence_ports", "Local ports attached.", "fence")
	mFencePortsRef  = desc("fence_ports_refused_total", "Ports refused because the fence had limits.ports_per_fence ports.", "fence")

	mListenerPorts    = desc("listener_ports", "Ports (connections, datagram peers) a listen address holds.", "fence", "listener")
	mListenerRefused  = desc("listener_refused_total", "Connections, or datagrams of new peers, refused because the listener had limits.ports_per_listener ports.", "fence", "listener")
	mListenerTimeouts = desc("listener_frame_timeouts_total", "Stream ports closed because a started frame was not completed within limits.frame_timeout.", "fence", "listener")
	mListenerExpired  = desc("listener_expired_total", "Datagram peers closed after limits.datagram_idle_timeout.", "fence", "listener")

	mPortRxFrames = desc("port_rx_frames_total", "Frames read from the port.", "fence", "port", "port_id")
	mPortRxBytes  = desc("port_rx_bytes_total", "Bytes read from the port.", "fence", "port", "port_id")
	mPortTxFrames = desc("port_tx_frames_total", "Frames written to the port.", "fence", "port", "port_id")
	mPortTxBytes  = desc("port_tx_bytes_total", "Bytes written to the port.", "fence", "port", "port_id")
	mPortDrops    = desc("port_drops_total", "Frames dropped on the port, by reason.", "fence", "port", "port_id", "reason")
	mPortMACs     = desc("port_macs", "Source MACs learned on the port.", "fence", "port", "port_id")
	mPortQueued   = desc("port_queued", "Frames waiting in the port's transmit queue.", "fence", "port", "port_id")
	mPortQueueLen = desc("port_queue_len", "Capacity of the port's transmit queue in frames.", "fence", "port", "port_id")

	mTrunkRxFrames = desc("trunk_rx_frames_total", "Frames received from the trunk (uplink).")
	mTrunkRxBytes  = desc("trunk_rx_bytes_total", "Bytes received from the trunk.")
	mTrunkTxFrames = desc("trunk_tx_frames_total", "Frames written to the trunk.")
	mTrunkTxBytes  = desc("trunk_tx_bytes_total", "Bytes written to the trunk.")
	mTrunkQueued   = desc("trunk_queued", "Frames waiting in the trunk's transmit queue.")
	mTrunkDrops    = desc("trunk_drops_total", "Frames dropped at the trunk, by reason.", "reason")

	mUplinkPeers     = desc("uplink_peers", "Remote hosts in the uplink's host table.")
	mUplinkRxByFence = desc("uplink_rx_frames_by_fence_total", "Inbound uplink frames delivered to the switch, per fence ID.", "fence_id")
	mUplinkConflicts = desc("uplink_gateway_conflicts", "Fences whose gateway runs here and is also announced by a peer (should be 0).")

	mGossipMembers = desc("gossip_members", "Gossip members by state (alive, suspect, dead, left), this host included.", "state")
	mGossipBytes   = desc("gossip_bytes_total", "Gossip bytes (memberlist probes, gossip, push/pull and fence state) by direction (in, out).", "direction")
	mGossipMACAdv  = desc("gossip_mac_advertisements_total", "Fence-state updates (MAC advertisements) by direction (sent, received).", "direction")
	mGossipMACs    = desc("gossip_macs_total", "MACs carried by fence-state updates, by result (sent, received, refused).", "result")

	mGwInFrames   = desc("gateway_in_frames_total", "Frames from the fence into the gateway.", "fence")
	mGwOutFrames  = desc("gateway_out_frames_total", "Frames from the gateway to the fence.", "fence")
	mGwInDrops    = desc("gateway_in_drops_total", "Inbound frames dropped as malformed.", "fence")
	mGwInFiltered = desc("gateway_in_filtered_total", "Inbound frames meant for others.", "fence")
	mGwOutDrops   = desc("gateway_out_drops_total", "Outbound packets released unsent (only when the gateway closes).", "fence")
	mGwOutWaits   = desc("gateway_out_waits_total", "Times the gateway waited for the switch to read (backpressure; nothing dropped).", "fence")
	mGwBadCsum    = desc("gateway_in_bad_checksum_total", "Inbound packets with a bad IPv4, TCP, UDP or ICMP checksum, dropped.", "fence")
	mGwNATRefused = desc("gateway_nat_refused_total", "NAT flows refused, by protocol (tcp, udp, icmp) and reason (limit_fence, limit_guest, self, ...).", "fence", "proto", "reason")
	mGwNATGuests  = desc("gateway_nat_guests", "Guests (source MACs) holding NAT connections or flows.", "fence")
	mGwTCPConns   = desc("gateway_tcp_conns", "NATed TCP connections open.", "fence")
	mGwTCPRefused = desc("gateway_tcp_refused_total", "NATed TCP connections refused (limit, dial failure, policy).", "fence")
	mGwUDPFlows   = desc("gateway_udp_flows", "NATed UDP flows open.", "fence")
	mGwUDPRefused = desc("gateway_udp_refused_total", "NATed UDP flows refused (limit, policy).", "fence")
	mGwICMP       = desc("gateway_icmp_echo_total", "ICMP echo NAT: relayed requests, replies and dropped requests.", "fence", "result")
	mGwLeases     = desc("gateway_dhcp_leases", "DHCP leases held.", "fence")
	mGwDHCPReqs   = desc("gateway_dhcp_requests_total", "DHCP requests answered.", "fence")
	mGwDNSQueries = desc("gateway_dns_queries_total", "DNS queries received.", "fence")
	mGwForwards   = desc("gateway_forwards", "Active port forwards.", "fence")
	mGwSocksConns = desc("gateway_socks_conns", "SOCKS5 clients connected.", "fence")
	mGwSocksReqs  = desc("gateway_socks_requests_total", "SOCKS5 clients and requests by result: connect, associate, refused (outside the fence), failed, over_limit, bad.", "fence", "result")
	mGwSocksUDPDr = desc("gateway_socks_udp_dropped_total", "UDP datagrams of SOCKS5 associations dropped.", "fence")

	mFwdListeners = desc("forward_listeners", "Host sockets bound by port forwards (shared by the forwards of several fences).")
	mFwdConns     = desc("forward_tcp_conns", "Forwarded TCP connections open.")
	mFwdFlows     = desc("forward_udp_flows", "Forwarded UDP flows open.")
	mFwdAccepted  = desc("forward_accepted_total", "TCP connections accepted on forward listeners.")
	mFwdRefused   = desc("forward_refused_total", "Forwarded connections and flows closed or dropped, by reason (unrouted: no route matched their name; sniff_limit: too many being sniffed; dial: the fence refused or failed the dial; accept: failed accepts).", "reason")

	allDescs = []*prometheus.Desc{
		mFenceFramesIn, mFenceBytesIn, mFenceFramesOut, mFenceBytesOut, mFenceFloods, mFenceMoves, mFenceRefused,
		mFenceDrops, mFenceMACs, mFenceMaxMACs, mFencePorts, mFencePortsRef, mQueuedBytes, mMaxQueuedBytes,
		mListenerPorts, mListenerRefused, mListenerTimeouts, mListenerExpired,
		mPortRxFrames, mPortRxBytes, mPortTxFrames, mPortTxBytes, mPortDrops, mPortMACs, mPortQueued, mPortQueueLen,
		mTrunkRxFrames, mTrunkRxBytes, mTrunkTxFrames, mTrunkTxBytes, mTrunkQueued, mTrunkDrops,
		mUplinkPeers, mUplinkRxByFence, mUplinkConflicts,
		mGossipMembers, mGossipBytes, mGossipMACAdv, mGossipMACs,
		mGwInFrames, mGwOutFrames, mGwInDrops, mGwInFiltered, mGwOutDrops, mGwOutWaits, mGwBadCsum, mGwNATRefused, mGwNATGuests,
		mGwTCPConns, mGwTCPRefused,
		mGwUDPFlows, mGwUDPRefused, mGwICMP, mGwLeases, mGwDHCPReqs, mGwDNSQueries, mGwForwards,
		mFwdListeners, mFwdConns, mFwdFlows, mFwdAccepted, mFwdRefused,
	}
)

// corralCollector implements prometheus.Collector over metricsSources.
type corralCollector struct{ src metricsSources }

func (c *corralCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	for _, d := range uplinkCounterFamilies() {
		ch <- d
	}
}

func (c *corralCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.src.switchStatus != nil {
		st := c.src.switchStatus()
		gauge(mQueuedBytes, float64(st.QueuedBytes))
		gauge(mMaxQueuedBytes, float64(st.MaxQueuedBytes))
		fenceName := make(map[uint32]string, len(st.Fences))
		for _, f := range st.Fences {
			fenceName[f.ID] = f.Name
			counter(mFenceFramesIn, f.FramesIn, f.Name)
			counter(mFenceBytesIn, f.BytesIn, f.Name)
			counter(mFenceFramesOut, f.FramesOut, f.Name)
			counter(mFenceBytesOut, f.BytesOut, f.Name)
			counter(mFenceFloods, f.Floods, f.Name)
			counter(mFenceMoves, f.Moves, f.Name)
			counter(mFenceRefused, f.LearnRefused, f.Name)
			for r, v := range f.Drops {
				counter(mFenceDrops, v, f.Name, r)
			}
			gauge(mFenceMACs, float64(f.MACs), f.Name)
			gauge(mFenceMaxMACs, float64(f.MaxMACs), f.Name)
			gauge(mFencePorts, float64(f.Ports), f.Name)
			counter(mFencePortsRef, f.PortsRefused, f.Name)
		}
		for _, p := range st.Ports {
			fn, ok := fenceName[p.Fence]
			if !ok {
				fn = strconv.FormatUint(uint64(p.Fence), 10)
			}
			l := []string{fn, p.Name, strconv.FormatUint(p.ID, 10)}
			counter(mPortRxFrames, p.RxFrames, l...)
			counter(mPortRxBytes, p.RxBytes, l...)
			counter(mPortTxFrames, p.TxFrames, l...)
			counter(mPortTxBytes, p.TxBytes, l...)
			for r, v := range p.Drops {
				counter(mPortDrops, v, append(l[:3:3], r)...)
			}
			gauge(mPortMACs, float64(p.MACs), l...)
			gauge(mPortQueued, float64(p.Queued), l...)
			gauge(mPortQueueLen, float64(p.QueueLen), l...)
		}
		if t := st.Trunk; t != nil {
			counter(mTrunkRxFrames, t.RxFrames)
			counter(mTrunkRxBytes, t.RxBytes)
			counter(mTrunkTxFrames, t.TxFrames)
			counter(mTrunkTxBytes, t.TxBytes)
			gauge(mTrunkQueued, float64(t.Queued))
			for r, v := range t.Drops {
				counter(mTrunkDrops, v, r)
			}
		}
	}
	if c.src.listeners != nil {
		for _, l := range c.src.listeners() {
			gauge(mListenerPorts, float64(l.Ports), l.Fence, l.Addr)
			counter(mListenerRefused, l.Refused, l.Fence, l.Addr)
			counter(mListenerTimeouts, l.FrameTimeouts, l.Fence, l.Addr)
			counter(mListenerExpired, l.Expired, l.Fence, l.Addr)
		}
	}
	if c.src.uplinkStatus != nil {
		if st, ok := c.src.uplinkStatus(); ok {
			collectUplinkCounters(st.Counters, counter)
			gauge(mUplinkPeers, float64(len(st.Peers)))
			for id, v := range st.RxByFence {
				counter(mUplinkRxByFence, v, strconv.FormatUint(uint64(id), 10))
			}
			var local []uint32
			if c.src.localGateways != nil {
				local = c.src.localGateways()
			}
			gauge(mUplinkConflicts, float64(len(admin.GatewayConflicts(local, st.Peers))))
		}
	}
	if c.src.gossip != nil {
		g := c.src.gossip()
		gauge(mGossipMembers, float64(g.Alive), "alive")
		gauge(mGossipMembers, float64(g.Suspect), "suspect")
		gauge(mGossipMembers, float64(g.Dead), "dead")
		gauge(mGossipMembers, float64(g.Left), "left")
		counter(mGossipBytes, g.BytesIn, "in")
		counter(mGossipBytes, g.BytesOut, "out")
		counter(mGossipMACAdv, g.UpdatesSent, "sent")
		counter(mGossipMACAdv, g.UpdatesReceived, "received")
		counter(mGossipMACs, g.MACsSent, "sent")
		counter(mGossipMACs, g.MACsReceived, "received")
		counter(mGossipMACs, g.MACsRefused, "refused")
	}
	if c.src.gateways != nil {
		for _, g := range c.src.gateways() {
			s := g.stats
			counter(mGwInFrames, s.InFrames, g.fence)
			counter(mGwOutFrames, s.OutFrames, g.fence)
			counter(mGwInDrops, s.InDrops, g.fence)
			counter(mGwInFiltered, s.InFiltered, g.fence)
			counter(mGwOutDrops, s.OutDrops, g.fence)
			counter(mGwOutWaits, s.OutWaits, g.fence)
			counter(mGwBadCsum, s.InBadChecksum, g.fence)
			for _, p := range []struct {
				proto string
				r     [stack.NumRefusals]uint64
			}{{"tcp", s.TCPRefusals}, {"udp", s.UDPRefusals}, {"icmp", s.ICMPRefusals}} {
				for r, v := range p.r {
					counter(mGwNATRefused, v, g.fence, p.proto, stack.Refusal(r).String())
				}
			}
			gauge(mGwNATGuests, float64(s.NATGuests), g.fence)
			gauge(mGwTCPConns, float64(s.TCPConns), g.fence)
			counter(mGwTCPRefused, s.TCPRefused, g.fence)
			gauge(mGwUDPFlows, float64(s.UDPFlows), g.fence)
			counter(mGwUDPRefused, s.UDPRefused, g.fence)
			counter(mGwICMP, s.ICMPRelayed, g.fence, "relayed")
			counter(mGwICMP, s.ICMPReplies, g.fence, "replies")
			counter(mGwICMP, s.ICMPDropped, g.fence, "dropped")
			gauge(mGwLeases, float64(s.DHCPLeases), g.fence)
			counter(mGwDHCPReqs, s.DHCPRequests, g.fence)
			counter(mGwDNSQueries, s.DNSQueries, g.fence)
			gauge(mGwForwards, float64(g.forwards), g.fence)
			if g.socks {
				so := s.Socks
				gauge(mGwSocksConns, float64(so.Active), g.fence)
				counter(mGwSocksReqs, so.Connects, g.fence, "connect")
				counter(mGwSocksReqs, so.Associates, g.fence, "associate")
				counter(mGwSocksReqs, so.Refused, g.fence, "refused")
				counter(mGwSocksReqs, so.Failed, g.fence, "failed")
				counter(mGwSocksReqs, so.OverLimit, g.fence, "over_limit")
				counter(mGwSocksReqs, so.BadRequests, g.fence, "bad")
				counter(mGwSocksUDPDr, so.UDPDropped, g.fence)
			}
		}
	}
	if c.src.forwards != nil {
		s := c.src.forwards()
		gauge(mFwdListeners, float64(s.Listeners))
		gauge(mFwdConns, float64(s.TCPConns))
		gauge(mFwdFlows, float64(s.UDPFlows))
		counter(mFwdAccepted, s.Accepted)
		counter(mFwdRefused, s.Unrouted, "unrouted")
		counter(mFwdRefused, s.SniffRefused, "sniff_limit")
		counter(mFwdRefused, s.DialErrors, "dial")
		counter(mFwdRefused, s.AcceptErrors, "accept")
	}
}

// metricsHandler returns the /metrics handler over src (plus the Go
// runtime and process collectors).
func metricsHandler(src metricsSources) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		&corralCollector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), nil
}

// rtMetricsSources reads rt's switch, uplink and gateways.
func rtMetricsSources(rt *instance) metricsSources {
	src := metricsSources{switchStatus: rt.sw.Status, localGateways: rt.gatewayFences}
	if u := rt.uplink; u != nil {
		src.uplinkStatus = func() (uplink.Status, bool) { return u.Status(), true }
	}
	if n := rt.gossip; n != nil {
		src.gossip = n.Counters
	}
	gws, fwd := rt.gateways, rt.forwards
	src.gateways = func() []gatewayMetrics {
		var out []gatewayMetrics
		for _, f := range gws.configuredFences() { // as of the last reload
			if g := gws.get(f.ID); g != nil {
				out = append(out, gatewayMetrics{fence: f.Name, stats: g.Stats(), forwards: len(fwd.Forwards(f.ID)), socks: g.SocksAddr().IsValid()})
			}
		}
		return out
	}
	src.forwards = fwd.Stats
	src.listeners = rt.listenerStatus
	return src
}

// serveMetrics serves /metrics on metrics.listen, when configured, until
// shutdown.
func (rt *instance) serveMetrics() error {
	if rt.cfg.Metrics == "" {
		return nil
	}
	h, err := metricsHandler(rtMetricsSources(rt))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", rt.cfg.Metrics)
	if err != nil {
		return fmt.Errorf("metrics: metrics.listen %s: %w", rt.cfg.Metrics, err)
	}
	rt.self.add("tcp", ln.Addr().(*net.TCPAddr).AddrPort())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "corral: Prometheus metrics at /metrics")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	rt.group.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics: %w", err)
		}
		return nil
	})
	rt.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	rt.log.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
	return nil
}
