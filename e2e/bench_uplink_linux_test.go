package e2e

// Uplink benchmarks (issue 3 item 6): two hosts (network namespaces joined
// by a veth pair, MTU 1500), each running corral with a UDP uplink to the
// other. Measured in one run: frames between a port on host 1 and a port
// on host 2 (the workloads of BenchmarkSwitch), iperf3 TCP between two
// namespaces whose TAPs `corral plug` attaches to the hosts' switches, and
// the same iperf3 over the kernel's VXLAN and over the bare veth between
// the two host namespaces. The sealed uplink (issue 9, DESIGN.md 3.6,
// AES-256-GCM) runs the same frame workloads and iperf3 in the same run,
// beside the unsealed rows.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

const (
	benchIperfSeconds = 4 // measured seconds per iperf3 run (after 1 s omitted)
	benchIperfTimeout = 60 * time.Second
)

// BenchmarkUplink compares corral's UDP uplink with the kernel's VXLAN
// between the same two namespaces. Run it with -benchtime 1x as root.
func BenchmarkUplink(b *testing.B) {
	for _, w := range benchWorkloads {
		b.Run("corral-frames/"+w.name, func(b *testing.B) {
			benchRun(b, benchTarget{name: "uplink", setup: benchSetupUplinkFrames}, w)
		})
	}
	for _, w := range benchWorkloads {
		b.Run("corral-sealed-frames/"+w.name, func(b *testing.B) {
			benchRun(b, benchTarget{name: "sealed-uplink", setup: benchSetupSealedUplinkFrames}, w)
		})
	}
	for _, w := range benchWorkloads {
		b.Run("corral-raw-frames/"+w.name, func(b *testing.B) {
			benchRun(b, benchTarget{name: "raw-uplink", setup: benchSetupRawUplinkFrames}, w)
		})
	}
	// Guest MTU 1500 makes corral split every full-size frame in two
	// (DESIGN.md 3.4); 1440 fits a whole frame in one datagram, as VXLAN's
	// 1450 does.
	for _, mtu := range []int{1500, 1440} {
		b.Run(fmt.Sprintf("iperf3-tcp/corral-mtu%d", mtu), func(b *testing.B) {
			benchIperfRuns(b, func(b *testing.B) (client, server *harness.NS, addr string) {
				h := benchTwoHosts(b)
				return benchPlugPair(b, h, mtu)
			})
		})
	}
	// Sealed: 25 more bytes per frame, so 1415 is the guest MTU without
	// fragments (what the gateway's DHCP advertises).
	for _, mtu := range []int{1500, 1415} {
		b.Run(fmt.Sprintf("iperf3-tcp/corral-sealed-mtu%d", mtu), func(b *testing.B) {
			benchIperfRuns(b, func(b *testing.B) (client, server *harness.NS, addr string) {
				h := benchTwoHosts(b)
				return benchPlugGuests(b, h.startCorralsSealed(b, false, true), mtu)
			})
		})
	}
	b.Run("iperf3-tcp/kernel-vxlan", func(b *testing.B) {
		benchIperfRuns(b, func(b *testing.B) (client, server *harness.NS, addr string) {
			h := benchTwoHosts(b)
			for i, ns := range []*harness.NS{h.ns[0], h.ns[1]} {
				ns.MustExec(b, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42",
					"local", h.addr[i], "remote", h.addr[1-i], "dstport", "4789", "dev", "up0")
				ns.MustExec(b, "ip", "addr", "add", fmt.Sprintf("198.51.100.%d/24", 101+i), "dev", "vx0")
				ns.MustExec(b, "ip", "link", "set", "vx0", "up")
			}
			return h.ns[0], h.ns[1], "198.51.100.102"
		})
	})
	b.Run("iperf3-tcp/kernel-veth", func(b *testing.B) {
		benchIperfRuns(b, func(b *testing.B) (client, server *harness.NS, addr string) {
			h := benchTwoHosts(b)
			return h.ns[0], h.ns[1], h.addr[1]
		})
	})
}

// benchHosts is two host namespaces joined by veth up0 (MTU 1500).
type benchHosts struct {
	ns   [2]*harness.NS
	addr [2]string
	dir  string
}

func benchTwoHosts(b *testing.B) benchHosts {
	harness.NeedRoot(b)
	h := benchHosts{addr: [2]string{"192.0.2.1", "192.0.2.2"}, dir: harness.ShortTempDir(b)}
	h.ns[0] = harness.NewNS(b, "bh1")
	h.ns[1] = harness.NewNS(b, "bh2")
	harness.Veth(b, h.ns[0], "up0", h.ns[1], "up0", 1500)
	for i, ns := range h.ns {
		ns.MustExec(b, "ip", "addr", "add", h.addr[i]+"/24", "dev", "up0")
	}
	return h
}

// startCorrals runs corral in both host namespaces with an uplink to the
// other (raw: AF_PACKET on up0; else UDP) and fence 1 on a unix socket; it
// returns the sockets.
func (h benchHosts) startCorrals(b *testing.B, raw bool) [2]string {
	return h.startCorralsSealed(b, raw, false)
}

// startCorralsSealed is startCorrals, with a sealed uplink (AES-256-GCM,
// one secret from corral keygen) when sealed.
func (h benchHosts) startCorralsSealed(b *testing.B, raw, sealed bool) [2]string {
	var socks [2]string
	secret := ""
	if sealed {
		secret = keygen(b, h.dir, "installation.key")
	}
	for i, ns := range h.ns {
		socks[i] = filepath.Join(h.dir, fmt.Sprintf("h%d.sock", i+1))
		uplink := fmt.Sprintf("  udp:\n    listen: \"%s:7407\"\n    peers: [\"%s:7407\"]\n", h.addr[i], h.addr[1-i])
		if raw {
			uplink = "  raw:\n    interface: up0\n"
		}
		if sealed {
			uplink += fmt.Sprintf("  seal:\n    mode: required\n    secret_file: %q\n", secret)
		}
		cfg := fmt.Sprintf(`host:
  name: bench%d
  id: %d
uplink:
  mtu: 1500
%sfences:
  - name: bench
    id: 1
    listen: ["unix://%s"]
    gateway: {enabled: false}
admin:
  listen: "unix://%s"
log:
  level: info
`, i+1, 0x0101+i, uplink, socks[i], filepath.Join(h.dir, fmt.Sprintf("admin%d.sock", i+1)))
		harness.StartCorral(b, ns, cfg)
	}
	return socks
}

// benchSetupUplinkFrames attaches client a to host 1 and client b to host
// 2, over the UDP uplink.
func benchSetupUplinkFrames(b *testing.B, w benchWorkload) benchPair {
	return benchUplinkFrames(b, false)
}

// benchSetupRawUplinkFrames is benchSetupUplinkFrames over the raw uplink.
func benchSetupRawUplinkFrames(b *testing.B, w benchWorkload) benchPair {
	return benchUplinkFrames(b, true)
}

// keygen runs `corral keygen FILE` and returns the file (here, so
// that the benchmark files, built alone by contrib/bench/run.sh, have it).
func keygen(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command(harness.CorralBinary(t), "keygen", p).CombinedOutput(); err != nil {
		t.Fatalf("corral keygen: %v\n%s", err, out)
	}
	return p
}

// benchSetupSealedUplinkFrames is benchSetupUplinkFrames over the sealed
// UDP uplink.
func benchSetupSealedUplinkFrames(b *testing.B, w benchWorkload) benchPair {
	return benchUplinkFramesSealed(b, false, true)
}

func benchUplinkFrames(b *testing.B, raw bool) benchPair {
	return benchUplinkFramesSealed(b, raw, false)
}

func benchUplinkFramesSealed(b *testing.B, raw, sealed bool) benchPair {
	h := benchTwoHosts(b)
	socks := h.startCorralsSealed(b, raw, sealed)
	return benchPair{
		a:     newBenchConn(b, benchDial(b, socks[0]), 4),
		b:     newBenchConn(b, benchDial(b, socks[1]), 4),
		learn: true,
		after: func() {
			for i := range 2 {
				b.Logf("host %d counters: %s", i+1, benchCorralCounters(b, filepath.Join(h.dir, fmt.Sprintf("admin%d.sock", i+1))))
			}
		},
	}
}

// benchPlugPair starts both corrals and two guest namespaces whose tap0
// (MTU mtu) `corral plug` attaches to host 1 and host 2; it waits until
// they ping.
func benchPlugPair(b *testing.B, h benchHosts, mtu int) (client, server *harness.NS, addr string) {
	return benchPlugGuests(b, h.startCorrals(b, false), mtu)
}

// benchPlugGuests makes two guest namespaces whose tap0 (MTU mtu) `corral
// plug` attaches to socks[0] and socks[1]; it waits until they ping.
func benchPlugGuests(b *testing.B, socks [2]string, mtu int) (client, server *harness.NS, addr string) {
	bin := harness.CorralBinary(b)
	var guests [2]*harness.NS
	for i := range guests {
		guests[i] = harness.NewNS(b, fmt.Sprintf("bv%d", i+1))
		plug := harness.Start(b, nil, bin, "plug", "unix://"+socks[i], "--tap", "tap0",
			"--netns", guests[i].Name, "--mtu", fmt.Sprint(mtu))
		benchWaitLink(b, guests[i], "tap0", plug)
		guests[i].MustExec(b, "ip", "addr", "add", fmt.Sprintf("198.51.100.%d/24", i+1), "dev", "tap0")
		guests[i].MustExec(b, "ip", "link", "set", "tap0", "up")
	}
	benchWaitPing(b, guests[0], "198.51.100.2")
	return guests[0], guests[1], "198.51.100.2"
}

// benchWaitLink waits until the interface exists in ns; it fails at once
// if the process that should make it exits.
func benchWaitLink(b *testing.B, ns *harness.NS, ifname string, maker *harness.Proc) {
	harness.WaitFor(b, benchSetupTimeout, ifname+" in "+ns.Name, func() bool {
		if maker != nil && maker.Exited() {
			b.Fatalf("%s exited before %s appeared in %s: %v\n%s", maker.Name, ifname, ns.Name, maker.Wait(), maker.Log())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := ns.Exec(ctx, "ip", "link", "show", ifname)
		return err == nil
	})
}

// benchWaitPing waits until addr answers a ping from ns.
func benchWaitPing(b *testing.B, ns *harness.NS, addr string) {
	harness.WaitFor(b, benchSetupTimeout, "ping "+addr+" from "+ns.Name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := ns.Exec(ctx, "ping", "-c", "1", "-W", "1", addr)
		return err == nil
	})
}

// benchIperfRuns runs one iperf3 TCP measurement per iteration, client
// to server, and reports Gbit/s received and retransmissions.
func benchIperfRuns(b *testing.B, setup func(b *testing.B) (client, server *harness.NS, addr string)) {
	var gbps, retr float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		client, server, addr := setup(b)
		b.StartTimer()
		r := benchIperf(b, client, server, addr, addr, false)
		gbps += r.gbps
		retr += r.retr
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(gbps/n, "Gbit/s")
	b.ReportMetric(retr/n, "retr")
}

type benchIperfResult struct{ gbps, retr float64 }

// benchFreePort returns a TCP port free on the host's loopback now (so
// that an iperf3 server of this benchmark does not meet one of a test
// running at the same time).
func benchFreePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// benchIperf runs an iperf3 server in server (nil: here) bound to bind and
// a client in client (nil: here) connecting to addr, for benchIperfSeconds
// (+1 s omitted); reverse makes the server send.
func benchIperf(b *testing.B, client, server *harness.NS, bind, addr string, reverse bool) benchIperfResult {
	b.Helper()
	port := benchFreePort(b)
	harness.Start(b, server, "iperf3", "-s", "-1", "-B", bind, "-p", port)
	args := []string{"iperf3", "-c", addr, "-p", port, "-t", fmt.Sprint(benchIperfSeconds), "-O", "1", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	var out string
	var err error
	deadline := time.Now().Add(benchSetupTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), benchIperfTimeout)
		out, err = client.Exec(ctx, args...)
		cancel()
		// The server may not listen yet: retry a refused connection.
		if !strings.Contains(out, "refused") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits float64 `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || res.Error != "" || err != nil {
		b.Fatalf("iperf3 %s: %v %s\n%s", strings.Join(args, " "), err, res.Error, out)
	}
	if res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("iperf3 moved nothing:\n%s", out)
	}
	return benchIperfResult{gbps: res.End.SumReceived.BitsPerSecond / 1e9, retr: res.End.SumSent.Retransmits}
}
