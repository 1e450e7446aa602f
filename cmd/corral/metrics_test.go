package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/gossip"
	"github.com/corralnet/corral/stack"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain (Prometheus text format)", ct)
	}
	return string(b)
}

// TestMetricsCollector scrapes fake sources and checks every family's
// values and labels; a second scrape sees the counters move (they are read
// at scrape time).
func TestMetricsCollector(t *testing.T) {
	frames := uint64(5)
	src := metricsSources{
		switchStatus: func() vswitch.Status {
			return vswitch.Status{
				Fences: []vswitch.FenceStatus{{ID: 1, Name: "lab", Ports: 2, MACs: 3, MaxMACs: 100, FramesIn: frames, BytesIn: 600,
					Floods: 2, Drops: map[string]uint64{"runt": 4, "queue_full": 1}}},
				Ports: []vswitch.PortStatus{{ID: 7, Name: "unix:///x.sock#0", Fence: 1, MACs: 1, QueueLen: 256, Queued: 3,
					RxFrames: frames, RxBytes: 600, TxFrames: 9, Drops: map[string]uint64{"pinned": 6}}},
				Trunk: &vswitch.TrunkStatus{RxFrames: 11, TxBytes: 1200, Drops: map[string]uint64{"no_trunk": 2}},
			}
		},
		uplinkStatus: func() (uplink.Status, bool) {
			return uplink.Status{
				Counters:  map[string]uint64{"rx_frames": 11, "gateway_conflict": 1},
				RxByFence: map[uint32]uint64{1: 10},
				Peers:     []uplink.PeerStatus{{OuterMAC: "02:fe:0c:01:00:02", Name: "h2", Gateways: []uint32{1}}, {OuterMAC: "02:fe:0c:01:00:03"}},
			}, true
		},
		gateways: func() []gatewayMetrics {
			st := stack.Stats{InFrames: 8, TCPConns: 3, UDPRefused: 4, ICMPRelayed: 5, ICMPReplies: 6, DHCPLeases: 1, DNSQueries: 12,
				InBadChecksum: 13, OutWaits: 14, NATGuests: 2}
			st.TCPRefusals[stack.RefusedLimitGuest] = 7
			st.UDPRefusals[stack.RefusedSelf] = 4
			return []gatewayMetrics{{fence: "lab", forwards: 2, stats: st}}
		},
		localGateways: func() []uint32 { return []uint32{1} },
		gossip: func() gossip.Counters {
			return gossip.Counters{Alive: 15, Suspect: 1, Dead: 2, BytesIn: 100, BytesOut: 200, UpdatesSent: 3, UpdatesReceived: 4,
				MACsSent: 5, MACsReceived: 6, MACsRefused: 7}
		},
	}
	h, err := metricsHandler(src)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	body := scrape(t, ts.URL)
	for _, want := range []string{
		`corral_fence_frames_in_total{fence="lab"} 5`,
		`corral_fence_bytes_in_total{fence="lab"} 600`,
		`corral_fence_floods_total{fence="lab"} 2`,
		`corral_fence_drops_total{fence="lab",reason="runt"} 4`,
		`corral_fence_drops_total{fence="lab",reason="queue_full"} 1`,
		`corral_fence_macs{fence="lab"} 3`,
		`corral_fence_ports{fence="lab"} 2`,
		`corral_port_rx_frames_total{fence="lab",port="unix:///x.sock#0",port_id="7"} 5`,
		`corral_port_tx_frames_total{fence="lab",port="unix:///x.sock#0",port_id="7"} 9`,
		`corral_port_drops_total{fence="lab",port="unix:///x.sock#0",port_id="7",reason="pinned"} 6`,
		`corral_port_queued{fence="lab",port="unix:///x.sock#0",port_id="7"} 3`,
		`corral_trunk_rx_frames_total 11`,
		`corral_trunk_tx_bytes_total 1200`,
		`corral_trunk_drops_total{reason="no_trunk"} 2`,
		`corral_uplink_gateway_conflict_events_total 1`,
		`corral_uplink_rx_frames_total 11`,
		`corral_uplink_peers 2`,
		`corral_uplink_rx_frames_by_fence_total{fence_id="1"} 10`,
		`corral_uplink_gateway_conflicts 1`,
		`corral_gateway_in_frames_total{fence="lab"} 8`,
		`corral_gateway_tcp_conns{fence="lab"} 3`,
		`corral_gateway_udp_refused_total{fence="lab"} 4`,
		`corral_gateway_icmp_echo_total{fence="lab",result="replies"} 6`,
		`corral_gateway_dhcp_leases{fence="lab"} 1`,
		`corral_gateway_dns_queries_total{fence="lab"} 12`,
		`corral_gateway_forwards{fence="lab"} 2`,
		`corral_gateway_in_bad_checksum_total{fence="lab"} 13`,
		`corral_gateway_out_waits_total{fence="lab"} 14`,
		`corral_gateway_nat_guests{fence="lab"} 2`,
		`corral_gateway_nat_refused_total{fence="lab",proto="tcp",reason="limit_guest"} 7`,
		`corral_gateway_nat_refused_total{fence="lab",proto="udp",reason="self"} 4`,
		`corral_gateway_nat_refused_total{fence="lab",proto="icmp",reason="no_raw_socket"} 0`,
		`corral_gossip_members{state="alive"} 15`,
		`corral_gossip_members{state="left"} 0`,
		`corral_gossip_bytes_total{direction="out"} 200`,
		`corral_gossip_mac_advertisements_total{direction="received"} 4`,
		`corral_gossip_macs_total{result="refused"} 7`,
		`# TYPE corral_gossip_bytes_total counter`,
		`# TYPE corral_gossip_members gauge`,
		`# TYPE corral_fence_frames_in_total counter`,
		`# TYPE corral_port_queued gauge`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("scrape lacks %q", want)
		}
	}
	promtoolCheck(t, body)
	frames = 42
	if body := scrape(t, ts.URL); !strings.Contains(body, `corral_fence_frames_in_total{fence="lab"} 42`) {
		t.Errorf("second scrape does not see the new counter:\n%s", grepLines(body, "corral_fence_frames_in"))
	}

	// Without an uplink or gateways, their families are absent.
	h, err = metricsHandler(metricsSources{switchStatus: src.switchStatus, uplinkStatus: func() (uplink.Status, bool) { return uplink.Status{}, false }})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(h)
	defer ts2.Close()
	body = scrape(t, ts2.URL)
	if strings.Contains(body, "corral_uplink_") || strings.Contains(body, "corral_gateway_") || strings.Contains(body, "corral_gossip_") {
		t.Errorf("uplink or gateway metrics without an uplink or gateway:\n%s", grepLines(body, "corral_uplink_", "corral_gateway_"))
	}
}

func grepLines(body string, subs ...string) string {
	var b strings.Builder
	for _, l := range strings.Split(body, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				b.WriteString(l + "\n")
				break
			}
		}
	}
	return b.String()
}

// TestRunMetrics runs corral with metrics.listen and a gateway, sends a
// frame into the fence, and scrapes the real switch and gateway counters.
func TestRunMetrics(t *testing.T) {
	dir := shortDir(t)
	port := freePort(t)
	startRun(t, `state_dir: "`+dir+`/state"
fences: [{name: lab, id: 1, listen: ["unix://`+dir+`/a.sock"], gateway: {enabled: true}}]
metrics: {listen: "127.0.0.1:`+strconv.Itoa(port)+`"}
`)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	c := dialUnix(t, dir+"/a.sock")
	// A broadcast ARP request for the gateway: the fence counts it, the
	// gateway receives it.
	arp := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06,
		0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, 1, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2}
	frame := make([]byte, 4+60)
	frame[3] = 60
	copy(frame[4:], arp)
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		body = scrape(t, url)
		if strings.Contains(body, `corral_gateway_in_frames_total{fence="lab"} 0`) ||
			!strings.Contains(body, `corral_gateway_in_frames_total{fence="lab"}`) {
			if time.Now().After(deadline) {
				t.Fatalf("the gateway's in_frames stays 0:\n%s", grepLines(body, "corral_"))
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		break
	}
	for _, want := range []string{
		`corral_fence_ports{fence="lab"} 2`,
		`corral_port_rx_frames_total{fence="lab",port="gateway:lab"`,
		`corral_gateway_forwards{fence="lab"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, grepLines(body, "corral_"))
		}
	}
	if strings.Contains(body, `corral_fence_frames_in_total{fence="lab"} 0`) {
		t.Errorf("fence frames_in is 0 after frames were sent")
	}
	if strings.Contains(body, "corral_uplink_") {
		t.Errorf("uplink metrics without an uplink")
	}
}

func dialUnix(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// promtoolCheck runs `promtool check metrics` (Debian package prometheus)
// on a scrape: counters end in _total, units are in the names.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	promtool(t, "scrape with gossip", body)
}
