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

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/uplink"
)

// TestPrintPeersConflict: corral peers shows a gateway conflict as an
// error line.
func TestPrintPeersConflict(t *testing.T) {
	peers := []uplink.PeerStatus{
		{OuterMAC: "02:fe:0c:01:00:02", Name: "h2", Addr: "192.0.2.2:7407", Gateways: []uint32{1, 5}},
		{OuterMAC: "02:fe:0c:01:00:03", Name: "h3", Gateways: []uint32{2}},
		{OuterMAC: "02:fe:0c:01:00:04", Name: "h4"},
	}
	var b bytes.Buffer
	printPeers(&b, admin.PeersResponse{Peers: []admin.PeerStatus{{OuterMAC: "02:fe:0c:01:00:03", Name: "h3", Gateways: []uint32{2}}},
		GatewayConflicts: admin.GatewayConflicts([]uint32{2}, peers)})
	if !strings.Contains(b.String(), "ERROR: fence 2: gateway served here and by peer h3 (02:fe:0c:01:00:03") {
		t.Errorf("printPeers does not show the conflict:\n%s", b.String())
	}
}

// TestRunGatewayConflict runs two corral instances in this process, peers
// over a UDP uplink on loopback, both configured to serve the gateway of
// fence 1 (and only the second fence 2's). Host 1 (the lower host ID, so
// the lower outer MAC) keeps fence 1's gateway, host 2 yields it: exactly
// one gateway serves each fence, both log the conflict once at error level,
// `corral peers` shows the yield (text and JSON), and when host 1 stops,
// host 2's gateway of fence 1 comes back.
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
uplink: {hello_interval: 250ms, udp: {listen: "127.0.0.1:` + strconv.Itoa(listen) + `", peers: ["127.0.0.1:` + strconv.Itoa(peer) + `"]}}
fences:
  - {name: a, id: 1, gateway: {enabled: true}}
  - {name: b, id: 2` + extra + `}
admin: {listen: "unix://` + dir + `/admin.sock"}
`
	}
	logs1, stop1 := startRun(t, conf(d1, 1, p1, p2, ""))
	logs2, _ := startRun(t, conf(d2, 2, p2, p1, `, gateway: {enabled: true, subnet: 10.0.3.0/24}`))
	admin1, admin2 := filepath.Join(d1, "admin.sock"), filepath.Join(d2, "admin.sock")
	waitLog := func(what string, logs *syncBuffer, subs ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !hasLogLine(logs.String(), subs...) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no log line with %q:\n%s", what, subs, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	served := func(adminSock string) []uint32 {
		t.Helper()
		code, out, errOut := runCLI(t, "gateways", "--json", "--admin", adminSock)
		if code != 0 {
			t.Fatalf("corral gateways --json: exit %d: %s", code, errOut)
		}
		var gs []admin.GatewayStatus
		if err := json.Unmarshal([]byte(out), &gs); err != nil {
			t.Fatal(err)
		}
		ids := []uint32{}
		for _, g := range gs {
			ids = append(ids, g.Fence)
		}
		return ids
	}
	peers := func(adminSock string) admin.PeersResponse {
		t.Helper()
		code, out, errOut := runCLI(t, "peers", "--json", "--admin", adminSock)
		if code != 0 {
			t.Fatalf("corral peers --json: exit %d: %s", code, errOut)
		}
		var resp admin.PeersResponse
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	conflictLine := []string{`level=ERROR msg="two hosts serve the gateway of one fence"`, " fence=1 "}
	waitLog("host 1 (winner)", logs1, append(conflictLine, `action="keep serving`)...)
	waitLog("host 2 (yields)", logs2, append(conflictLine, `action="yield`)...)
	waitLog("host 2 detaches", logs2, `level=ERROR msg="gateway yielded`, "fence=a", "fence_id=1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		g1, g2 := served(admin1), served(admin2)
		p1, p2 := peers(admin1), peers(admin2)
		if reflect.DeepEqual(g1, []uint32{1}) && reflect.DeepEqual(g2, []uint32{2}) &&
			len(p1.Peers) == 1 && reflect.DeepEqual(p1.Peers[0].Gateways, []uint32{2}) &&
			len(p1.GatewayConflicts) == 0 && len(p2.GatewayConflicts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateways: host 1 serves %v (want [1]), host 2 %v (want [2]); host 1 sees peers %+v; conflicts %+v / %+v",
				g1, g2, p1.Peers, p1.GatewayConflicts, p2.GatewayConflicts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // four hello intervals: nothing flaps, nothing is logged again
	if g1, g2 := served(admin1), served(admin2); !reflect.DeepEqual(g1, []uint32{1}) || !reflect.DeepEqual(g2, []uint32{2}) {
		t.Fatalf("later: host 1 serves %v, host 2 %v", g1, g2)
	}
	for i, logs := range []*syncBuffer{logs1, logs2} {
		if n := strings.Count(logs.String(), "two hosts serve the gateway of one fence"); n != 1 {
			t.Errorf("host %d logged the conflict %d times", i+1, n)
		}
	}
	if hasLogLine(logs1.String()+logs2.String(), "two hosts serve the gateway", " fence=2 ") {
		t.Errorf("fence 2 (gateway on one host only) reported as a conflict")
	}
	if hasLogLine(logs1.String(), "gateway yielded") {
		t.Errorf("host 1 yielded")
	}
	resp := peers(admin2)
	if len(resp.GatewayYields) != 1 || resp.GatewayYields[0].Fence != 1 || resp.GatewayYields[0].PeerName != "h1" ||
		resp.Transport != "udp" || resp.Counters["gateway_conflict"] != 1 {
		t.Errorf("peers --json on host 2: yields %+v, transport %q, counters %v", resp.GatewayYields, resp.Transport, resp.Counters)
	}
	if resp := peers(admin1); len(resp.GatewayYields) != 0 || resp.Counters["gateway_conflict"] != 1 {
		t.Errorf("peers --json on host 1: yields %+v, counters %v", resp.GatewayYields, resp.Counters)
	}
	code, out, errOut := runCLI(t, "peers", "--admin", admin2)
	if code != 0 || !strings.Contains(out, "ERROR: fence a (1): gateway configured here but not served: yielded to peer h1") {
		t.Errorf("corral peers on host 2: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "forward", "ls", "a", "--admin", admin2); code == 0 || !strings.Contains(errOut, "yielded to peer") {
		t.Errorf("forward ls a on host 2: exit %d: %s", code, errOut)
	}

	// Host 1 stops: after its expiry (3 hello intervals) host 2 serves fence 1.
	if err := stop1(); err != nil {
		t.Fatalf("host 1: %v", err)
	}
	waitLog("host 2 resumes", logs2, `msg="gateway resumed`, "fence=a")
	deadline = time.Now().Add(20 * time.Second)
	for g2 := served(admin2); !reflect.DeepEqual(g2, []uint32{1, 2}); g2 = served(admin2) {
		if time.Now().After(deadline) {
			t.Fatalf("host 2 serves %v after host 1 stopped, want [1 2]", g2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp := peers(admin2); len(resp.GatewayYields) != 0 {
		t.Errorf("host 2 still yields %+v", resp.GatewayYields)
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
