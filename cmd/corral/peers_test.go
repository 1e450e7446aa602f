package main

import (
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/uplink"
)

func TestGatewayConflicts(t *testing.T) {
	peers := []uplink.PeerStatus{
		{OuterMAC: "02:fe:0c:01:00:02", Name: "h2", Addr: "192.0.2.2:7407", Gateways: []uint32{1, 5}},
		{OuterMAC: "02:fe:0c:01:00:03", Name: "h3", Gateways: []uint32{2}},
		{OuterMAC: "02:fe:0c:01:00:04", Name: "h4"},
	}
	for _, tc := range []struct {
		name  string
		local []uint32
		want  []gatewayConflict
	}{
		{"no local gateways", nil, []gatewayConflict{}},
		{"disjoint", []uint32{3, 4}, []gatewayConflict{}},
		{"one", []uint32{2}, []gatewayConflict{{Fence: 2, Peer: "02:fe:0c:01:00:03", PeerName: "h3"}}},
		{"two on one peer", []uint32{5, 1}, []gatewayConflict{
			{Fence: 1, Peer: "02:fe:0c:01:00:02", PeerName: "h2", PeerAddr: "192.0.2.2:7407"},
			{Fence: 5, Peer: "02:fe:0c:01:00:02", PeerName: "h2", PeerAddr: "192.0.2.2:7407"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gatewayConflicts(tc.local, peers); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	var b bytes.Buffer
	printPeers(&b, peersResponse{Status: uplink.Status{Peers: peers}, GatewayConflicts: gatewayConflicts([]uint32{2}, peers)})
	if !strings.Contains(b.String(), "ERROR: fence 2: gateway served here and by peer h3 (02:fe:0c:01:00:03") {
		t.Errorf("printPeers does not show the conflict:\n%s", b.String())
	}
}

// TestRunGatewayConflict runs two corral instances in this process, peers
// over a UDP uplink on loopback, both serving the gateway of fence 1 (and
// only the second serving fence 2's): both log the conflict at error
// level, and `corral peers` shows it (text and JSON).
func TestRunGatewayConflict(t *testing.T) {
	udpPort := func() int {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	p1, p2 := udpPort(), udpPort()
	d1, d2 := shortDir(t), shortDir(t)
	conf := func(dir string, id, listen, peer int, extra string) string {
		return `host: {name: h` + strconv.Itoa(id) + `, id: ` + strconv.Itoa(id) + `}
state_dir: "` + dir + `/state"
uplink: {hello_interval: 100ms, udp: {listen: "127.0.0.1:` + strconv.Itoa(listen) + `", peers: ["127.0.0.1:` + strconv.Itoa(peer) + `"]}}
fences:
  - {name: a, id: 1, gateway: {enabled: true}}
  - {name: b, id: 2` + extra + `}
admin: {listen: "unix://` + dir + `/admin.sock"}
`
	}
	logs1, _ := startRun(t, conf(d1, 1, p1, p2, ""))
	logs2, _ := startRun(t, conf(d2, 2, p2, p1, `, gateway: {enabled: true, subnet: 10.0.3.0/24}`))
	for i, logs := range []*syncBuffer{logs1, logs2} {
		deadline := time.Now().Add(20 * time.Second)
		for !hasLogLine(logs.String(), `level=ERROR msg="two hosts serve the gateway of one fence"`, " fence=1 ") {
			if time.Now().After(deadline) {
				t.Fatalf("host %d logs no gateway conflict at error level:\n%s", i+1, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if hasLogLine(logs1.String()+logs2.String(), "two hosts serve the gateway", " fence=2 ") {
		t.Errorf("fence 2 (gateway on one host only) reported as a conflict")
	}
	code, out, errOut := runCLI(t, "peers", "--admin", filepath.Join(d1, "admin.sock"))
	if code != 0 || !strings.Contains(out, "ERROR: fence 1: gateway served here and by peer h2") {
		t.Errorf("corral peers on host 1: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "ERROR: fence 2") {
		t.Errorf("corral peers on host 1 shows fence 2:\n%s", out)
	}
	code, out, errOut = runCLI(t, "peers", "--json", "--admin", filepath.Join(d2, "admin.sock"))
	if code != 0 {
		t.Fatalf("corral peers --json: exit %d: %s", code, errOut)
	}
	var resp peersResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.GatewayConflicts) != 1 || resp.GatewayConflicts[0].Fence != 1 || resp.GatewayConflicts[0].PeerName != "h1" ||
		resp.Transport != "udp" || resp.Counters["gateway_conflict"] == 0 {
		t.Errorf("peers --json on host 2: got conflicts %+v, transport %q, counters %v", resp.GatewayConflicts, resp.Transport, resp.Counters)
	}
}

// hasLogLine reports whether one line of logs contains every sub.
func hasLogLine(logs string, subs ...string) bool {
	for _, l := range strings.Split(logs, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}
