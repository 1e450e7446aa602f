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

var (
	simWindow  = flag.Duration("sim.window", 60*time.Second, "BenchmarkScale: steady-state measurement window")
	simFences  = flag.Int("sim.fences", 1000, "BenchmarkScale: fences in the mix")
	simMACs    = flag.Int("sim.macs", 2, "BenchmarkScale: MACs per host per fence")
	simTimeout = flag.Duration("sim.timeout", 10*time.Minute, "BenchmarkScale: bound on each wait")
	simSizes   = flag.String("sim.sizes", "50,100,300,1000", "BenchmarkScale: member counts, comma-separated")
)

// BenchmarkScale is the scale simulation (issue 10, item 5): N memberlist
// members in one process on memnet, with the LAN profile unchanged, each
// with a share of a fence mix (sim.fences fences at 1,000 members, in
// proportion below, each on 3 to 50 random hosts, sim.macs MACs per host
// per fence). It reports:
//
//   - converge-s: from the first start until every member knows every
//     other (all joined through one seed);
//   - macs-s: until then every host's MAC lookups are right for all its
//     fences;
//   - kbit/s-out, kbit/s-in: gossip bytes per host per second over
//     sim.window of steady state (everything memberlist sends, push/pull
//     included, plus fence anti-entropy), the mean over the hosts;
//     kbit/s-out-max the busiest host's;
//   - join-s: a new member, joining through one seed, known by all;
//   - fail-s: a member with fences fails (no goodbye); until no host
//     lists it among a fence's hosts or resolves its MACs;
//   - MiB/host: live heap after GC divided by the members.
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
	c := newCluster(b, nil)
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
	start := time.Now()
	c.start(nodes[0], nil)
	setup(nodes[0])
	for _, s := range nodes[1:nh] {
		c.start(s, []string{nodes[0].addr})
		setup(s)
	}
	wait := func(what string, cond func() bool) time.Duration {
		d, ok := waitFor(*simTimeout, cond)
		if !ok {
			var sum Counters
			for _, s := range c.running() {
				x := s.n.Counters()
				sum.Alive, sum.Suspect, sum.Dead, sum.Left = sum.Alive+x.Alive, sum.Suspect+x.Suspect, sum.Dead+x.Dead, sum.Left+x.Left
			}
			b.Fatalf("%d members: %s not reached after %v; member states summed over the hosts: %d alive, %d suspect, %d dead, %d left; memnet dropped %d",
				nh, what, d, sum.Alive, sum.Suspect, sum.Dead, sum.Left, c.net.Dropped.Load())
		}
		return d
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
	converge := time.Since(start)
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
	macs := time.Since(start)
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
	b.Logf("%d members: membership converged after %v, MACs after %v", nh, converge.Round(time.Millisecond), macs.Round(time.Millisecond))

	// Steady state.
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
	time.Sleep(*simWindow)
	s1, dt := read(), time.Since(t0).Seconds()
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
	joinMACs := time.Since(t1)

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
}
