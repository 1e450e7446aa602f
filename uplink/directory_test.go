package uplink

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

// fakeDir is a Directory built by hand (what a gossip snapshot says).
type fakeDir struct {
	hosts  map[uint32][][6]byte
	addrs  map[[6]byte][]netip.AddrPort
	macs   map[[2]uint64][6]byte // (fence, mac) → host
	claims map[uint32][][6]byte
}

func macKey(id uint32, mac [6]byte) [2]uint64 {
	var v uint64
	for _, b := range mac {
		v = v<<8 | uint64(b)
	}
	return [2]uint64{uint64(id), v}
}

func (d *fakeDir) Hosts(id uint32) [][6]byte { return d.hosts[id] }
func (d *fakeDir) Lookup(id uint32, mac [6]byte) ([6]byte, bool) {
	o, ok := d.macs[macKey(id, mac)]
	return o, ok
}
func (d *fakeDir) DataAddrs(o [6]byte) []netip.AddrPort { return d.addrs[o] }
func (d *fakeDir) GatewayClaims(id uint32) [][6]byte    { return d.claims[id] }
func (d *fakeDir) HostName(o [6]byte) string            { return fence.OuterMAC(o).String() }

func dirHost(t *testing.T, id uint16, fences []uint32) *testHost {
	return newHost(t, id, fences, func(c *Config) { c.LearnPeers, c.Directory = false, true })
}

// TestDirectory: with a directory, no hello is sent; floods go to the
// directory's hosts of the fence only; an unknown unicast whose MAC the
// directory knows goes straight to its host; frames from hosts not in
// the view (or from another address) are dropped; a host withdrawn from
// the view is removed and flushed; the last view stays in force.
func TestDirectory(t *testing.T) {
	a := dirHost(t, 1, []uint32{1, 2})
	b := dirHost(t, 2, []uint32{1})
	c := dirHost(t, 3, []uint32{1, 2})
	hs := []*testHost{a, b, c}
	view := func(fences map[*testHost][]uint32, macs map[[2]uint64][6]byte) *fakeDir {
		d := &fakeDir{hosts: map[uint32][][6]byte{}, addrs: map[[6]byte][]netip.AddrPort{}, macs: macs,
			claims: map[uint32][][6]byte{}}
		for h, fs := range fences {
			d.addrs[h.u.OuterMAC()] = []netip.AddrPort{h.u.LocalAddr()}
			for _, f := range fs {
				d.hosts[f] = append(d.hosts[f], h.u.OuterMAC())
			}
		}
		return d
	}
	// Each host's view lists the others (a snapshot lists other hosts).
	set := func(fences map[*testHost][]uint32, macs map[[2]uint64][6]byte) {
		for _, h := range hs {
			others := map[*testHost][]uint32{}
			for o, fs := range fences {
				if o != h {
					others[o] = fs
				}
			}
			h.u.SetDirectory(view(others, macs))
		}
	}
	all := map[*testHost][]uint32{a: {1, 2}, b: {1}, c: {1, 2}}
	set(all, nil)
	for _, h := range hs {
		for _, o := range hs {
			if o != h {
				waitFor(t, "peers from the directory", func() bool { _, ok := h.peer(o.u.OuterMAC()); return ok })
			}
		}
	}
	f2 := frame(90, 0xff, 1, 1)
	a.send(t, 2, vswitch.Broadcast, f2)
	c.expect(t, 2, a.u.OuterMAC(), f2)
	b.expectNone(t, 2, 300*time.Millisecond)

	// An inner MAC known through the directory: straight to c.
	vm := [6]byte{0, 0, 0x5e, 0, 0x53, 7}
	set(all, map[[2]uint64][6]byte{macKey(1, vm): c.u.OuterMAC()})
	waitFor(t, "view applied", func() bool { return a.u.loadDirectory().(*fakeDir).macs != nil })
	u := frame(100, 7, 1, 2)
	a.send(t, 1, vswitch.Broadcast, u)
	c.expect(t, 1, a.u.OuterMAC(), u)
	b.expectNone(t, 1, 300*time.Millisecond)
	if got := a.u.Status().Counters["tx_directory_unicast"]; got != 1 {
		t.Fatalf("tx_directory_unicast = %d, want 1", got)
	}
	for _, h := range hs {
		if got := h.u.Status().Counters["tx_hellos"]; got != 0 {
			t.Fatalf("%s sent %d hellos with a directory", h.u.cfg.HostName, got)
		}
	}

	// c is withdrawn: a and b flush it and stop sending to it; its frames
	// are dropped.
	set(map[*testHost][]uint32{a: {1, 2}, b: {1}}, nil)
	select {
	case m := <-a.downs:
		if m != c.u.OuterMAC() {
			t.Fatalf("OnPeerDown(%v), want c", m)
		}
	case <-time.After(testTimeout):
		t.Fatal("c withdrawn, but OnPeerDown not called")
	}
	waitFor(t, "c gone from b", func() bool { _, ok := b.peer(c.u.OuterMAC()); return !ok })
	before := a.u.Status().Counters["drop_not_peer"]
	f3 := frame(70, 0xff, 3, 3)
	c.send(t, 1, vswitch.Broadcast, f3) // c still knows a
	waitFor(t, "c's frame dropped", func() bool { return a.u.Status().Counters["drop_not_peer"] > before })
	a.expectNone(t, 1, 200*time.Millisecond)

	// A frame of b's from another address is dropped (unsealed: the
	// address announced is the only one).
	p := fence.Params{}
	forged := encap(p, fence.BroadcastMAC, b.u.OuterMAC(), fence.HeaderFields{Fence: 1}, frame(64, 0xff, 9, 9))
	before = a.u.Status().Counters["drop_not_peer"]
	rawSender(t, a)(forged)
	waitFor(t, "forged frame dropped", func() bool { return a.u.Status().Counters["drop_not_peer"] > before })

	// No new view (control plane partitioned): the last one stays.
	f4 := frame(64, 0xff, 1, 4)
	a.send(t, 1, vswitch.Broadcast, f4)
	b.expect(t, 1, a.u.OuterMAC(), f4)
	if ps := a.u.Status().Peers; !slices.ContainsFunc(ps, func(p PeerStatus) bool { return p.OuterMAC == fence.OuterMAC(b.u.OuterMAC()).String() }) {
		t.Fatal("b lost without a new view")
	}
}

func TestDirectoryExcludesHellos(t *testing.T) {
	c := Config{HostID: 1, UDPListen: netip.MustParseAddrPort("127.0.0.1:0"), Directory: true, LearnPeers: true}
	if err := c.Validate(); err == nil {
		t.Fatal("Directory with LearnPeers accepted")
	}
}

// TestDirectoryWriteAllocs: a flood whose inner destination the
// directory knows goes straight to its host without allocating.
func TestDirectoryWriteAllocs(t *testing.T) {
	a := dirHost(t, 1, []uint32{1})
	b := dirHost(t, 2, []uint32{1})
	vm := [6]byte{0, 0, 0x5e, 0, 0x53, 2}
	a.u.SetDirectory(&fakeDir{hosts: map[uint32][][6]byte{1: {b.u.OuterMAC()}},
		addrs: map[[6]byte][]netip.AddrPort{b.u.OuterMAC(): {b.u.LocalAddr()}},
		macs:  map[[2]uint64][6]byte{macKey(1, vm): b.u.OuterMAC()}})
	waitFor(t, "b from the directory", func() bool { _, ok := a.peer(b.u.OuterMAC()); return ok })
	f := frame(200, 2, 1, 1)
	buf := make([]byte, vswitch.Headroom+len(f), vswitch.Headroom+len(f)+64)
	copy(buf[vswitch.Headroom:], f)
	bufs, fences, hosts := [][]byte{buf}, []uint32{1}, [][6]byte{vswitch.Broadcast}
	n := testing.AllocsPerRun(200, func() {
		if _, err := a.u.WriteTrunk(bufs, fences, hosts, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 && !raceEnabled { // the race detector changes allocation counts
		t.Fatalf("WriteTrunk with a directory lookup: %v allocations per call", n)
	}
	if got := a.u.Status().Counters["tx_directory_unicast"]; got < 200 {
		t.Fatalf("tx_directory_unicast = %d", got)
	}
}
