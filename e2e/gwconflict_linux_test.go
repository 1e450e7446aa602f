package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// Gateway conflict over a UDP uplink (DESIGN.md 6: two hosts serving one
// fence is detected by hellos and refused):
//
//	                         ns gcvm (tap0, udhcpc) ─ plug
//	                                                    │
//	[g1 corral 192.0.2.1, id 0x41] eth0 ─ br0 ─ eth0 [g2 corral 192.0.2.2, id 0x42]
//
// Both hosts are configured to serve fence lab's gateway. g1 has the lower
// host ID, hence the lower outer MAC: it keeps the gateway, g2 yields.
// A namespace plugged into g2 gets its DHCP lease across the uplink from
// g1's gateway, with the MTU that avoids fragmentation (1500 − 60).

// gcGateway is the part of GET /v1/gateways this test reads.
type gcGateway struct {
	Fence  uint32 `json:"fence"`
	Leases []struct {
		IP  string `json:"ip"`
		MAC string `json:"mac"`
	} `json:"leases"`
}

// gcPeers is the part of GET /v1/peers this test reads.
type gcPeers struct {
	Counters      map[string]uint64 `json:"counters"`
	GatewayYields []struct {
		Fence    uint32 `json:"fence"`
		PeerName string `json:"peer_name"`
	} `json:"gateway_yields"`
	GatewayConflicts []json.RawMessage `json:"gateway_conflicts"`
	Peers            []struct {
		Name     string   `json:"name"`
		Gateways []uint32 `json:"gateways"`
	} `json:"peers"`
}

// gcQuery runs `corral CMD --json --admin ADMIN` and decodes its output.
func gcQuery(t *testing.T, admin string, v any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append(args, "--json", "--admin", admin)
	out, err := exec.CommandContext(ctx, harness.CorralBinary(t), args...).Output()
	if err != nil {
		t.Fatalf("corral %v: %v\n%s", args, err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("corral %v: %v\n%s", args, err, out)
	}
}

func TestIntegrationGatewayConflict(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	_, nss := hubLAN(t, "gc", 2)
	const fenceLab = 7
	type host struct {
		name, admin, sock string
		proc              *harness.Proc
	}
	hosts := make([]*host, 2)
	for i := range hosts {
		h := &host{name: fmt.Sprintf("g%d", i+1)}
		h.admin = "unix://" + filepath.Join(dir, h.name+"-admin.sock")
		h.sock = filepath.Join(dir, h.name+"-lab.sock")
		yaml := fmt.Sprintf(`host: {name: %s, installation: 1, id: %d}
state_dir: %s
uplink:
  mtu: 1500
  hello_interval: %s
  udp: {listen: "0.0.0.0:7407", peers: ["192.0.2.%d:7407"]}
fences:
  - {name: lab, id: %d, listen: ["unix://%s"], gateway: {enabled: true}}
admin: {listen: %q}
log: {level: debug}
`, h.name, 0x41+i, filepath.Join(dir, h.name+"-state"), ulHello, 2-i, fenceLab, h.sock, h.admin)
		h.proc = harness.StartCorral(t, nss[i], yaml)
		hosts[i] = h
	}
	g1, g2 := hosts[0], hosts[1]
	served := func(h *host) []uint32 {
		var gs []gcGateway
		gcQuery(t, h.admin, &gs, "gateways")
		ids := []uint32{}
		for _, g := range gs {
			ids = append(ids, g.Fence)
		}
		return ids
	}

	// Exactly one gateway: g1 keeps it, g2 yields, and stays so.
	harness.WaitFor(t, ulWait, "g1 alone serves fence lab's gateway", func() bool {
		var p1, p2 gcPeers
		gcQuery(t, g1.admin, &p1, "peers")
		gcQuery(t, g2.admin, &p2, "peers")
		return fmt.Sprint(served(g1)) == fmt.Sprint([]uint32{fenceLab}) && len(served(g2)) == 0 &&
			len(p1.Peers) == 1 && len(p1.Peers[0].Gateways) == 0 && len(p2.GatewayYields) == 1 &&
			len(p1.GatewayConflicts) == 0 && len(p2.GatewayConflicts) == 0
	})
	if err := g2.proc.WaitLog(`msg="gateway yielded`, ulWait); err != nil {
		t.Fatalf("g2 did not log the yield: %v\n%s", err, g2.proc.Log())
	}
	if err := g1.proc.WaitLog(`action="keep serving`, ulWait); err != nil {
		t.Fatalf("g1 did not log the conflict: %v\n%s", err, g1.proc.Log())
	}
	var p2 gcPeers
	gcQuery(t, g2.admin, &p2, "peers")
	if y := p2.GatewayYields; len(y) != 1 || y[0].Fence != fenceLab || y[0].PeerName != "g1" {
		t.Fatalf("g2 gateway_yields: %+v", y)
	}
	time.Sleep(2 * time.Second) // several hello intervals: no flapping
	if s1, s2 := served(g1), served(g2); fmt.Sprint(s1) != fmt.Sprint([]uint32{fenceLab}) || len(s2) != 0 {
		t.Fatalf("later: g1 serves %v, g2 serves %v", s1, s2)
	}
	for _, h := range hosts {
		if n := strings.Count(h.proc.Log(), "two hosts serve the gateway of one fence"); n != 1 {
			t.Errorf("%s logged the conflict %d times, want once", h.name, n)
		}
	}
	if strings.Contains(g1.proc.Log(), "gateway yielded") {
		t.Errorf("g1 yielded too:\n%s", g1.proc.Log())
	}

	// A guest on g2 gets its lease from g1's gateway across the uplink.
	vmNS := harness.NewNS(t, "gcvm")
	plug := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+g2.sock, "--tap", "tap0", "--netns", vmNS.Name)
	harness.WaitFor(t, ulWait, "tap0 in "+vmNS.Name, func() bool {
		if plug.Exited() {
			t.Fatalf("corral plug exited: %v\n%s", plug.Wait(), plug.Log())
		}
		_, err := nsRun(t, vmNS, 10*time.Second, "ip", "link", "show", "dev", "tap0")
		return err == nil
	})
	vmNS.MustExec(t, "ip", "link", "set", "dev", "tap0", "address", macA, "up")
	script := filepath.Join(dir, "udhcpc-gc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := nsRun(t, vmNS, 60*time.Second, "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n",
		"-t", "10", "-T", "2", "-s", script)
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s\ng1:\n%s\ng2:\n%s", err, out, g1.proc.Log(), g2.proc.Log())
	}
	if addrs := vmNS.MustExec(t, "ip", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(addrs, "10.0.2.15/24") {
		t.Fatalf("tap0 has no 10.0.2.15/24:\n%s", addrs)
	}
	env, err := os.ReadFile(script + ".bound.env")
	if err != nil {
		t.Fatal(err)
	}
	// Issue 4 item 2: UDP/IPv4 uplink at MTU 1500 → 1500 − 20 − 8 − 18 − 14.
	for _, want := range []string{"router=10.0.2.2", "mtu=1440"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("udhcpc environment lacks %q:\n%s", want, env)
		}
	}
	var gs []gcGateway
	gcQuery(t, g1.admin, &gs, "gateways")
	if len(gs) != 1 || len(gs[0].Leases) != 1 || gs[0].Leases[0].MAC != macA {
		t.Fatalf("g1's gateway leases: %+v, want one for %s", gs, macA)
	}

	// A full-MTU packet to the gateway crosses the uplink whole.
	var before struct {
		Counters map[string]uint64 `json:"counters"`
	}
	gcQuery(t, g2.admin, &before, "peers")
	if out, err := nsRun(t, vmNS, 30*time.Second, "ping", "-n", "-c", "2", "-W", "5", "-M", "do", "-s", "1412", "10.0.2.3"); err != nil {
		t.Fatalf("ping 10.0.2.3 with 1440-byte packets: %v\n%s", err, out)
	}
	var after gcPeers
	gcQuery(t, g2.admin, &after, "peers")
	if b, a := before.Counters["tx_fragmented"], after.Counters["tx_fragmented"]; a != b {
		t.Errorf("g2 fragmented %d frames of 1440-byte packets", a-b)
	}
}
