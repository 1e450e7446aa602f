package e2e

// Storm benchmarks (issue 8 items 6 and 9): what an attacker in one fence
// costs another fence. corral runs with fences A and B, each listening on
// a unix socket. In fence A an attacker port writes 64-byte frames as fast
// as the socket takes them, and a victim port reads and discards:
//
//   - storm: broadcasts, under the default storm control (bum_rate 20,000);
//   - storm-unlimited: the same with bum_rate 0 (storm control off);
//   - macflood: frames from ever-new random source MACs to random unknown
//     unicast MACs (fence A lets a port learn 65,536 MACs, so the table
//     fills and the flood goes on refused);
//   - quiet: no attacker.
//
// In fence B two ports run BenchmarkSwitch's rtt-64B and tput-64B
// workloads. Only unix sockets; every run bounded in time.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// benchStormModes are the attacks, in the order they run.
var benchStormModes = []struct {
	name   string
	attack string // "", "broadcast", "macflood"
	fenceA string // extra keys of fence A
}{
	{"quiet", "", ""},
	{"storm", "broadcast", ""},
	{"storm-unlimited", "broadcast", "bum_rate: 0"},
	{"macflood", "macflood", "port_max_macs: 65536"},
}

// BenchmarkStorm measures fence B's round trip and 64-byte throughput
// while fence A is quiet or under attack, and the attacker's send rate
// (attack-Mpps: frames the socket took from it, per second).
func BenchmarkStorm(b *testing.B) {
	for _, m := range benchStormModes {
		for _, w := range []benchWorkload{{name: "rtt-64B", size: 64, rtt: true}, {name: "tput-64B", size: 64}} {
			b.Run(m.name+"/"+w.name, func(b *testing.B) {
				var p50, p99, mpps, attack float64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					p, stop := benchStormSetup(b, m.attack, m.fenceA)
					b.StartTimer()
					if w.rtt {
						r := benchRTT(b, p, w.size)
						p50 += r.p50.Seconds() * 1e6
						p99 += r.p99.Seconds() * 1e6
					} else {
						mpps += benchThroughput(b, p, w.size).pps / 1e6
					}
					b.StopTimer()
					attack += stop()
					p.after()
				}
				n := float64(b.N)
				b.ReportMetric(0, "ns/op")
				if w.rtt {
					b.ReportMetric(p50/n, "p50-us")
					b.ReportMetric(p99/n, "p99-us")
				} else {
					b.ReportMetric(mpps/n, "Mpps")
				}
				if m.attack != "" {
					b.ReportMetric(attack/n, "attack-Mpps")
				}
			})
		}
	}
}

// benchStormSetup starts corral with fences A and B, the learned pair of
// fence B, and (attack != "") the attacker and the victim in fence A. stop
// ends the attack and returns the attacker's rate in Mpps.
func benchStormSetup(b *testing.B, attack, fenceA string) (benchPair, func() float64) {
	dir := harness.ShortTempDir(b)
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	admin := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`fences:
  - name: a
    id: 1
    listen: ["unix://%s"]
    gateway: {enabled: false}
    %s
  - name: b
    id: 2
    listen: ["unix://%s"]
    gateway: {enabled: false}
admin:
  listen: "unix://%s"
log:
  level: info
`, sockA, fenceA, sockB, admin)
	harness.StartCorral(b, nil, cfg)
	p := benchPair{
		a: newBenchConn(b, benchDial(b, sockB), 4),
		b: newBenchConn(b, benchDial(b, sockB), 4),
	}
	p.after = func() { b.Logf("corral counters: %s", benchCorralCounters(b, admin)) }
	benchLearn(b, p)
	if attack == "" {
		return p, func() float64 { return 0 }
	}
	victim := newBenchConn(b, benchDial(b, sockA), 4)
	attacker := newBenchConn(b, benchDial(b, sockA), 4)
	var wg sync.WaitGroup
	var sent atomic.Uint64
	var attackErr error
	wg.Add(2)
	go func() { // the victim reads and discards
		defer wg.Done()
		for {
			if _, err := victim.next(); err != nil {
				return
			}
		}
	}()
	blobs := benchAttackBlobs(attacker, attack)
	t0 := time.Now()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			n, err := attacker.send(blobs[i%len(blobs)])
			sent.Add(uint64(n))
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					attackErr = err
				}
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the attack is on
	return p, func() float64 {
		secs := time.Since(t0).Seconds()
		attacker.c.SetWriteDeadline(time.Now())
		victim.c.SetReadDeadline(time.Now())
		wg.Wait()
		if attackErr != nil {
			b.Fatalf("attacker: %v", attackErr)
		}
		return float64(sent.Load()) / float64(attacker.hdr+64) / secs / 1e6
	}
}

// benchAttackBlobs returns the attacker's writes: 64 KiB blobs of 64-byte
// frames, broadcasts from one MAC, or (macflood) 64 blobs of frames from
// random source MACs to random unicast MACs (4,096 new MACs per blob).
func benchAttackBlobs(c *benchConn, attack string) [][]byte {
	src := benchMAC{0x52, 0x54, 0x00, 0xee, 0x00, 0x01}
	per := benchBatchBytes / (c.hdr + 64)
	if attack == "broadcast" {
		return [][]byte{c.frames(per, 64, benchMAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, 0)}
	}
	rng := rand.New(rand.NewPCG(8, 6))
	var blobs [][]byte
	for range 64 {
		blob := c.frames(per, 64, benchMAC{}, src, 0)
		for i := 0; i < per; i++ {
			f := blob[i*(c.hdr+64)+c.hdr:]
			for k := 0; k < 12; k++ {
				f[k] = byte(rng.Uint32())
			}
			f[0] &^= 1 // unicast destination
			f[6] &^= 1 // unicast, non-zero source
			f[11] |= 1
		}
		blobs = append(blobs, blob)
	}
	return blobs
}
