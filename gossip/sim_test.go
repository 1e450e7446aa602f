package gossip

import (
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// simSettle is the protocol time between the convergence and the
// steady-state window.
const simSettle = 10 * time.Second

var (
	simWindow  = flag.Duration("sim.window", 60*time.Second, "BenchmarkScale: steady-state measurement window")
	simFences  = flag.Int("sim.fences", 1000, "BenchmarkScale: fences in the mix")
	simMACs    = flag.Int("sim.macs", 2, "BenchmarkScale: MACs per host per fence")
	simTimeout = flag.Duration("sim.timeout", 10*time.Minute, "BenchmarkScale: bound on each wait")
	simSizes   = flag.String("sim.sizes", "50,100,300,1000", "BenchmarkScale: member counts, comma-separated")
	simJoins   = flag.Float64("sim.joinrate", 0, "BenchmarkScale: members started per protocol second (0: all at once up to 200 members, 20 a second beyond)")
	simDilate  = flag.Int("sim.dilate", 0, "BenchmarkScale: time dilation (every protocol timer this many times slower; 0: one per 200 members, at least 1)")
)

// BenchmarkScale is the scale simulation (issue 10, item 5): N memberlist
// members in one process on memnet, with the LAN profile unchanged, each
// with a share of a fence mix (sim.fences fences at 1,000 members, in
// proportion below, each on 3 to 50 random hosts, sim.macs MACs per host
// per fence). It reports:
//
//   - converge-s: from the last member's start until every member knows
//     every other (all joined through one seed; started all at once up to
//     200 members, else -sim.joinrate a second, 20 by default);
//   - macs-s: until then every host's MAC lookups are right for all its
//     fences;
//   - kbit/s-out, kbit/s-in: gossip bytes per host per second over
//     sim.window of steady state, from 10 s after the MACs converged
//     (everything memberlist sends, push/pull
//     included, plus fence anti-entropy), the mean over the hosts;
//     kbit/s-out-max the busiest host's;
//   - join-s: a new member, joining through one seed, known by all;
//   - fail-s: a member with fences fails (no goodbye); until no host
//     lists it among a fence's hosts or resolves its MACs;
//   - MiB/host: live heap after GC divided by the members.
//
// Time dilation: one process cannot give a thousand members the CPU a
// thousand hosts have — starved, members miss each other's probe
// deadlines and declare each other dead. So the simulation stretches
// time: with dilation k (-sim.dilate; by default one per 200 members),
// every timer of memberlist and of the Node runs k times slower
// (Config.dilate: probe interval and timeout, gossip interval, push/pull,
// suspicion, anti-entropy, snapshot spacing, join backoff, send pacing),
// so each member gets k times the CPU per protocol second. The protocol
// does the same steps in the same order; the durations reported are the
// measured ones divided by k, the rates the measured ones multiplied by
// k, the windows and timeouts are protocol time. CPU time spent per
// packet (encoding, compression) shrinks by k relative to the timers,
// as on hosts that have a CPU each; network latency is zero either way.
//
// Run: go test -run '^$' -bench 'BenchmarkScale' -benchtime 1x -timeout 60m ./gossip/
// (other sizes: -args -sim.sizes 200,500).
func BenchmarkScale(b *testing.B) {
	for _, f := range strings.Split(*simSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("-sim.sizes: %q is not a member count", f)
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				simulate(b, n)
			}
		})
	}
}

func simulate(b *testing.B, nh int) {
	// The fence count scales with the members (sim.fences at 1,000), so
	// that every size has the same mix per host: about 26 fences each.
	nf := max(20, *simFences*nh/1000)
	mix := fenceMix(nh+1, nf, 3, 50, uint64(nh))
	k := *simDilate
	if k <= 0 {
		k = max(1, nh/200)
	}
	kd := time.Duration(k)
	// protocol converts a measured duration to protocol time.
	protocol := func(d time.Duration) time.Duration { return d / kd }
	c := newCluster(b, nil)
	c.dilate = k
	nodes := make([]*simNode, nh+1)
	for i := range nodes {
		nodes[i] = c.add()
	}
	setup := func(s *simNode) {
		if err := s.n.SetLocalFences(mix[s.i], nil); err != nil {
			b.Fatal(err)
		}
		for _, f := range mix[s.i] {
			macs := make([][6]byte, *simMACs)
			for k := range macs {
				macs[k] = innerMAC(f, s.i, k)
			}
			if err := s.n.SetLocalMACs(f, macs); err != nil {
				b.Fatal(err)
			}
		}
	}
	has := func(h int, f uint32) bool { _, ok := slices.BinarySearch(mix[h], f); return ok }
	rate := *simJoins
	if rate <= 0 && nh > 200 {
		rate = 20
	}
	c.start(nodes[0], nil)
	setup(nodes[0])
	for _, s := range nodes[1:nh] {
		if rate > 0 {
			// Paced in protocol time, so that the build does not drown
			// the in-memory network's queues.
			time.Sleep(time.Duration(float64(kd*time.Second) / rate))
		}
		c.start(s, []string{nodes[0].addr})
		setup(s)
	}
	start := time.Now() // the last member started
	wait := func(what string, cond func() bool) time.Duration {
		d, ok := waitFor(*simTimeout*kd, cond)
		if !ok {
			var sum Counters
			for _, s := range c.running() {
				x := s.n.Counters()
				sum.Alive, sum.Suspect, sum.Dead, sum.Left = sum.Alive+x.Alive, sum.Suspect+x.Suspect, sum.Dead+x.Dead, sum.Left+x.Left
			}
			b.Fatalf("%d members (dilation %d): %s not reached after %v real time; member states summed over the hosts: %d alive, %d suspect, %d dead, %d left; memnet dropped %d",
				nh, k, what, d, sum.Alive, sum.Suspect, sum.Dead, sum.Left, c.net.Dropped.Load())
		}
		return protocol(d)
	}
	poll := func(cond func() bool) func() bool {
		// Check at most twice a second: a check reads every snapshot.
		var last time.Time
		return func() bool {
			if time.Since(last) < 500*time.Millisecond {
				return false
			}
			last = time.Now()
			return cond()
		}
	}
	wait("membership", poll(func() bool { return c.allMembers(nh - 1) }))
	converge := protocol(time.Since(start))
	lookupsRight := func(skip int) bool {
		for _, s := range c.running() {
			snap := s.n.Snapshot()
			for _, f := range mix[s.i] {
				want := 0
				for h := range nh + 1 {
					if h == s.i || h == skip || !has(h, f) || nodes[h].n == nil || nodes[h].n.closed.Load() {
						continue
					}
					want++
					if o, ok := snap.Lookup(f, innerMAC(f, h, 0)); !ok || o != outerMAC(h) {
						return false
					}
				}
				if len(snap.Hosts(f)) != want {
					return false
				}
			}
		}
		return true
	}
	wait("MAC lookups", poll(func() bool { return lookupsRight(-1) }))
	macs := protocol(time.Since(start))
	var sum Counters
	for _, s := range c.running() {
		x := s.n.Counters()
		sum.UpdatesSent += x.UpdatesSent
		sum.UpdatesReceived += x.UpdatesReceived
		sum.NotMember += x.NotMember
		sum.Stale += x.Stale
		sum.Pulls += x.Pulls
		sum.InDropped += x.InDropped
		sum.OutDropped += x.OutDropped
		sum.SendErrors += x.SendErrors
		sum.SyncsSent += x.SyncsSent
	}
	b.Logf("counters summed over the hosts: %+v; memnet dropped %d", sum, c.net.Dropped.Load())
	b.Logf("%d members (time dilation %d; durations and rates in protocol time): membership converged after %v, MACs after %v", nh, k, converge.Round(time.Millisecond), macs.Round(time.Millisecond))

	// Steady state: after the joins' one-time traffic (each member's two
	// catch-up exchanges, 1 and 4 s after its join, and the last
	// retransmissions of its alive message) has passed.
	time.Sleep(simSettle * kd)
	type sample struct{ in, out uint64 }
	read := func() []sample {
		l := make([]sample, nh)
		for i, s := range nodes[:nh] {
			ctr := s.n.Counters()
			l[i] = sample{ctr.BytesIn, ctr.BytesOut}
		}
		return l
	}
	s0, t0 := read(), time.Now()
	time.Sleep(*simWindow * kd)
	s1, dt := read(), protocol(time.Since(t0)).Seconds()
	var in, out, maxOut float64
	for i := range s0 {
		o := float64(s1[i].out-s0[i].out) * 8 / 1000 / dt
		in += float64(s1[i].in-s0[i].in) * 8 / 1000 / dt
		out += o
		maxOut = max(maxOut, o)
	}
	in, out = in/float64(nh), out/float64(nh)
	b.Logf("%d members: steady state over %v: %.2f kbit/s out, %.2f in per host (max out %.2f)", nh, *simWindow, out, in, maxOut)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mib := float64(ms.HeapAlloc) / float64(nh) / (1 << 20)

	// Join.
	last := nodes[nh]
	t1 := time.Now()
	c.start(last, []string{nodes[0].addr})
	setup(last)
	join := wait("join known by all", func() bool { return c.knownByAll(last, true) })
	wait("MAC lookups after the join", poll(func() bool { return lookupsRight(-1) }))
	joinMACs := protocol(time.Since(t1))

	// Failure: the member with the most fences.
	victim := nodes[1]
	for _, s := range nodes[1:nh] {
		if len(mix[s.i]) > len(mix[victim.i]) {
			victim = s
		}
	}
	c.fail(victim)
	fail := wait("failure withdrawn", func() bool {
		for _, s := range c.running() {
			snap := s.n.Snapshot()
			for _, f := range mix[victim.i] {
				if !has(s.i, f) {
					continue
				}
				if _, ok := snap.Lookup(f, innerMAC(f, victim.i, 0)); ok || slices.Contains(snap.Hosts(f), outerMAC(victim.i)) {
					return false
				}
			}
		}
		return true
	})
	b.Logf("%d members: join known by all after %v (its MACs everywhere after %v); failure of a host with %d fences withdrawn after %v; %.2f MiB heap per host",
		nh, join.Round(time.Millisecond), joinMACs.Round(time.Millisecond), len(mix[victim.i]), fail.Round(time.Millisecond), mib)
	b.ReportMetric(converge.Seconds(), "converge-s")
	b.ReportMetric(macs.Seconds(), "macs-s")
	b.ReportMetric(out, "kbit/s-out")
	b.ReportMetric(in, "kbit/s-in")
	b.ReportMetric(maxOut, "kbit/s-out-max")
	b.ReportMetric(join.Seconds(), "join-s")
	b.ReportMetric(fail.Seconds(), "fail-s")
	b.ReportMetric(mib, "MiB/host")
	b.ReportMetric(float64(k), "dilation")
}
