package main

import (
	"bytes"
	"net"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/stack"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// promtool runs `promtool check metrics` on body and fails t with its
// complaints. promtool is in Debian's prometheus package
// (contrib/test-deps.sh).
func promtool(t *testing.T, what, body string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skipf("skipped under -short (make unit): promtool not installed (apt-get install prometheus; make test-deps): %v", err)
		}
		t.Fatalf("promtool not found (apt-get install prometheus; make test-deps): %v", err)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: promtool check metrics: %v\n%s", what, err, out.String())
	}
}

// fullSources are fake sources with every family present: an uplink
// with every counter of a sealed uplink, a gateway with a SOCKS5
// endpoint, forwards.
func fullSources() metricsSources {
	counters := map[string]uint64{}
	for _, n := range uplink.CounterNames() {
		counters[n] = 1
	}
	return metricsSources{
		switchStatus: func() vswitch.Status {
			return vswitch.Status{
				Fences: []vswitch.FenceStatus{{ID: 1, Name: "lab", Ports: 2, MACs: 3, MaxMACs: 100, Drops: map[string]uint64{"runt": 4}}},
				Ports:  []vswitch.PortStatus{{ID: 7, Name: "unix:///x.sock#0", Fence: 1, Drops: map[string]uint64{"pinned": 6}}},
				Trunk:  &vswitch.TrunkStatus{RxFrames: 11, Drops: map[string]uint64{"no_trunk": 2}},
			}
		},
		uplinkStatus: func() (uplink.Status, bool) {
			return uplink.Status{Counters: counters, RxByFence: map[uint32]uint64{1: 10},
				Peers: []uplink.PeerStatus{{OuterMAC: "02:fe:0c:01:00:02", Name: "h2", Gateways: []uint32{1}}}}, true
		},
		gateways: func() []gatewayMetrics {
			return []gatewayMetrics{{fence: "lab", forwards: 2, socks: true, stats: stack.Stats{InFrames: 8}}}
		},
		forwards:      func() forward.Stats { return forward.Stats{Listeners: 1} },
		localGateways: func() []uint32 { return []uint32{1} },
	}
}

func TestMetricsPromtoolFake(t *testing.T) {
	h, err := metricsHandler(fullSources())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	promtool(t, "every family", scrape(t, ts.URL))
}

// TestRunMetricsPromtool runs corral in every configuration that adds
// families (none of the extras; a gateway with a forward and a SOCKS5
// endpoint; an unsealed UDP uplink with a peer; a sealed one) and checks
// each /metrics with promtool, after traffic.
func TestRunMetricsPromtool(t *testing.T) {
	for _, tc := range []struct{ name, extra, fenceExtra string }{
		{"plain", "", ""},
		{"gateway, forward, socks", "", `, gateway: {enabled: true, socks: "127.0.0.1:0", forwards: [{proto: tcp, listen: "127.0.0.1:0", target: "10.0.2.15:22"}]}`},
		{"uplink", `uplink: {hello_interval: 100ms, udp: {listen: "127.0.0.1:OWN", peers: ["127.0.0.1:PEER"]}}`, ""},
		{"sealed uplink", `uplink: {hello_interval: 100ms, udp: {listen: "127.0.0.1:OWN", peers: ["127.0.0.1:PEER"]}, seal: {mode: required, secret_file: SECRET}}`, `, gateway: {enabled: true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortDir(t)
			port := freePort(t)
			extra := strings.ReplaceAll(tc.extra, "PEER", strconv.Itoa(freeUDPPort(t)))
			extra = strings.ReplaceAll(extra, "OWN", strconv.Itoa(freeUDPPort(t)))
			extra = strings.ReplaceAll(extra, "SECRET", strconv.Quote(writeSecret(t, dir, "s.key", 1, true, 0o600)))
			startRun(t, `state_dir: "`+dir+`/state"
fences: [{name: lab, id: 1, listen: ["unix://`+dir+`/a.sock"]`+tc.fenceExtra+`}]
metrics: {listen: "127.0.0.1:`+strconv.Itoa(port)+`"}
`+extra+"\n")
			c := dialUnix(t, dir+"/a.sock")
			// A broadcast: every counter family of the fence, the port,
			// the uplink (sent to the peer) moves.
			frame := make([]byte, 4+60)
			frame[3] = 60
			copy(frame[4:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06})
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			url := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
			waitFor(t, "the port in the metrics", func() bool {
				return strings.Contains(scrape(t, url), `corral_port_rx_frames_total{fence="lab"`)
			})
			body := scrape(t, url)
			if strings.Contains(tc.name, "uplink") != strings.Contains(body, "corral_uplink_tx_frames_total") {
				t.Errorf("uplink families present: %v, want %v", !strings.Contains(tc.name, "uplink"), strings.Contains(tc.name, "uplink"))
			}
			promtool(t, tc.name, body)
		})
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
