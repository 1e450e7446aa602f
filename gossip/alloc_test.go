package gossip

import (
	"testing"
	"time"
)

var (
	sinkMAC   [6]byte
	sinkBool  bool
	sinkHosts [][6]byte
)

// TestLookupAlloc: the data-path lookups of a snapshot do not allocate.
func TestLookupAlloc(t *testing.T) {
	n := testNode(t)
	if err := n.SetLocalFences([]uint32{3, 4}, []uint32{4}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	for i := range 20 {
		o := outerMAC(100 + i)
		p := &peer{name: macString(o), state: StateAlive, valid: true, meta: Meta{Installation: 1, OuterMAC: o, Fences: []uint32{3}}}
		n.peers[p.name], n.byOuter[o] = p, p
		n.tables[3].set(o, &ownerState{seq: 1, macs: map[[6]byte]struct{}{innerMAC(3, 100+i, 0): {}}})
	}
	n.mu.Unlock()
	n.publish(time.Now())
	s := n.Snapshot()
	if got := len(s.Hosts(3)); got != 20 {
		t.Fatalf("Hosts(3) has %d hosts, want 20", got)
	}
	if o, ok := s.Lookup(3, innerMAC(3, 105, 0)); !ok || o != outerMAC(105) {
		t.Fatalf("Lookup = %x, %v", o, ok)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		s := n.Snapshot()
		sinkMAC, sinkBool = s.Lookup(3, innerMAC(3, 107, 0))
		_, sinkBool = s.Lookup(3, innerMAC(3, 999, 0))
		sinkHosts = s.Hosts(3)
		sinkMAC, sinkBool = s.Gateway(4)
		sinkBool = s.HasFence(4)
		_ = s.DataAddrs(outerMAC(101))
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %v times per batch, want 0", allocs)
	}
}

func BenchmarkLookup(b *testing.B) {
	n := testNode(b)
	if err := n.SetLocalFences([]uint32{3}, nil); err != nil {
		b.Fatal(err)
	}
	n.publish(time.Now())
	s := n.Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		sinkMAC, sinkBool = s.Lookup(3, innerMAC(3, 1, 0))
	}
}
