package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// plugWith is plugInto with extra `corral plug` arguments (--offload).
func (v *vm) plugWith(t testing.TB, h *ulHost, fence string, extra ...string) {
	t.Helper()
	args := append([]string{"plug", "unix://" + h.sock(fence), "--tap", "t0", "--netns", v.ns.Name, "--mtu", fmt.Sprint(vmMTU)}, extra...)
	v.plug = harness.Start(t, nil, harness.CorralBinary(t), args...)
	if err := v.plug.WaitLog("plugged", ulWait); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, ulWait, v.name+"'s TAP configured", func() bool {
		for _, args := range [][]string{
			{"ip", "link", "set", "t0", "down"},
			{"ip", "link", "set", "t0", "address", v.mac, "mtu", fmt.Sprint(vmMTU)},
			{"ip", "addr", "replace", v.ip + "/24", "dev", "t0"},
			{"ip", "link", "set", "t0", "up"},
		} {
			if out, err := v.ns.Exec(context.Background(), args...); err != nil {
				t.Logf("%s: %v: %s (retrying)", v.name, err, out)
				return false
			}
		}
		return true
	})
}

// offloadLab: two hosts joined by the UDP uplink (as in
// BenchmarkE2EUplinkIperf), a VM namespace plugged into each, with or
// without --offload, VM MTU 1500; va reaches vb.
func offloadLab(t testing.TB, offload bool) (hosts []*ulHost, va, vb *vm) {
	t.Helper()
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "uo", 2)
	hosts = []*ulHost{{name: "o1", ns: nss[0], rt: rt}, {name: "o2", ns: nss[1], rt: rt}}
	for i, h := range hosts {
		up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [\"192.0.2.%d:7407\"]}\n", 2-i)
		h.yaml = strings.Replace(hostYAML(h.name, 0x70+i, up, []string{"blue"}, h), "level: debug", "level: info", 1)
		h.start(t)
	}
	extra := []string{fmt.Sprintf("--offload=%v", offload)}
	va, vb = newVM(t, "oa", macA, ipA), newVM(t, "ob", macB, ipB)
	va.plugWith(t, hosts[0], "blue", extra...)
	vb.plugWith(t, hosts[1], "blue", extra...)
	va.mustReach(t, ipB)
	return hosts, va, vb
}

// TestE2EPlugOffloadUplink: `corral plug --offload` on both VMs of two
// hosts joined by the UDP uplink; 32 MiB cross over TCP (busybox nc) with
// the right SHA-256, and the plugs say they use offloads.
func TestE2EPlugOffloadUplink(t *testing.T) {
	harness.NeedRoot(t)
	_, va, vb := offloadLab(t, true)
	for _, v := range []*vm{va, vb} {
		if !strings.Contains(v.plug.Log(), "offload=true") {
			t.Fatalf("%s's plug does not log offload=true:\n%s", v.name, v.plug.Log())
		}
	}
	dir := t.TempDir()
	tx, rx := filepath.Join(dir, "tx"), filepath.Join(dir, "rx")
	data := make([]byte, 32<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], r.Uint64())
	}
	if err := os.WriteFile(tx, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// nc -e hands the connection to cat, which writes until the client's EOF.
	srv := harness.Start(t, vb.ns, "busybox", "nc", "-l", "-p", "5001", "-e", "sh", "-c", "exec cat > "+rx)
	// The server may not listen yet: retry while the connection is refused.
	harness.WaitFor(t, ulWait, "client sent the file", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		out, err := va.ns.Exec(ctx, "sh", "-c", "busybox nc "+ipB+" 5001 < "+tx)
		if err != nil {
			t.Logf("client: %v %s (retrying)", err, out)
		}
		return err == nil
	})
	harness.WaitFor(t, ulWait, "server exited", srv.Exited)
	got, err := os.ReadFile(rx)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("received %d bytes with SHA-256 %x, sent %d with %x", len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

// BenchmarkE2EUplinkIperfOffload is BenchmarkE2EUplinkIperf at VM MTU
// 1500 with the VMs' TAPs plugged without and with `corral plug
// --offload`, side by side. It reports Gbit/s; b.N is ignored (one run).
//
//	go test -run XXX -bench E2EUplinkIperfOffload -benchtime 1x -v ./e2e/
func BenchmarkE2EUplinkIperfOffload(b *testing.B) {
	harness.NeedRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 not found (contrib/test-deps.sh): %v", err)
	}
	for _, offload := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%v", offload), func(b *testing.B) {
			hosts, va, vb := offloadLab(b, offload)
			gbps, retr := vmIperf(b, va, vb)
			for _, h := range hosts {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				out, _ := exec.CommandContext(ctx, harness.CorralBinary(b), "status", "--admin", h.admin()).CombinedOutput()
				cancel()
				b.Logf("%s status:\n%s", h.name, out)
			}
			b.Logf("offload %v: %.2f Gbit/s, %d retransmits", offload, gbps, retr)
		})
	}
}

// BenchmarkGatewayOffload is BenchmarkGateway's corral case at guest MTU
// 1500 with the guest's TAP plugged without and with --offload.
//
//	go test -run XXX -bench GatewayOffload -benchtime 1x -v ./e2e/
func BenchmarkGatewayOffload(b *testing.B) {
	harness.NeedRoot(b)
	for _, offload := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%v", offload), func(b *testing.B) {
			var out, in float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				guest := harness.NewNS(b, "bo")
				dir := harness.ShortTempDir(b)
				sock := filepath.Join(dir, "gw.sock")
				cfg := fmt.Sprintf("state_dir: %q\nfences:\n  - name: bench\n    id: 1\n    listen: [\"unix://%s\"]\n"+
					"    gateway: {enabled: true, subnet: 198.51.100.0/24, mtu: 1500}\nadmin: {listen: \"unix://%s\"}\nlog: {level: info}\n",
					filepath.Join(dir, "state"), sock, filepath.Join(dir, "admin.sock"))
				harness.StartCorral(b, nil, cfg)
				args := []string{"plug", "unix://" + sock, "--tap", "tap0", "--netns", guest.Name, "--mtu", "1500"}
				args = append(args, fmt.Sprintf("--offload=%v", offload))
				plug := harness.Start(b, nil, harness.CorralBinary(b), args...)
				benchWaitLink(b, guest, "tap0", plug)
				benchGuestAddr(b, guest, "tap0", "198.51.100.15/24", "198.51.100.2", 1500)
				benchWaitPing(b, guest, "198.51.100.2")
				b.StartTimer()
				out += benchIperf(b, guest, nil, "127.0.0.1", "198.51.100.2", false).gbps
				in += benchIperf(b, guest, nil, "127.0.0.1", "198.51.100.2", true).gbps
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(out/n, "out-Gbit/s")
			b.ReportMetric(in/n, "in-Gbit/s")
		})
	}
}
