package e2e

// Gateway benchmarks (issue 4 item 9): iperf3 TCP between a guest (a
// network namespace with a real kernel stack) and a server on the host's
// loopback, through each user-mode gateway, at guest MTU 1500 and 65520,
// both directions: corral's gateway (the guest's TAP attached by `corral
// plug`), gvproxy (the guest's TAP bridged to its QEMU socket by `corral
// plug`), slirp4netns and pasta.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// benchGateway is one gateway under test: setup connects the guest
// namespace, waits until the gateway works, and returns the address in
// the guest that reaches the host's 127.0.0.1.
type benchGateway struct {
	name  string
	setup func(b *testing.B, guest *harness.NS, mtu int) (hostAddr string)
}

var benchGateways = []benchGateway{
	{"corral", benchGatewayCorral},
	{"gvproxy", benchGatewayGvproxy},
	{"slirp4netns", benchGatewaySlirp},
	{"pasta", benchGatewayPasta},
}

// BenchmarkGateway measures guest→host ("out") and host→guest ("in")
// iperf3 TCP through each gateway. Run it with -benchtime 1x as root.
func BenchmarkGateway(b *testing.B) {
	for _, mtu := range []int{1500, 65520} {
		for _, gw := range benchGateways {
			b.Run(fmt.Sprintf("%s/mtu%d", gw.name, mtu), func(b *testing.B) {
				var out, in float64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					guest := harness.NewNS(b, "bg")
					host := gw.setup(b, guest, mtu)
					b.StartTimer()
					out += benchIperf(b, guest, nil, "127.0.0.1", host, false).gbps
					in += benchIperf(b, guest, nil, "127.0.0.1", host, true).gbps
				}
				n := float64(b.N)
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(out/n, "out-Gbit/s")
				b.ReportMetric(in/n, "in-Gbit/s")
			})
		}
	}
}

// benchGuestAddr gives the guest's interface an address and a default route.
func benchGuestAddr(b *testing.B, guest *harness.NS, ifname, cidr, gw string, mtu int) {
	guest.MustExec(b, "ip", "link", "set", ifname, "mtu", fmt.Sprint(mtu))
	guest.MustExec(b, "ip", "addr", "add", cidr, "dev", ifname)
	guest.MustExec(b, "ip", "link", "set", ifname, "up")
	guest.MustExec(b, "ip", "route", "add", "default", "via", gw)
}

// benchGatewayCorral: a fence with the gateway on 198.51.100.0/24 (router
// .2, which reaches the host's loopback) and the guest's TAP plugged in.
func benchGatewayCorral(b *testing.B, guest *harness.NS, mtu int) string {
	dir := harness.ShortTempDir(b)
	sock := filepath.Join(dir, "gw.sock")
	cfg := fmt.Sprintf(`state_dir: "%s"
fences:
  - name: bench
    id: 1
    listen: ["unix://%s"]
    gateway:
      enabled: true
      subnet: 198.51.100.0/24
      mtu: %d
admin:
  listen: "unix://%s"
log:
  level: info
`, filepath.Join(dir, "state"), sock, mtu, filepath.Join(dir, "admin.sock"))
	harness.StartCorral(b, nil, cfg)
	plug := harness.Start(b, nil, harness.CorralBinary(b), "plug", "unix://"+sock, "--tap", "tap0",
		"--netns", guest.Name, "--mtu", fmt.Sprint(mtu))
	benchWaitLink(b, guest, "tap0", plug)
	benchGuestAddr(b, guest, "tap0", "198.51.100.15/24", "198.51.100.2", mtu)
	benchWaitPing(b, guest, "198.51.100.2")
	return "198.51.100.2"
}

// benchGatewayGvproxy: gvproxy on 198.51.100.0/24 (gateway .1; .254 is
// NATed to the host's 127.0.0.1), the guest's TAP bridged to its QEMU
// socket by `corral plug`.
func benchGatewayGvproxy(b *testing.B, guest *harness.NS, mtu int) string {
	bin := benchTool(b, "CORRAL_BENCH_GVPROXY", "gvproxy")
	dir := harness.ShortTempDir(b)
	qemu := filepath.Join(dir, "qemu.sock")
	cfg := filepath.Join(dir, "gvproxy.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("stack:\n  subnet: 198.51.100.0/24\n  mtu: %d\n", mtu)), 0o600); err != nil {
		b.Fatal(err)
	}
	harness.Start(b, nil, bin, "-config", cfg, "-listen-qemu", "unix://"+qemu)
	harness.WaitFor(b, benchSetupTimeout, "gvproxy's QEMU socket", func() bool { return benchFileExists(qemu) })
	plug := harness.Start(b, nil, harness.CorralBinary(b), "plug", "unix://"+qemu, "--tap", "tap0",
		"--netns", guest.Name, "--mtu", fmt.Sprint(mtu))
	benchWaitLink(b, guest, "tap0", plug)
	benchGuestAddr(b, guest, "tap0", "198.51.100.15/24", "198.51.100.1", mtu)
	benchWaitPing(b, guest, "198.51.100.1")
	return "198.51.100.254"
}

// benchGatewaySlirp: slirp4netns on 198.51.100.0/24; it configures tap0
// (.100, router .2, which reaches the host's loopback).
func benchGatewaySlirp(b *testing.B, guest *harness.NS, mtu int) string {
	slirp := harness.Start(b, nil, "slirp4netns", "--configure", fmt.Sprintf("--mtu=%d", min(mtu, 65520)),
		"--cidr=198.51.100.0/24", "--netns-type=path", "/run/netns/"+guest.Name, "tap0")
	benchWaitLink(b, guest, "tap0", slirp)
	benchWaitPing(b, guest, "198.51.100.2")
	return "198.51.100.2"
}

// benchGatewayPasta: pasta joined to the guest namespace, tap0 configured
// as 198.51.100.15/24 with gateway .2, which pasta maps to the host. pasta
// answers ICMP only through ping sockets, which this host's
// ping_group_range forbids, so readiness is the configured address.
func benchGatewayPasta(b *testing.B, guest *harness.NS, mtu int) string {
	pasta := harness.Start(b, nil, "pasta", "--runas", "0:0", "-f", "-q", "-4", "--config-net",
		"-I", "tap0", "-a", "198.51.100.15", "-n", "24", "-g", "198.51.100.2", "-m", fmt.Sprint(mtu),
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--netns", "/run/netns/"+guest.Name, "--netns-only")
	harness.WaitFor(b, benchSetupTimeout, "pasta's address on tap0", func() bool {
		if pasta.Exited() {
			b.Fatalf("pasta exited: %v\n%s", pasta.Wait(), pasta.Log())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := guest.Exec(ctx, "ip", "-4", "addr", "show", "dev", "tap0")
		return err == nil && strings.Contains(out, "198.51.100.15/24")
	})
	return "198.51.100.2"
}
