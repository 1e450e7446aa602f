package gossip

import (
	"testing"
	"time"
)

// TestSmallCluster: five hosts, two fences; membership, hosts of a fence,
// MAC lookups, deltas, and withdrawal on leave.
func TestSmallCluster(t *testing.T) {
	c := newCluster(t, nil)
	var nodes []*simNode
	for range 5 {
		nodes = append(nodes, c.add())
	}
	c.start(nodes[0], nil)
	for _, s := range nodes[1:] {
		c.start(s, []string{nodes[0].addr})
	}
	// Fence 10 on hosts 0, 1, 2; fence 20 on 2, 3, 4.
	fences := map[int][]uint32{0: {10}, 1: {10}, 2: {10, 20}, 3: {20}, 4: {20}}
	for i, s := range nodes {
		if err := s.n.SetLocalFences(fences[i], nil); err != nil {
			t.Fatal(err)
		}
		for _, f := range fences[i] {
			if err := s.n.SetLocalMACs(f, [][6]byte{innerMAC(f, i, 0)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d, ok := waitFor(20*time.Second, func() bool {
		for _, s := range nodes {
			if len(s.n.Snapshot().Members()) != 5 {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatalf("members not all known after %v", d)
	}
	lookupsRight := func() bool {
		for i, s := range nodes {
			snap := s.n.Snapshot()
			for j := range nodes {
				for _, f := range fences[j] {
					o, ok := snap.Lookup(f, innerMAC(f, j, 0))
					mine := false
					for _, g := range fences[i] {
						mine = mine || g == f
					}
					want := mine && j != i
					if ok != want || (ok && o != outerMAC(j)) {
						return false
					}
				}
			}
		}
		return true
	}
	if d, ok := waitFor(20*time.Second, lookupsRight); !ok {
		for _, s := range nodes {
			t.Logf("%s: %+v", s.name, s.n.Status().Fences)
		}
		t.Fatalf("MAC lookups not right after %v", d)
	}
	if h := nodes[2].n.Snapshot().Hosts(10); len(h) != 2 || h[0] != outerMAC(0) || h[1] != outerMAC(1) {
		t.Errorf("hosts of fence 10 at host 2 = %x, want hosts 0 and 1", h)
	}
	// A delta: host 3 moves to a new MAC.
	if err := nodes[3].n.SetLocalMACs(20, [][6]byte{innerMAC(20, 3, 1)}); err != nil {
		t.Fatal(err)
	}
	if d, ok := waitFor(20*time.Second, func() bool {
		snap := nodes[4].n.Snapshot()
		_, old := snap.Lookup(20, innerMAC(20, 3, 0))
		o, ok := snap.Lookup(20, innerMAC(20, 3, 1))
		return !old && ok && o == outerMAC(3)
	}); !ok {
		t.Fatalf("delta not applied after %v", d)
	}
	// Host 1 leaves: withdrawn at once.
	if err := nodes[1].n.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	nodes[1].n.Close()
	if d, ok := waitFor(20*time.Second, func() bool {
		snap := nodes[0].n.Snapshot()
		_, ok := snap.Lookup(10, innerMAC(10, 1, 0))
		m, _ := snap.Member(outerMAC(1))
		return !ok && len(snap.Hosts(10)) == 1 && m.State == StateLeft
	}); !ok {
		snap := nodes[0].n.Snapshot()
		_, ok := snap.Lookup(10, innerMAC(10, 1, 0))
		m, mok := snap.Member(outerMAC(1))
		t.Logf("lookup %v hosts %x member %v %+v", ok, snap.Hosts(10), mok, m)
		t.Fatalf("left host not withdrawn after %v", d)
	}
}
