package uplink

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

var (
	testSecret  = bytes.Repeat([]byte{0x5a}, fence.SealKeyLen)
	otherSecret = bytes.Repeat([]byte{0xa5}, fence.SealKeyLen)
)

// sealKeys derives the keys of fence 0 and fences from secret, with the
// secret's key ID; receiveOnly marks them so.
func sealKeys(t testing.TB, secret []byte, receiveOnly bool, fences ...uint32) []fence.FenceKey {
	t.Helper()
	var keys []fence.FenceKey
	for _, f := range append([]uint32{fence.ControlFence}, fences...) {
		k, err := fence.DeriveFenceKey(secret, 0, f)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fence.FenceKey{ID: fence.KeyID(secret), Fence: f, Key: k, ReceiveOnly: receiveOnly})
	}
	return keys
}

// sealed seals a test host's uplink with keys.
func sealed(keys []fence.FenceKey, mods ...func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Seal = &SealConfig{Keys: keys}
		c.LearnPeers = false // a sealed uplink learns from frames that open
		for _, m := range mods {
			m(c)
		}
	}
}

// sendRoomy is send with a buffer that has room for the tag after the
// frame (the switch's buffers do), so the frame is sealed in place.
func (h *testHost) sendRoomy(t *testing.T, fenceID uint32, to [6]byte, inner []byte) {
	t.Helper()
	buf := make([]byte, vswitch.Headroom+len(inner), vswitch.Headroom+len(inner)+fence.SealTagLen)
	copy(buf[vswitch.Headroom:], inner)
	if n, err := h.u.WriteTrunk([][]byte{buf}, []uint32{fenceID}, [][6]byte{to}, vswitch.Headroom); err != nil || n != 1 {
		t.Fatalf("WriteTrunk: n=%d err=%v", n, err)
	}
}

func TestSealedRoundTrip(t *testing.T) {
	for _, c := range []Cipher{CipherAESGCM, CipherChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			keys := sealKeys(t, testSecret, false, 1, 2)
			withCipher := func(cfg *Config) { cfg.Seal.Cipher = c }
			a := newHost(t, 1, []uint32{1, 2}, sealed(keys, withCipher))
			b := newHost(t, 2, []uint32{1, 2}, sealed(keys, withCipher, peersOf(a)))
			waitHello(t, a, b, 1, 2)
			waitHello(t, b, a, 1, 2)
			capt, err := b.u.Capture(0)
			if err != nil {
				t.Fatal(err)
			}
			defer capt.Close()

			f := frame(64, 0xff, 1, 1)
			a.send(t, 1, vswitch.Broadcast, f)
			b.expect(t, 1, a.u.OuterMAC(), f)
			// Every size around the fragmentation point (1472 - 18 - 25 =
			// 1429 inner bytes travel whole), sealed in place or copied.
			for i, n := range []int{1428, 1429, 1430, 1454, 1500, 1514, 2000, 2883} {
				u := frame(n, 2, 1, byte(n))
				if i%2 == 0 {
					a.send(t, 2, b.u.OuterMAC(), u)
				} else {
					a.sendRoomy(t, 2, b.u.OuterMAC(), u)
				}
				b.expect(t, 2, a.u.OuterMAC(), u)
			}
			if got := a.u.Status().Counters["tx_fragmented"]; got != 6 {
				t.Errorf("tx_fragmented = %d, want 6 (frames over 1429 bytes)", got)
			}
			// 2 × 1454 - 25 = 2883 bytes is the most two sealed fragments carry.
			a.send(t, 2, b.u.OuterMAC(), frame(2884, 2, 1, 0))
			if got := a.u.Status().Counters["drop_tx_too_big"]; got != 1 {
				t.Errorf("drop_tx_too_big = %d, want 1", got)
			}
			// On the wire (as captured): version-2 frames, plaintext absent.
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			sawData := false
			for !sawData {
				cf, err := capt.Read(ctx)
				if err != nil {
					t.Fatalf("capture: %v", err)
				}
				fr, err := fence.Params{Sealed: true}.Parse(cf.Data)
				if err != nil {
					t.Fatalf("captured frame does not parse as sealed: %v", err)
				}
				if fr.Header().Version() != fence.SealedVersion || bytes.Contains(cf.Data, f[14:]) {
					t.Fatalf("captured frame is not sealed: % x", cf.Data[:min(40, len(cf.Data))])
				}
				sawData = fr.Header().Fence() != fence.ControlFence
			}
			st := b.u.Status()
			if st.Seal == nil || st.Seal.Cipher != c.String() || st.Accept != "sealed" {
				t.Fatalf("Status.Seal = %+v, accept %q", st.Seal, st.Accept)
			}
			p, _ := b.peer(a.u.OuterMAC())
			if len(p.Keys) != 2 || p.Keys[0].State != "ok" || p.Keys[1].State != "ok" {
				t.Errorf("peer keys = %+v, want fences 1 and 2 ok", p.Keys)
			}
		})
	}
}

// forger is a plain UDP socket on loopback that sends datagrams to a
// host and counts what comes back.
type forger struct {
	c        *net.UDPConn
	got      atomic.Int64 // bytes received
	received atomic.Int64 // datagrams received
	done     chan struct{}
}

func newForger(t *testing.T) *forger {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &forger{c: c, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		buf := make([]byte, 70000)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			f.got.Add(int64(n))
			f.received.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close(); <-f.done })
	return f
}

func (f *forger) send(t *testing.T, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := f.c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// TestSealedRefusesForgeries: a host of the installation sealing with
// another secret, replays, re-sourced copies, bit flips, truncations and
// unsealed frames are dropped, none delivered, no peer address changes,
// and the forger gets nothing back.
func TestSealedRefusesForgeries(t *testing.T) {
	keys := sealKeys(t, testSecret, false, 1)
	a := newHost(t, 1, []uint32{1}, sealed(keys))
	b := newHost(t, 2, []uint32{1}, sealed(keys, peersOf(a)))
	waitHello(t, a, b, 1)
	waitHello(t, b, a, 1)
	// Record what b sends to a.
	capt, err := b.u.Capture(0)
	if err != nil {
		t.Fatal(err)
	}
	x := frame(300, 1, 2, 7)
	b.send(t, 1, a.u.OuterMAC(), x)
	a.expect(t, 1, b.u.OuterMAC(), x)
	big := frame(2000, 1, 2, 8)
	b.send(t, 1, a.u.OuterMAC(), big)
	a.expect(t, 1, b.u.OuterMAC(), big)
	var genuine [][]byte // b's data frames to a, as sent
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for len(genuine) < 3 {
		cf, err := capt.Read(ctx)
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if fr := fence.Frame(cf.Data); cf.Outbound && fr.Header().Fence() == 1 {
			genuine = append(genuine, cf.Data)
		}
	}
	capt.Close()
	bAddr := func() string { p, _ := a.peer(b.u.OuterMAC()); return p.Addr }
	addrBefore := bAddr()
	before := a.u.Status().Counters

	f := newForger(t)
	to := a.u.LocalAddr()
	p := fence.Params{Sealed: true}
	intruder, err := newSealer(p, 2, &SealConfig{Keys: sealKeys(t, otherSecret, false, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	// Sealed with another secret, as b (same outer MAC) and as a new host.
	for _, src := range []uint16{2, 0x99} {
		s, err := newSealer(p, src, &SealConfig{Keys: sealKeys(t, otherSecret, false, 1)})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, fence.SealedHeaderLen+len(x)+fence.SealTagLen)
		copy(buf[fence.SealedHeaderLen:], x)
		fr, err := s.Encap(buf, fence.SealedHeaderLen, len(x), a.u.OuterMAC(), 1)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, fr)
		hb := (&fence.Hello{HostID: src, Name: "evil", Fences: []uint32{1}}).AppendTo(make([]byte, fence.SealedHeaderLen))
		hb = append(hb, make([]byte, fence.SealTagLen)...)
		hf, err := s.Encap(hb, fence.SealedHeaderLen, len(hb)-fence.SealedHeaderLen-fence.SealTagLen, fence.BroadcastMAC, 0)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, hf)
	}
	_ = intruder
	for _, g := range genuine {
		forged = append(forged, g) // replayed, re-sourced
		for _, i := range []int{14, 18, 19, 26, 27, len(g) / 2, len(g) - 1} {
			m := slices.Clone(g)
			m[i] ^= 0x10
			forged = append(forged, m)
		}
		for _, n := range []int{18, 26, 27, 40, len(g) - 1} {
			forged = append(forged, slices.Clone(g[:n]))
		}
		u := slices.Clone(g) // relabelled as unsealed
		u[14] = u[14]&0x3f | 1<<6
		forged = append(forged, u)
	}
	for range 3 {
		for _, m := range forged {
			f.send(t, to, m)
		}
	}
	sent := 3 * len(forged)
	waitFor(t, "drops counted", func() bool {
		c := a.u.Status().Counters
		n := 0
		for _, k := range []string{"drop_auth", "drop_replay", "drop_no_key", "drop_sealed_short", "drop_version",
			"drop_short", "drop_runt", "drop_reassembly", "drop_fragtype", "drop_own_mac", "drop_dst", "drop_oui", "drop_too_big"} {
			n += int(c[k] - before[k])
		}
		// Fragments pending reassembly are not drops yet.
		return n+int(c["rx_fragments"]-before["rx_fragments"]) >= sent
	})
	a.expectNone(t, 1, 300*time.Millisecond)
	after := a.u.Status().Counters
	if after["rx_frames"] != before["rx_frames"] {
		t.Fatalf("rx_frames %d → %d: a forged frame was delivered", before["rx_frames"], after["rx_frames"])
	}
	if got := bAddr(); got != addrBefore {
		t.Fatalf("b's address moved from %s to %s", addrBefore, got)
	}
	if _, ok := a.peer(fence.Params{}.OuterMAC(0x99)); ok {
		t.Fatal("a host that sealed with another secret was learned")
	}
	if n := f.received.Load(); n != 0 {
		t.Fatalf("the forger got %d datagrams (%d bytes) back; want none", n, f.got.Load())
	}
	if after["drop_auth"] == before["drop_auth"] || after["drop_replay"] == before["drop_replay"] {
		t.Fatalf("drop_auth %d, drop_replay %d: expected both to grow", after["drop_auth"]-before["drop_auth"], after["drop_replay"]-before["drop_replay"])
	}
	// Still working.
	b.send(t, 1, a.u.OuterMAC(), x)
	a.expect(t, 1, b.u.OuterMAC(), x)
}

// TestSealedPartialKeys: c holds fence 1's key only. It can neither read
// fence 2 (frames of it are dropped, no key) nor send it, and its peer
// status says so.
func TestSealedPartialKeys(t *testing.T) {
	all := sealKeys(t, testSecret, false, 1, 2)
	a := newHost(t, 1, []uint32{1, 2}, sealed(all))
	cKeys := sealKeys(t, testSecret, false, 1)
	c := newHost(t, 3, []uint32{1}, sealed(cKeys, peersOf(a)))
	waitHello(t, a, c, 1)
	waitHello(t, c, a, 1, 2)
	x := frame(100, 3, 1, 1)
	a.send(t, 2, c.u.OuterMAC(), x)
	waitFor(t, "c drops fence 2 (no key)", func() bool { return c.u.Status().Counters["drop_no_key"] > 0 })
	c.expectNone(t, 2, 200*time.Millisecond)
	c.send(t, 2, a.u.OuterMAC(), x)
	if got := c.u.Status().Counters["drop_tx_no_key"]; got != 1 {
		t.Fatalf("c drop_tx_no_key = %d, want 1", got)
	}
	a.send(t, 1, c.u.OuterMAC(), x)
	c.expect(t, 1, a.u.OuterMAC(), x)
	p, _ := c.peer(a.u.OuterMAC())
	want := map[uint32]string{1: "ok", 2: "no key"}
	if len(p.Keys) != 2 {
		t.Fatalf("c's view of a: keys %+v", p.Keys)
	}
	for _, k := range p.Keys {
		if want[k.Fence] != k.State {
			t.Errorf("fence %d: state %q, want %q", k.Fence, k.State, want[k.Fence])
		}
	}
	// A host holding another key for fence 2 is "failing" at a.
	d := newHost(t, 4, []uint32{1, 2}, sealed(append(sealKeys(t, testSecret, false, 1),
		sealKeys(t, otherSecret, false, 2)[1]), peersOf(a)))
	waitHello(t, a, d, 1, 2)
	waitHello(t, d, a, 1, 2)
	d.send(t, 2, a.u.OuterMAC(), x)
	waitFor(t, "a sees d failing on fence 2", func() bool {
		p, _ := a.peer(d.u.OuterMAC())
		for _, k := range p.Keys {
			if k.Fence == 2 && k.State == "failing" {
				return true
			}
		}
		return false
	})
	a.expectNone(t, 2, 200*time.Millisecond)
}

// TestSealedRotationLosesNothing rotates the installation secret on two
// hosts one at a time, in two rounds (new secret receive-only
// everywhere, then sending everywhere), while frames flow both ways:
// every frame arrives.
func TestSealedRotationLosesNothing(t *testing.T) {
	old := sealKeys(t, testSecret, false, 1)
	a := newHost(t, 1, []uint32{1}, sealed(old))
	b := newHost(t, 2, []uint32{1}, sealed(old, peersOf(a)))
	waitHello(t, a, b, 1)
	waitHello(t, b, a, 1)
	round1 := append(sealKeys(t, testSecret, false, 1), sealKeys(t, otherSecret, true, 1)...)
	round2 := append(sealKeys(t, otherSecret, false, 1), sealKeys(t, testSecret, true, 1)...)
	final := sealKeys(t, otherSecret, false, 1)

	var stop atomic.Bool
	var wg sync.WaitGroup
	sent := [2]int{}
	for i, h := range []*testHost{a, b} {
		to := [2]*testHost{b, a}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() && n < 20000; n++ {
				f := frame(200, 1, byte(i), 0)
				f[14], f[15], f[16] = byte(i), byte(n>>8), byte(n)
				buf := make([]byte, vswitch.Headroom+len(f))
				copy(buf[vswitch.Headroom:], f)
				if _, err := h.u.WriteTrunk([][]byte{buf}, []uint32{1}, [][6]byte{to.u.OuterMAC()}, vswitch.Headroom); err != nil {
					t.Error(err)
					return
				}
				sent[i] = n + 1
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	step := func(h *testHost, keys []fence.FenceKey) {
		time.Sleep(50 * time.Millisecond)
		if err := h.u.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
	}
	step(a, round1)
	step(b, round1)
	step(a, round2)
	step(b, round2)
	step(a, final)
	step(b, final)
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	for i, h := range []*testHost{b, a} {
		waitFor(t, fmt.Sprintf("all %d frames of host %d", sent[i], i+1), func() bool {
			return h.u.Status().RxByFence[1] == uint64(sent[i])
		})
		c := h.u.Status().Counters
		if c["drop_no_key"]+c["drop_auth"]+c["drop_replay"] != 0 {
			t.Fatalf("drops during the rotation: %v", c)
		}
	}
	if st := a.u.Status().Seal; st.KeyChanges != 3 || len(st.Keys) != 2 || *st.Keys[1].SendKeyID != fence.KeyID(otherSecret) {
		t.Fatalf("seal status after rotation: %+v", st)
	}
	if err := a.u.SetKeys(sealKeys(t, testSecret, true, 1)); err == nil {
		t.Fatal("SetKeys without a send key for fence 0 accepted")
	}
}

// TestUnsealedDropsNonPeer: without LearnPeers, an unsealed UDP uplink
// accepts only its configured peers: a valid frame from another address
// is dropped, and the sender gets nothing back.
func TestUnsealedDropsNonPeer(t *testing.T) {
	strict := func(c *Config) { c.LearnPeers = false }
	a := newHost(t, 1, []uint32{1}, strict)
	b := newHost(t, 2, []uint32{1}, func(c *Config) { strict(c); peersOf(a)(c) })
	// a knows b only once b is configured on a: until then b is dropped.
	waitFor(t, "a drops b (not a peer)", func() bool { return a.u.Status().Counters["drop_not_peer"] > 0 })
	if _, ok := a.peer(b.u.OuterMAC()); ok {
		t.Fatal("a learned b without b being configured")
	}
	if a.u.Status().Accept != "peers" {
		t.Fatalf("Accept = %q, want peers", a.u.Status().Accept)
	}
	f := newForger(t)
	p := fence.Params{}
	x := frame(64, 1, 0x42, 0)
	for i := range 50 {
		m := encap(p, fence.BroadcastMAC, p.OuterMAC(uint16(0x100+i)), fence.HeaderFields{Fence: 1}, x)
		f.send(t, a.u.LocalAddr(), m)
		f.send(t, a.u.LocalAddr(), encap(p, fence.BroadcastMAC, p.OuterMAC(uint16(0x100+i)), fence.HeaderFields{},
			(&fence.Hello{HostID: uint16(0x100 + i), Fences: []uint32{1}}).AppendTo(nil)))
	}
	waitFor(t, "100 more drops", func() bool { return a.u.Status().Counters["drop_not_peer"] >= 100 })
	a.expectNone(t, 1, 300*time.Millisecond)
	if n := f.received.Load(); n != 0 {
		t.Fatalf("the non-peer got %d datagrams back", n)
	}
	if got := len(a.u.Status().Peers); got != 0 {
		t.Fatalf("a has %d peers, want 0", got)
	}
}

// TestSealedAllocs: sealing and opening add no allocation to WriteTrunk
// and ReadTrunk (whole frames and fragments, in place and copied).
func TestSealedAllocs(t *testing.T) {
	keys := sealKeys(t, testSecret, false, 1)
	for _, tc := range []struct {
		size  int
		roomy bool
	}{{200, true}, {200, false}, {1514, true}, {1514, false}} {
		t.Run(fmt.Sprintf("%d/roomy=%v", tc.size, tc.roomy), func(t *testing.T) {
			ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour, Seal: &SealConfig{Keys: keys}})
			if err != nil {
				t.Fatal(err)
			}
			defer ua.Close()
			ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour, Seal: &SealConfig{Keys: keys}})
			if err != nil {
				t.Fatal(err)
			}
			defer ub.Close()
			ua.learn(ub.self, ub.LocalAddr(), time.Now())
			const n = 16
			out := make([][]byte, n)
			fences := make([]uint32, n)
			hosts := make([][6]byte, n)
			extra := 0
			if tc.roomy {
				extra = fence.SealTagLen
			}
			f := frame(tc.size, 2, 1, 0)
			for i := range out {
				out[i] = make([]byte, vswitch.Headroom+tc.size, vswitch.Headroom+tc.size+extra)
				fences[i], hosts[i] = 1, ub.self
			}
			in := make([][]byte, ub.BatchSize())
			for i := range in {
				in[i] = make([]byte, vswitch.BufSize)
			}
			sizes := make([]int, len(in))
			rfences := make([]uint32, len(in))
			rhosts := make([][6]byte, len(in))
			_ = ub.link.udp.conn.SetReadDeadline(time.Now().Add(testTimeout))
			batch := func() {
				for i := range out {
					copy(out[i][vswitch.Headroom:], f)
				}
				if _, err := ua.WriteTrunk(out, fences, hosts, vswitch.Headroom); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < n; {
					k, err := ub.ReadTrunk(in, sizes, rfences, rhosts, vswitch.Headroom)
					if err != nil {
						t.Fatalf("ReadTrunk after %d frames: %v", got, err)
					}
					for i := 0; i < k; i++ {
						if !bytes.Equal(in[i][vswitch.Headroom:vswitch.Headroom+sizes[i]], f) {
							t.Fatalf("frame %d differs", got+i)
						}
					}
					got += k
				}
			}
			batch() // learn a, make the replay window, warm up
			allocs := testing.AllocsPerRun(50, batch)
			t.Logf("%.1f allocs per batch of %d", allocs, n)
			if allocs > 0 && !raceEnabled {
				t.Errorf("sealed WriteTrunk+ReadTrunk allocate %.1f times per batch, want 0", allocs)
			}
		})
	}
}

// TestSealedCounterReserve: the uplink asks Reserve for more counters as
// the limit comes near, and drops (counts) frames past an unreserved limit.
func TestSealedCounterReserve(t *testing.T) {
	keys := sealKeys(t, testSecret, false, 1)
	var calls atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	reserve := func(c uint64) (uint64, error) {
		calls.Add(1)
		if fail.Load() {
			return 0, fmt.Errorf("disk full")
		}
		return c + 2*ReserveMargin, nil
	}
	a := newHost(t, 1, []uint32{1}, sealed(keys, func(c *Config) {
		c.Seal.Counter, c.Seal.Limit, c.Seal.Reserve = 1000, 1003, reserve
	}))
	waitFor(t, "a Reserve call", func() bool { return calls.Load() > 0 })
	x := frame(100, 1, 2, 0)
	for range 5 {
		a.send(t, 1, vswitch.Broadcast, x)
	}
	if got := a.u.Status().Counters["drop_tx_counter_limit"]; got == 0 {
		t.Fatal("frames past the limit were not dropped")
	}
	// The failed Reserve is logged after it returns: wait for the line.
	waitFor(t, "the reserve error logged", func() bool { return hasLine(a.log.String(), "cannot reserve send counters") })
	fail.Store(false)
	waitFor(t, "limit raised", func() bool { return a.u.Status().Seal.CounterLimit > 1003 })
	before := a.u.Status().Counters["drop_tx_counter_limit"]
	a.send(t, 1, vswitch.Broadcast, x)
	if got := a.u.Status().Counters["drop_tx_counter_limit"]; got != before {
		t.Fatal("frame dropped after the limit was raised")
	}
}
