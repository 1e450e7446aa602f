package uplink

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

var _ vswitch.Trunk = (*Uplink)(nil)

const testTimeout = 10 * time.Second

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rxFrame struct {
	fence uint32
	host  [6]byte
	data  []byte
}

// testHost is an Uplink on loopback with a reader goroutine.
type testHost struct {
	u      *Uplink
	rx     chan rxFrame
	log    *syncBuffer
	mu     sync.Mutex
	fences []uint32
	downs  chan [6]byte
}

func (h *testHost) setFences(f ...uint32) {
	h.mu.Lock()
	h.fences = f
	h.mu.Unlock()
}

func newHost(t *testing.T, id uint16, fences []uint32, mod func(*Config)) *testHost {
	t.Helper()
	h := &testHost{rx: make(chan rxFrame, 1024), log: &syncBuffer{}, fences: fences, downs: make(chan [6]byte, 16)}
	cfg := Config{
		HostID:        id,
		HostName:      fmt.Sprintf("h%d", id),
		UDPListen:     netip.MustParseAddrPort("127.0.0.1:0"),
		HelloInterval: 200 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LocalFences: func() []uint32 {
			h.mu.Lock()
			defer h.mu.Unlock()
			return slices.Clone(h.fences)
		},
		OnPeerDown: func(m [6]byte) { h.downs <- m },
		// Most tests learn peers from datagrams (hand-made ones too);
		// the address filter has its own tests.
		LearnPeers:   true,
		trustLearned: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.u = u
	done := make(chan struct{})
	go func() {
		defer close(done)
		bs := u.BatchSize()
		bufs := make([][]byte, bs)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.BufSize)
		}
		sizes := make([]int, bs)
		fences := make([]uint32, bs)
		hosts := make([][6]byte, bs)
		for {
			n, err := u.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("ReadTrunk: %v", err)
				}
				return
			}
			for i := 0; i < n; i++ {
				f := rxFrame{fence: fences[i], host: hosts[i],
					data: slices.Clone(bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]])}
				select {
				case h.rx <- f:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		u.Close()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Error("reader did not stop after Close")
		}
		if t.Failed() {
			t.Logf("log of host %d:\n%s", id, h.log.String())
		}
	})
	return h
}

// send writes one inner frame through WriteTrunk.
func (h *testHost) send(t *testing.T, fenceID uint32, to [6]byte, inner []byte) {
	t.Helper()
	buf := make([]byte, vswitch.Headroom+len(inner))
	copy(buf[vswitch.Headroom:], inner)
	n, err := h.u.WriteTrunk([][]byte{buf}, []uint32{fenceID}, [][6]byte{to}, vswitch.Headroom)
	if err != nil || n != 1 {
		t.Fatalf("WriteTrunk: n=%d err=%v", n, err)
	}
}

func (h *testHost) expect(t *testing.T, fenceID uint32, from [6]byte, inner []byte) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case f := <-h.rx:
			if f.fence == fenceID && f.host == from && bytes.Equal(f.data, inner) {
				return
			}
		case <-deadline:
			t.Fatalf("host %s: frame of fence %d (%d bytes) not received", h.u.cfg.HostName, fenceID, len(inner))
		}
	}
}

// expectNone checks that no frame of fenceID arrives within d.
func (h *testHost) expectNone(t *testing.T, fenceID uint32, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f := <-h.rx:
			if f.fence == fenceID {
				t.Fatalf("host %s received a frame of fence %d", h.u.cfg.HostName, fenceID)
			}
		case <-deadline:
			return
		}
	}
}

func (h *testHost) peer(mac [6]byte) (PeerStatus, bool) {
	want := fence.OuterMAC(mac).String()
	for _, p := range h.u.Status().Peers {
		if p.OuterMAC == want {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// waitHello waits until h knows other's hello with the given fences.
func waitHello(t *testing.T, h, other *testHost, fences ...uint32) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s knows %s's hello %v", h.u.cfg.HostName, other.u.cfg.HostName, fences), func() bool {
		p, ok := h.peer(other.u.OuterMAC())
		return ok && p.HelloKnown && slices.Equal(p.Fences, fences)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// frame returns an inner Ethernet frame of n bytes with a recognizable body.
func frame(n int, dst, src byte, seed byte) []byte {
	b := make([]byte, n)
	copy(b, []byte{0x00, 0x00, 0x5e, 0x00, 0x53, dst, 0x00, 0x00, 0x5e, 0x00, 0x53, src, 0x08, 0x00})
	for i := 14; i < n; i++ {
		b[i] = byte(i) ^ seed
	}
	return b
}

func peersOf(h *testHost) func(*Config) {
	return func(c *Config) { c.Peers = []netip.AddrPort{h.u.LocalAddr()} }
}

func TestUnicastAndFloodByFence(t *testing.T) {
	a := newHost(t, 1, []uint32{1, 2}, nil)
	b := newHost(t, 2, []uint32{1}, peersOf(a))
	c := newHost(t, 3, []uint32{2}, peersOf(a))
	// b and c know a statically; a learns them; b and c learn each other
	// only through a (they don't), so test floods from a.
	waitHello(t, a, b, 1)
	waitHello(t, a, c, 2)
	waitHello(t, b, a, 1, 2)

	f1 := frame(100, 0xff, 1, 1)
	f1[0], f1[1], f1[2], f1[3], f1[4], f1[5] = 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	a.send(t, 1, vswitch.Broadcast, f1)
	b.expect(t, 1, a.u.OuterMAC(), f1)
	c.expectNone(t, 1, 300*time.Millisecond)
	if got := c.u.Status().RxByFence[1]; got != 0 {
		t.Fatalf("c rx_by_fence[1] = %d, want 0", got)
	}

	f2 := frame(60, 0xff, 2, 2)
	a.send(t, 2, vswitch.Broadcast, f2)
	c.expect(t, 2, a.u.OuterMAC(), f2)
	b.expectNone(t, 2, 300*time.Millisecond)

	// Unicast, both directions.
	u1 := frame(200, 2, 1, 3)
	a.send(t, 1, b.u.OuterMAC(), u1)
	b.expect(t, 1, a.u.OuterMAC(), u1)
	u2 := frame(300, 1, 2, 4)
	b.send(t, 1, a.u.OuterMAC(), u2)
	a.expect(t, 1, b.u.OuterMAC(), u2)

	// Unicast to an unknown host is dropped and counted.
	c.send(t, 2, [6]byte{2, 0xfe, 0x0c, 0, 0x12, 0x34}, u2)
	if got := c.u.Status().Counters["drop_tx_unknown_host"]; got != 1 {
		t.Fatalf("drop_tx_unknown_host = %d, want 1", got)
	}

	// A fence added later is announced at once and then flooded to.
	c.setFences(1, 2)
	waitHello(t, a, c, 1, 2)
	f3 := frame(64, 0xff, 1, 5)
	a.send(t, 1, vswitch.Broadcast, f3)
	c.expect(t, 1, a.u.OuterMAC(), f3)
	b.expect(t, 1, a.u.OuterMAC(), f3)
}

func TestFloodToPeerWithoutHello(t *testing.T) {
	// A static peer that never sent a hello gets every flood.
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := newHost(t, 1, []uint32{1}, func(c *Config) {
		c.Peers = []netip.AddrPort{ln.LocalAddr().(*net.UDPAddr).AddrPort()}
	})
	f := frame(80, 0xff, 1, 9)
	a.send(t, 7, vswitch.Broadcast, f)
	ln.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 2048)
	for {
		n, _, err := ln.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no flood reached the static peer: %v", err)
		}
		fr, err := fence.Params{}.Parse(buf[:n])
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if fr.Header().Fence() == fence.ControlFence {
			continue // a hello
		}
		if fr.Header().Fence() != 7 || !bytes.Equal(fr.Inner(), f) || !fr.Dst().IsBroadcast() || fr.Src() != a.u.OuterMAC() {
			t.Fatalf("got fence %d dst %v src %v, want fence 7 to broadcast from %v", fr.Header().Fence(), fr.Dst(), fr.Src(), fence.OuterMAC(a.u.OuterMAC()))
		}
		return
	}
}

func TestFragmentationRoundTrip(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, nil)
	b := newHost(t, 2, []uint32{1}, peersOf(a))
	waitHello(t, a, b, 1)
	if got, want := a.u.MaxEncapLen(), 1472; got != want {
		t.Fatalf("MaxEncapLen = %d, want %d", got, want)
	}
	for _, n := range []int{1454, 1455, 1500, 1514, 1518, 2000, 2900} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := frame(n, 2, 1, byte(n))
			a.send(t, 1, b.u.OuterMAC(), f)
			b.expect(t, 1, a.u.OuterMAC(), f)
		})
	}
	st := a.u.Status()
	if got := st.Counters["tx_fragmented"]; got != 6 {
		t.Errorf("tx_fragmented = %d, want 6", got)
	}
	if got := b.u.Status().Counters["rx_reassembled"]; got != 6 {
		t.Errorf("rx_reassembled = %d, want 6", got)
	}
	// Too big for two fragments: dropped, counted.
	a.send(t, 1, b.u.OuterMAC(), frame(3000, 2, 1, 0))
	if got := a.u.Status().Counters["drop_tx_too_big"]; got != 1 {
		t.Errorf("drop_tx_too_big = %d, want 1", got)
	}
}

// rawSender sends hand-made datagrams to h.
func rawSender(t *testing.T, h *testHost) func([]byte) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(h.u.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func(b []byte) {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func encap(p fence.Params, dst, src fence.OuterMAC, hf fence.HeaderFields, inner []byte) []byte {
	b := make([]byte, fence.EncapLen+len(inner))
	copy(b[fence.EncapLen:], inner)
	return p.Encap(b, fence.EncapLen, len(inner), dst, src, hf)
}

func TestInvalidFramesCounted(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, nil)
	send := rawSender(t, a)
	p := fence.Params{}
	other := p.OuterMAC(0x42)
	inner := frame(64, 1, 0x42, 0)
	good := func() []byte { return encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 1}, inner) }

	cases := []struct {
		name    string
		counter string
		frame   func() []byte
	}{
		{"short", "drop_short", func() []byte { return good()[:10] }},
		{"ethertype", "drop_ethertype", func() []byte { b := good(); b[12] = 0x08; b[13] = 0; return b }},
		{"oui", "drop_oui", func() []byte { b := good(); b[6] = 0x06; return b }},
		{"installation", "drop_installation", func() []byte { b := good(); b[9] = 7; return b }},
		{"host id", "drop_host_id", func() []byte { b := good(); b[10], b[11] = 0, 0; return b }},
		{"version", "drop_version", func() []byte { b := good(); b[14] = 2 << 6; return b }},
		{"fragtype", "drop_fragtype", func() []byte { b := good(); b[14] |= 3 << 4; return b }},
		{"reserved fence", "drop_fence_reserved", func() []byte {
			return encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 0xFFFFFF}, inner)
		}},
		{"runt", "drop_runt", func() []byte {
			return encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 1}, inner[:10])
		}},
		{"unicast for another host", "drop_other_dst", func() []byte {
			return encap(p, p.OuterMAC(0x99), other, fence.HeaderFields{Fence: 1}, inner)
		}},
		{"own mac", "drop_own_mac", func() []byte {
			return encap(p, fence.BroadcastMAC, a.u.OuterMAC(), fence.HeaderFields{Fence: 1}, inner)
		}},
		{"orphan last fragment", "drop_reassembly", func() []byte {
			return encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 1, FragType: fence.Last, Seq: 3}, inner)
		}},
		{"bad hello", "drop_bad_hello", func() []byte {
			return encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 0}, bytes.Repeat([]byte{9}, 20))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.u.Status().Counters[tc.counter]
			send(tc.frame())
			waitFor(t, tc.counter, func() bool { return a.u.Status().Counters[tc.counter] == before+1 })
		})
	}
	// None of them was delivered; a valid frame still is.
	send(good())
	select {
	case f := <-a.rx:
		if f.fence != 1 || !bytes.Equal(f.data, inner) || f.host != other {
			t.Fatalf("first delivered frame is not the valid one: fence %d host %x", f.fence, f.host)
		}
	case <-time.After(testTimeout):
		t.Fatal("valid frame not delivered")
	}
	if got := a.u.Status().Counters["rx_frames"]; got != 1 {
		t.Fatalf("rx_frames = %d, want 1", got)
	}
	// The periodic summary names each reason once, with its count.
	a.u.logDrops(map[string]uint64{})
	for _, tc := range cases {
		if !strings.Contains(a.log.String(), tc.counter+"=1") {
			t.Errorf("drop summary lacks %s=1:\n%s", tc.counter, a.log.String())
		}
	}
}

func TestForgedFragmentsNeverDeliverWrongFrame(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, nil)
	send := rawSender(t, a)
	p := fence.Params{}
	other := p.OuterMAC(0x42)
	var fr fence.Fragmenter
	scratch := make([]byte, 1472)
	split := func(inner []byte) (first, last []byte) {
		w := encap(p, fence.BroadcastMAC, other, fence.HeaderFields{Fence: 1}, inner)
		f, l, err := fr.Split(w, 1472, scratch)
		if err != nil || l == nil {
			t.Fatalf("Split: %v", err)
		}
		return slices.Clone(f), slices.Clone(l)
	}
	x := frame(2000, 1, 0x42, 1)
	y := frame(2000, 1, 0x42, 2)
	xf, xl := split(x)
	yf, yl := split(y)
	// Reordered: last before first → orphan; then x's pieces in order.
	send(yl)
	send(yf) // pending, never completed by a later x last (other Seq)
	send(xl) // orphan
	send(xf)
	send(xl) // completes x
	send(xl) // duplicate: orphan now
	got := <-a.rx
	if !bytes.Equal(got.data, x) {
		t.Fatalf("delivered %d bytes that are not frame x", len(got.data))
	}
	a.expectNone(t, 1, 300*time.Millisecond)
	_ = yl
}

func TestPeerExpiry(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, func(c *Config) { c.HelloInterval = 50 * time.Millisecond })
	b := newHost(t, 2, []uint32{1}, func(c *Config) {
		c.HelloInterval = 50 * time.Millisecond
		c.Peers = []netip.AddrPort{a.u.LocalAddr()}
	})
	waitHello(t, a, b, 1)
	b.u.Close()
	select {
	case m := <-a.downs:
		if m != b.u.OuterMAC() {
			t.Fatalf("OnPeerDown(%x), want %x", m, b.u.OuterMAC())
		}
	case <-time.After(testTimeout):
		t.Fatal("peer not expired")
	}
	if _, ok := a.peer(b.u.OuterMAC()); ok {
		t.Fatal("expired peer still in the host table")
	}
	if got := a.u.Status().Counters["peers_expired"]; got != 1 {
		t.Fatalf("peers_expired = %d, want 1", got)
	}
	// Unicast to it is now dropped (counted), floods have no target.
	a.send(t, 1, b.u.OuterMAC(), frame(64, 2, 1, 0))
	if got := a.u.Status().Counters["drop_tx_unknown_host"]; got != 1 {
		t.Fatalf("drop_tx_unknown_host = %d, want 1", got)
	}
}

func TestDuplicateOuterMAC(t *testing.T) {
	a := newHost(t, 7, []uint32{1}, nil)
	// b has a's host ID and knows a; a cannot learn b (its source is a's
	// own MAC), yet both must report the conflict.
	b := newHost(t, 7, []uint32{1}, func(c *Config) {
		c.HostName = "impostor"
		c.Peers = []netip.AddrPort{a.u.LocalAddr()}
	})
	for _, h := range []*testHost{a, b} {
		waitFor(t, h.u.cfg.HostName+" detects the duplicate", func() bool { return h.u.Status().Counters["duplicate_mac"] > 0 })
		if !strings.Contains(h.log.String(), "level=ERROR") || !strings.Contains(h.log.String(), "DUPLICATE OUTER MAC") {
			t.Fatalf("%s did not log an error:\n%s", h.u.cfg.HostName, h.log.String())
		}
		if c := h.u.Status().Counters["drop_own_echo"]; c != 0 {
			t.Fatalf("%s counted %d hellos as its own echo", h.u.cfg.HostName, c)
		}
	}
}

func TestCloseUnblocks(t *testing.T) {
	h := newHost(t, 1, nil, nil)
	if err := h.u.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.u.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := h.u.WriteTrunk([][]byte{make([]byte, 100)}, []uint32{1}, [][6]byte{vswitch.Broadcast}, vswitch.Headroom)
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTrunk after Close: %v, want net.ErrClosed", err)
	}
}

func TestPeerRestartFlushes(t *testing.T) {
	slow := func(c *Config) { c.HelloInterval = 5 * time.Second } // expiry would take 15 s
	a := newHost(t, 1, []uint32{1}, slow)
	b := newHost(t, 2, []uint32{1}, func(c *Config) { slow(c); peersOf(a)(c) })
	waitHello(t, a, b, 1)
	b.u.Close()
	b2 := newHost(t, 2, []uint32{1}, func(c *Config) { slow(c); peersOf(a)(c) })
	select {
	case m := <-a.downs:
		if m != b2.u.OuterMAC() {
			t.Fatalf("OnPeerDown(%x), want %x", m, b2.u.OuterMAC())
		}
	case <-time.After(testTimeout):
		t.Fatal("restart of b not noticed")
	}
	if _, ok := a.peer(b2.u.OuterMAC()); !ok {
		t.Fatal("restarted peer is not in the host table")
	}
	if !strings.Contains(a.log.String(), "peer restarted") {
		t.Fatalf("no restart logged:\n%s", a.log.String())
	}
}

// gwEvents records a host's gateway hook calls.
type gwEvents struct {
	mu  sync.Mutex
	log []string
}

func (e *gwEvents) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *gwEvents) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// gwHooks configures gateway fences gws and records the hooks in ev.
func gwHooks(ev *gwEvents, gws ...uint32) func(*Config) {
	return func(c *Config) {
		c.GatewayFences = func() []uint32 { return gws }
		c.OnGatewayConflict = func(f uint32, peer [6]byte, yield bool) {
			ev.add(fmt.Sprintf("conflict %d %s yield=%v", f, fence.OuterMAC(peer), yield))
		}
		c.OnGatewayResume = func(f uint32) { ev.add(fmt.Sprintf("resume %d", f)) }
	}
}

func TestGatewayConflict(t *testing.T) {
	// a (host 1, the lower outer MAC) and b (host 2) both serve fence 5;
	// b also serves 6 alone. b yields 5, a keeps it, each reports once.
	var ea, eb gwEvents
	a := newHost(t, 1, []uint32{5}, gwHooks(&ea, 5))
	b := newHost(t, 2, []uint32{5}, func(c *Config) { gwHooks(&eb, 6, 5)(c); peersOf(a)(c) })
	macA, macB := fence.OuterMAC(a.u.OuterMAC()), fence.OuterMAC(b.u.OuterMAC())
	waitFor(t, "b yields fence 5", func() bool {
		return slices.Equal(eb.get(), []string{"conflict 5 " + macA.String() + " yield=true"})
	})
	waitFor(t, "a sees b announce only fence 6", func() bool {
		p, ok := a.peer(macB)
		return ok && slices.Equal(p.Gateways, []uint32{6})
	})
	if p, ok := b.peer(macA); !ok || !slices.Equal(p.Gateways, []uint32{5}) {
		t.Fatalf("b's view of a: %+v", p)
	}
	// b's first hello (sent by New, before b reads a's) claimed fence 5:
	// a saw the conflict and keeps serving.
	waitFor(t, "a reports the conflict", func() bool {
		return slices.Equal(ea.get(), []string{"conflict 5 " + macB.String() + " yield=false"})
	})
	time.Sleep(500 * time.Millisecond) // several hello intervals
	if got := ea.get(); len(got) != 1 {
		t.Fatalf("a's gateway hooks: %q", got)
	}
	if got := eb.get(); len(got) != 1 {
		t.Fatalf("b's gateway hooks after the yield: %q (want exactly one)", got)
	}
	if n := strings.Count(b.log.String(), "two hosts serve the gateway of one fence"); n != 1 {
		t.Fatalf("b logged the conflict %d times:\n%s", n, b.log.String())
	}
	if n := strings.Count(a.log.String(), "two hosts serve the gateway of one fence"); n != 1 {
		t.Fatalf("a logged the conflict %d times", n)
	}
	st := b.u.Status()
	if len(st.GatewayYields) != 1 || st.GatewayYields[0].Fence != 5 || st.GatewayYields[0].Peer != macA.String() ||
		st.GatewayYields[0].PeerName != "h1" || st.Counters["gateway_conflict"] != 1 {
		t.Fatalf("b's status: yields %+v, counters %v", st.GatewayYields, st.Counters)
	}
	if st := a.u.Status(); len(st.GatewayYields) != 0 {
		t.Fatalf("a yielded: %+v", st.GatewayYields)
	}
	if !hasLine(b.log.String(), "level=ERROR", "fence=5", "action=\"yield") {
		t.Fatalf("b's error log does not name the yield:\n%s", b.log.String())
	}
}

// TestGatewayConflictWinnerLogs starts the loser first, so that the
// winner surely hears the conflicting claim: it keeps serving and logs the
// conflict once.
func TestGatewayConflictWinnerLogs(t *testing.T) {
	var ea, eb gwEvents
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	b := newHost(t, 9, []uint32{5}, func(c *Config) { gwHooks(&eb, 5)(c); c.Peers = []netip.AddrPort{aAddr} })
	waitFor(t, "b's first hello is out", func() bool { return b.u.Status().Counters["tx_hellos"] > 0 })
	a := newHost(t, 3, []uint32{5}, func(c *Config) { gwHooks(&ea, 5)(c); c.UDPListen = aAddr })
	macA, macB := fence.OuterMAC(a.u.OuterMAC()), fence.OuterMAC(b.u.OuterMAC())
	waitFor(t, "a keeps serving, b yields", func() bool {
		return slices.Equal(ea.get(), []string{"conflict 5 " + macB.String() + " yield=false"}) &&
			slices.Equal(eb.get(), []string{"conflict 5 " + macA.String() + " yield=true"})
	})
	if !hasLine(a.log.String(), "level=ERROR", "two hosts serve the gateway of one fence", "fence=5", "action=\"keep serving") {
		t.Fatalf("a's log:\n%s", a.log.String())
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(a.log.String(), "two hosts serve the gateway of one fence"); n != 1 {
		t.Fatalf("a logged the conflict %d times", n)
	}
}

// TestGatewayResumeAfterWinnerExpires: the yielded gateway comes back
// when the winner goes silent, and yields again when it returns.
func TestGatewayResumeAfterWinnerExpires(t *testing.T) {
	fast := func(c *Config) { c.HelloInterval = 50 * time.Millisecond }
	var ea, eb, ea2 gwEvents
	a := newHost(t, 1, []uint32{5}, func(c *Config) { fast(c); gwHooks(&ea, 5)(c) })
	b := newHost(t, 2, []uint32{5}, func(c *Config) { fast(c); gwHooks(&eb, 5)(c); peersOf(a)(c) })
	macA := fence.OuterMAC(a.u.OuterMAC())
	waitFor(t, "b yields", func() bool { return len(b.u.Status().GatewayYields) == 1 })
	a.u.Close()
	waitFor(t, "b resumes", func() bool {
		return slices.Equal(eb.get(), []string{"conflict 5 " + macA.String() + " yield=true", "resume 5"})
	})
	if st := b.u.Status(); len(st.GatewayYields) != 0 {
		t.Fatalf("b still yielded: %+v", st.GatewayYields)
	}
	if !strings.Contains(b.log.String(), "gateway resumed") {
		t.Fatalf("resume not logged:\n%s", b.log.String())
	}
	// a comes back (same host ID, new instance) and b hears it: b yields again.
	a2 := newHost(t, 1, []uint32{5}, func(c *Config) {
		fast(c)
		gwHooks(&ea2, 5)(c)
		c.Peers = []netip.AddrPort{b.u.LocalAddr()}
	})
	_ = a2
	waitFor(t, "b yields again", func() bool {
		got := eb.get()
		return len(got) == 3 && got[2] == "conflict 5 "+macA.String()+" yield=true"
	})
	if got := ea2.get(); slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "yield=true") }) {
		t.Fatalf("the winner yielded: %q", got)
	}
}

func TestWinsOver(t *testing.T) {
	p := fence.Params{OUI: fence.DefaultOUI, Installation: 1, EtherType: fence.EtherType}
	for _, tc := range []struct {
		a, b uint16
		want bool
	}{{1, 2, true}, {2, 1, false}, {0x00ff, 0x0100, true}, {0x1234, 0x1234, false}, {0xfffe, 1, false}} {
		if got := winsOver(p.OuterMAC(tc.a), p.OuterMAC(tc.b)); got != tc.want {
			t.Errorf("winsOver(host %#x, host %#x) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if tc.a != tc.b && winsOver(p.OuterMAC(tc.a), p.OuterMAC(tc.b)) == winsOver(p.OuterMAC(tc.b), p.OuterMAC(tc.a)) {
			t.Errorf("tie-break of hosts %#x and %#x is not antisymmetric", tc.a, tc.b)
		}
	}
}

// hasLine reports whether one line of logs contains every sub.
func hasLine(logs string, subs ...string) bool {
	for _, l := range strings.Split(logs, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		u, err := New(Config{HostID: 1, UDPListen: netip.MustParseAddrPort("127.0.0.1:0"), HelloInterval: 10 * time.Millisecond,
			Peers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			bufs := [][]byte{make([]byte, vswitch.BufSize)}
			_, err := u.ReadTrunk(bufs, []int{0}, []uint32{0}, [][6]byte{{}}, vswitch.Headroom)
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		u.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadTrunk after Close: %v, want net.ErrClosed", err)
		}
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestHelloTrimmedToOneFrame(t *testing.T) {
	many := make([]uint32, 600)
	for i := range many {
		many[i] = uint32(i + 1)
	}
	a := newHost(t, 1, many, func(c *Config) { c.GatewayFences = func() []uint32 { return many[:300] } })
	b := newHost(t, 2, []uint32{1}, peersOf(a))
	waitFor(t, "b knows a's (trimmed) hello", func() bool {
		p, ok := b.peer(a.u.OuterMAC())
		return ok && p.HelloKnown && len(p.Fences) > 0
	})
	p, _ := b.peer(a.u.OuterMAC())
	if len(p.Fences) != fence.MaxHelloFences || len(p.Fences)+len(p.Gateways) > (1472-18-18-2)/3 {
		t.Fatalf("a's hello lists %d fences and %d gateways", len(p.Fences), len(p.Gateways))
	}
	if !strings.Contains(a.log.String(), "hello trimmed") {
		t.Fatal("trimming not logged")
	}
}
