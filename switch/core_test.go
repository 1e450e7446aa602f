package vswitch_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// Port names: a1, a2, a3 in fence 1; b1, b2 in fence 2.
func fiveLab(t *testing.T, cfg vswitch.Config) *lab {
	s := newSwitch(t, cfg)
	l := newLab(t, s)
	l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	l.port("a3", vswitch.PortConfig{Fence: 1})
	l.port("b1", vswitch.PortConfig{Fence: 2})
	l.port("b2", vswitch.PortConfig{Fence: 2})
	return l
}

func TestLearningAndTurnAround(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	m1, m2 := mac(1), mac(2)
	// Unknown destination: flooded within fence 1 only, never to the sender.
	l.send("a1", frame(m2, m1, 1))
	l.expect("unknown unicast", "a2:1", "a3:1")
	if got, want := fdb(l.s, 1), []string{m1.String() + "@a1"}; !slices.Equal(got, want) {
		t.Errorf("fdb after first frame: got %v, want %v", got, want)
	}
	if got := fdb(l.s, 2); len(got) != 0 {
		t.Errorf("fence 2 learned %v from a fence 1 frame", got)
	}
	// The reply goes only to a1 (turn-around), and m2 is learned on a2.
	l.send("a2", frame(m1, m2, 2))
	l.expect("reply", "a1:2")
	l.send("a1", frame(m2, m1, 3), frame(m2, m1, 4))
	l.expect("known unicast", "a2:3", "a2:4")
	if got, want := fdb(l.s, 1), []string{m1.String() + "@a1", m2.String() + "@a2"}; !slices.Equal(got, want) {
		t.Errorf("fdb: got %v, want %v", got, want)
	}
	// Same MACs in fence 2 are a different network.
	l.send("b1", frame(m2, m1, 5))
	l.expect("same MACs in fence 2", "b2:5")
	if got, want := portStatus(t, l.s, "a1").MACs, 1; got != want {
		t.Errorf("a1 MACs: got %d, want %d", got, want)
	}
}

func TestHairpin(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	m1, m2 := mac(1), mac(2)
	l.send("a1", frame(m2, m1, 1), frame(m1, m2, 2)) // m1 and m2 both behind a1
	l.deliveries()
	l.send("a1", frame(m1, m2, 3))
	l.expect("destination on the ingress port")
	if got := portStatus(t, l.s, "a1").Drops["hairpin"]; got != 1 {
		t.Errorf("hairpin drops: got %d, want 1", got)
	}
}

func TestFlooding(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  vswitch.MAC
	}{
		{"broadcast", vswitch.Broadcast},
		{"multicast", mcast},
		{"ipv6 multicast", vswitch.MAC{0x33, 0x33, 0, 0, 0, 1}},
		{"unknown unicast", mac(0x99)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := fiveLab(t, vswitch.Config{})
			tr := l.withTrunk()
			_ = tr
			l.send("a2", frame(tc.dst, mac(1), 7))
			l.expect("flood from a2", "a1:7", "a3:7", "trunk[1/bcast]:7")
			l.send("b1", frame(tc.dst, mac(1), 8))
			l.expect("flood from b1", "b2:8", "trunk[2/bcast]:8")
			l.fromTrunk(2, hostA, frame(tc.dst, mac(3), 9))
			l.expect("flood from trunk", "b1:9", "b2:9")
			if got := fenceStatus(t, l.s, 1).Floods; got != 1 {
				t.Errorf("fence 1 floods: got %d, want 1", got)
			}
			if got := fenceStatus(t, l.s, 2).Floods; got != 2 {
				t.Errorf("fence 2 floods: got %d, want 2", got)
			}
		})
	}
}

func TestBadSources(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"runt", frame(mac(2), mac(1), 1)[:13], "runt"},
		{"empty", []byte{}, "runt"},
		{"multicast source", frame(mac(2), mcast, 1), "src_multicast"},
		{"broadcast source", frame(mac(2), vswitch.Broadcast, 1), "src_multicast"},
		{"zero source", frame(mac(2), vswitch.MAC{}, 1), "src_zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := fiveLab(t, vswitch.Config{})
			l.send("a1", tc.frame)
			l.expect("bad frame")
			if got := portStatus(t, l.s, "a1").Drops[tc.reason]; got != 1 {
				t.Errorf("port drops[%s]: got %d, want 1", tc.reason, got)
			}
			if got := fenceStatus(t, l.s, 1).Drops[tc.reason]; got != 1 {
				t.Errorf("fence drops[%s]: got %d, want 1", tc.reason, got)
			}
			if got := fdb(l.s, 1); len(got) != 0 {
				t.Errorf("learned %v from a bad frame", got)
			}
		})
	}
}

func TestAging(t *testing.T) {
	clk := newClock()
	l := fiveLab(t, vswitch.Config{AgingTime: 10 * time.Second, Now: clk.Now})
	m1, m2 := mac(1), mac(2)
	l.send("a1", frame(m2, m1, 1))
	l.send("a2", frame(m1, m2, 2))
	l.deliveries()
	clk.Advance(6 * time.Second)
	if n := l.s.Expire(clk.Now()); n != 0 {
		t.Errorf("expired %d entries before the aging time", n)
	}
	if got := l.s.FDB(1); len(got) != 2 || got[0].Age < 5.9 || got[0].Age > 6.1 {
		t.Errorf("FDB after 6s: got %+v, want 2 entries aged 6s", got)
	}
	l.send("a1", frame(m2, m1, 3)) // refreshes m1 only
	l.expect("known", "a2:3")
	clk.Advance(6 * time.Second) // m2 is 12 s old, m1 6 s
	l.s.Expire(clk.Now())        // the janitor may have done it already
	if got, want := fdb(l.s, 1), []string{m1.String() + "@a1"}; !slices.Equal(got, want) {
		t.Errorf("fdb after aging: got %v, want %v", got, want)
	}
	if got := portStatus(t, l.s, "a2").MACs; got != 0 {
		t.Errorf("a2 MACs after aging: got %d, want 0", got)
	}
	l.send("a1", frame(m2, m1, 4))
	l.expect("aged-out destination floods", "a2:4", "a3:4")
}

func TestAgingJanitor(t *testing.T) {
	clk := newClock()
	l := fiveLab(t, vswitch.Config{AgingTime: time.Second, Now: clk.Now})
	l.send("a1", frame(mac(2), mac(1), 1))
	clk.Advance(2 * time.Second)
	waitFor(t, 10*time.Second, "the janitor to age the entry out", func() bool { return len(l.s.FDB(1)) == 0 })
}

func TestMoves(t *testing.T) {
	m1, m2 := mac(1), mac(2)
	for _, tc := range []struct {
		name    string
		first   func(l *lab) // m1 appears at its first place
		second  func(l *lab) // then at its second place
		wantFDB string       // where m1 is afterwards
		want    []string     // where a frame from a2 to m1 goes afterwards
	}{
		{
			name:    "port to port",
			first:   func(l *lab) { l.send("a1", frame(m2, m1, 1)) },
			second:  func(l *lab) { l.send("a3", frame(m2, m1, 1)) },
			wantFDB: m1.String() + "@a3",
			want:    []string{"a3:9"},
		},
		{
			name:    "remote to local",
			first:   func(l *lab) { l.fromTrunk(1, hostA, frame(m2, m1, 1)) },
			second:  func(l *lab) { l.send("a1", frame(m2, m1, 1)) },
			wantFDB: m1.String() + "@a1",
			want:    []string{"a1:9"},
		},
		{
			name:    "local to remote",
			first:   func(l *lab) { l.send("a1", frame(m2, m1, 1)) },
			second:  func(l *lab) { l.fromTrunk(1, hostA, frame(m2, m1, 1)) },
			wantFDB: m1.String() + "@" + hostA.String(),
			want:    []string{"trunk[1/" + hostA.String() + "]:9"},
		},
		{
			name:    "remote to remote",
			first:   func(l *lab) { l.fromTrunk(1, hostA, frame(m2, m1, 1)) },
			second:  func(l *lab) { l.fromTrunk(1, hostB, frame(m2, m1, 1)) },
			wantFDB: m1.String() + "@" + hostB.String(),
			want:    []string{"trunk[1/" + hostB.String() + "]:9"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := fiveLab(t, vswitch.Config{})
			l.withTrunk()
			tc.first(l)
			l.deliveries()
			tc.second(l)
			l.deliveries()
			if got := fdb(l.s, 1); !slices.Equal(got, []string{tc.wantFDB}) {
				t.Errorf("fdb: got %v, want [%s]", got, tc.wantFDB)
			}
			l.send("a2", frame(m1, m2, 9))
			l.expect("after the move", tc.want...)
			if got := fenceStatus(t, l.s, 1).Moves; got != 1 {
				t.Errorf("moves: got %d, want 1", got)
			}
			var local int
			for _, p := range l.s.Status().Ports {
				local += p.MACs
			}
			if want := strings.Count(tc.wantFDB, "@a") + 1; local != want { // + m2 on a2
				t.Errorf("MACs counted on local ports: got %d, want %d", local, want)
			}
		})
	}
}

func TestPinning(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	l := newLab(t, s)
	l.port("pinned", vswitch.PortConfig{Fence: 1, PinMAC: mac(1)})
	l.port("other", vswitch.PortConfig{Fence: 1})
	l.send("pinned", frame(vswitch.Broadcast, mac(1), 1), frame(vswitch.Broadcast, mac(2), 2))
	l.expect("pinned port", "other:1")
	st := portStatus(t, s, "pinned")
	if st.Drops["pinned"] != 1 || st.PinMAC != mac(1).String() {
		t.Errorf("status: got drops %v pin %q, want pinned=1 pin %s", st.Drops, st.PinMAC, mac(1))
	}
	if got, want := fdb(s, 1), []string{mac(1).String() + "@pinned"}; !slices.Equal(got, want) {
		t.Errorf("fdb: got %v, want %v", got, want)
	}
}

func TestPortMACLimit(t *testing.T) {
	s := newSwitch(t, vswitch.Config{MaxPortMACs: 3})
	l := newLab(t, s)
	l.port("a", vswitch.PortConfig{Fence: 1})
	l.port("b", vswitch.PortConfig{Fence: 1, MaxMACs: 2})
	// One batch with four new sources: the first two are learned, the
	// others dropped; repeats of learned sources still pass.
	l.send("b", frame(vswitch.Broadcast, mac(1), 1), frame(vswitch.Broadcast, mac(2), 2),
		frame(vswitch.Broadcast, mac(3), 3), frame(vswitch.Broadcast, mac(1), 4))
	l.send("b", frame(vswitch.Broadcast, mac(4), 5), frame(vswitch.Broadcast, mac(2), 6))
	l.expect("limited port", "a:1", "a:2", "a:4", "a:6")
	if got := portStatus(t, s, "b"); got.Drops["mac_limit"] != 2 || got.MACs != 2 {
		t.Errorf("b: got drops %v MACs %d, want mac_limit=2 MACs=2", got.Drops, got.MACs)
	}
	// Config default (3) applies to a.
	for i := byte(10); i < 15; i++ {
		l.send("a", frame(vswitch.Broadcast, mac(i), uint32(i)))
	}
	l.expect("default limit", "b:10", "b:11", "b:12")
	// Aging frees room.
	if n := s.Expire(time.Now().Add(time.Hour)); n != 5 {
		t.Errorf("expired %d, want 5", n)
	}
	l.send("b", frame(vswitch.Broadcast, mac(3), 20))
	l.expect("after aging", "a:20")
}

func TestFenceMACLimit(t *testing.T) {
	s := newSwitch(t, vswitch.Config{MaxFenceMACs: 3}, vswitch.FenceConfig{ID: 1}, vswitch.FenceConfig{ID: 2, MaxMACs: 100})
	l := newLab(t, s)
	l.port("a", vswitch.PortConfig{Fence: 1})
	l.port("b", vswitch.PortConfig{Fence: 1})
	l.port("c", vswitch.PortConfig{Fence: 1})
	l.send("a", frame(vswitch.Broadcast, mac(1), 1))
	l.send("b", frame(vswitch.Broadcast, mac(2), 2))
	l.send("c", frame(vswitch.Broadcast, mac(3), 3))
	l.deliveries()
	// The table is full: mac(4) is not learned but its frame is forwarded.
	l.send("c", frame(mac(1), mac(4), 4))
	l.expect("refused source still forwarded", "a:4")
	fs := fenceStatus(t, s, 1)
	if fs.LearnRefused != 1 || fs.MACs != 3 || fs.MaxMACs != 3 {
		t.Errorf("fence: got refused %d MACs %d max %d, want 1 3 3", fs.LearnRefused, fs.MACs, fs.MaxMACs)
	}
	// Live entries were not evicted: traffic to all three is still unicast.
	l.send("c", frame(mac(1), mac(3), 5), frame(mac(2), mac(3), 6))
	l.expect("live entries kept", "a:5", "b:6")
	// Replies to the refused MAC flood (it is unknown).
	l.send("a", frame(mac(4), mac(1), 7))
	l.expect("unknown", "b:7", "c:7")
	// A move is not a new entry: it works on a full table.
	l.send("a", frame(mac(1), mac(3), 8))
	if got, want := fdb(s, 1), []string{mac(1).String() + "@a", mac(2).String() + "@b", mac(3).String() + "@a"}; !slices.Equal(got, want) {
		t.Errorf("fdb after move on full table: got %v, want %v", got, want)
	}
	if got := fenceStatus(t, s, 2).MaxMACs; got != 100 {
		t.Errorf("fence 2 max MACs: got %d, want 100", got)
	}
}

func TestCounters(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	f1 := frame(mac(2), mac(1), 1) // 60 bytes, floods to a2, a3
	f2 := frame(mac(1), mac(2), 2) // 60 bytes, to a1
	big := make([]byte, 1500)      // to a2
	copy(big, frame(mac(2), mac(1), 3))
	l.send("a1", f1)
	l.send("a2", f2)
	l.send("a1", big, []byte{1, 2, 3})
	l.deliveries()
	a1, a2, a3 := portStatus(t, l.s, "a1"), portStatus(t, l.s, "a2"), portStatus(t, l.s, "a3")
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"a1 rx frames", a1.RxFrames, 3},
		{"a1 rx bytes", a1.RxBytes, 60 + 1500 + 3},
		{"a1 tx frames", a1.TxFrames, 1},
		{"a1 tx bytes", a1.TxBytes, 60},
		{"a1 runts", a1.Drops["runt"], 1},
		{"a2 rx frames", a2.RxFrames, 1},
		{"a2 tx frames", a2.TxFrames, 2},
		{"a2 tx bytes", a2.TxBytes, 60 + 1500},
		{"a3 tx frames", a3.TxFrames, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	fs := fenceStatus(t, l.s, 1)
	if fs.FramesIn != 3 || fs.BytesIn != 60+60+1500 || fs.FramesOut != 4 || fs.BytesOut != 60*3+1500 || fs.Ports != 3 {
		t.Errorf("fence 1: got %+v, want in 3/1620 out 4/1680 ports 3", fs)
	}
	if fs := fenceStatus(t, l.s, 2); fs.FramesIn != 0 || fs.FramesOut != 0 {
		t.Errorf("fence 2 counted fence 1 traffic: %+v", fs)
	}
}

func TestTrunkStatic(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	l.withTrunk()
	m1, m2, r1 := mac(1), mac(2), mac(0x51)
	// A remote MAC in fence 1 on host A; the frame goes to fence 1 only.
	l.fromTrunk(1, hostA, frame(vswitch.Broadcast, r1, 1))
	l.expect("trunk broadcast", "a1:1", "a2:1", "a3:1")
	l.send("a1", frame(r1, m1, 2))
	l.expect("to remote", "trunk[1/"+hostA.String()+"]:2")
	l.fromTrunk(1, hostA, frame(m1, r1, 3))
	l.expect("from remote to known local", "a1:3")
	// Trunk frames never go back to the trunk.
	l.fromTrunk(1, hostB, frame(r1, m2, 4))
	l.expect("remote destination")
	if got := l.s.Status().Trunk.Drops["remote_dst"]; got != 1 {
		t.Errorf("remote_dst drops: got %d, want 1", got)
	}
	// Unknown fences and runts are dropped and counted.
	l.fromTrunk(9, hostA, frame(vswitch.Broadcast, r1, 5))
	l.fromTrunk(1, hostA, []byte{1, 2, 3})
	l.expect("bad trunk frames")
	ts := l.s.Status().Trunk
	if ts.Drops["unknown_fence"] != 1 || ts.Drops["runt"] != 1 || ts.RxFrames != 5 {
		t.Errorf("trunk status: got %+v, want unknown_fence=1 runt=1 rx=5", ts)
	}
	// FlushHost forgets host A's MACs (r1), not host B's (m2).
	if n := l.s.FlushHost(hostA); n != 1 {
		t.Errorf("FlushHost(A): got %d, want 1", n)
	}
	if got, want := fdb(l.s, 1), []string{m1.String() + "@a1", m2.String() + "@" + hostB.String()}; !slices.Equal(got, want) {
		t.Errorf("fdb after flush: got %v, want %v", got, want)
	}
	l.send("a1", frame(r1, m1, 6))
	l.expect("flushed MAC floods", "a2:6", "a3:6", "trunk[1/bcast]:6")
}

func TestNoTrunk(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	tr := l.withTrunk()
	_ = tr
	l.fromTrunk(1, hostA, frame(vswitch.Broadcast, mac(0x51), 1))
	l.deliveries()
	l.s.Close() // detaches the trunk (and the ports)
	if st := l.s.Status(); st.Trunk != nil || len(st.Ports) != 0 {
		t.Errorf("after Close: got trunk %v, %d ports", st.Trunk, len(st.Ports))
	}
}

func TestDetachFlushes(t *testing.T) {
	l := fiveLab(t, vswitch.Config{})
	l.send("a1", frame(mac(2), mac(1), 1))
	l.send("a2", frame(mac(1), mac(2), 2))
	l.deliveries()
	l.ports["a1"].Detach(nil)
	if got, want := fdb(l.s, 1), []string{mac(2).String() + "@a2"}; !slices.Equal(got, want) {
		t.Errorf("fdb after detach: got %v, want %v", got, want)
	}
	l.send("a2", frame(mac(1), mac(2), 3))
	delete(l.ports, "a1")
	l.expect("to detached MAC floods", "a3:3")
	if got := fenceStatus(t, l.s, 1).Ports; got != 2 {
		t.Errorf("fence ports: got %d, want 2", got)
	}
}

func TestLocalFences(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	if got := s.LocalFences(); len(got) != 0 {
		t.Errorf("no ports: got %v", got)
	}
	l := newLab(t, s)
	l.port("c", vswitch.PortConfig{Fence: 3})
	l.port("a", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	if got, want := s.LocalFences(), []uint32{1, 3}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	l.ports["c"].Detach(nil)
	if got, want := s.LocalFences(), []uint32{1}; !slices.Equal(got, want) {
		t.Errorf("after detach: got %v, want %v", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	s := newSwitch(t, vswitch.Config{}, vswitch.FenceConfig{ID: 1, Name: "one"})
	for _, tc := range []struct {
		name string
		fc   vswitch.FenceConfig
	}{
		// The wire range of fence IDs (0xFFFFFF reserved, at most 24 bits)
		// is package fence's rule, tested there (TestValidFenceID) and
		// applied where the configuration is read; the switch refuses only
		// the ID it cannot tell from "not set".
		{"id 0", vswitch.FenceConfig{ID: 0, Name: "x"}},
		{"duplicate id", vswitch.FenceConfig{ID: 1, Name: "x"}},
		{"duplicate name", vswitch.FenceConfig{ID: 2, Name: "one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AddFence(tc.fc); err == nil {
				t.Errorf("AddFence(%+v): got nil error", tc.fc)
			}
		})
	}
	if _, err := s.AttachStatic(vswitch.PortConfig{Fence: 7}, 1); err == nil {
		t.Error("Attach to unknown fence: got nil error")
	}
	if _, err := s.AttachStatic(vswitch.PortConfig{Fence: 1}, 0); err == nil {
		t.Error("Attach with batch size 0: got nil error")
	}
	if _, err := vswitch.New(vswitch.Config{QueueLen: -1}); err == nil {
		t.Error("New with negative QueueLen: got nil error")
	}
}

func TestStatusJSON(t *testing.T) {
	clk := newClock()
	l := fiveLab(t, vswitch.Config{Now: clk.Now})
	l.withTrunk()
	l.send("a1", frame(vswitch.Broadcast, mac(1), 1), []byte{1})
	l.deliveries()
	b, err := json.Marshal(l.s.Status())
	if err != nil {
		t.Fatal(err)
	}
	var back vswitch.Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l.s.Status()) {
		t.Errorf("status does not survive JSON:\n got %+v\nwant %+v", back, l.s.Status())
	}
	for _, key := range []string{`"fences":`, `"ports":`, `"trunk":`, `"drops":{"runt":1}`, `"floods":1`, `"learn_refused":0`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("status JSON lacks %s: %s", key, b)
		}
	}
	clk.Advance(1500 * time.Millisecond)
	fb, err := json.Marshal(l.s.FDB(1))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"mac":"00:00:5e:00:53:01","port":1,"port_name":"a1","age":1.5}]`; string(fb) != want {
		t.Errorf("FDB JSON: got %s, want %s", fb, want)
	}
	if got := l.s.FDB(42); got != nil {
		t.Errorf("FDB of unknown fence: got %v, want nil", got)
	}
}

func TestHostMACLimit(t *testing.T) {
	s := newSwitch(t, vswitch.Config{MaxHostMACs: 2}, vswitch.FenceConfig{ID: 1})
	l := newLab(t, s)
	l.port("a", vswitch.PortConfig{Fence: 1})
	l.withTrunk()
	h1, h2 := vswitch.MAC{2, 0xfe, 0xc, 1, 0, 1}, vswitch.MAC{2, 0xfe, 0xc, 1, 0, 2}
	// h1 sends from four MACs: two are learned, the others refused (their
	// frames still delivered).
	l.fromTrunk(1, h1, frame(vswitch.Broadcast, mac(1), 1), frame(vswitch.Broadcast, mac(2), 2),
		frame(vswitch.Broadcast, mac(3), 3), frame(vswitch.Broadcast, mac(4), 4))
	l.expect("all delivered", "a:1", "a:2", "a:3", "a:4")
	fs := fenceStatus(t, s, 1)
	if fs.HostLimitRefused != 2 || fs.MACs != 2 {
		t.Fatalf("host_limit_refused %d, MACs %d; want 2, 2", fs.HostLimitRefused, fs.MACs)
	}
	// Another host is not limited by h1's entries; a MAC moving from h1
	// to h2 frees room at h1.
	l.fromTrunk(1, h2, frame(vswitch.Broadcast, mac(5), 5), frame(vswitch.Broadcast, mac(1), 6))
	l.fromTrunk(1, h1, frame(vswitch.Broadcast, mac(6), 7))
	l.expect("more", "a:5", "a:6", "a:7")
	if got := fenceStatus(t, s, 1); got.MACs != 4 || got.HostLimitRefused != 2 {
		t.Fatalf("after moves: MACs %d, refused %d; want 4, 2", got.MACs, got.HostLimitRefused)
	}
	// Flushing h1 frees its room.
	if n := s.FlushHost(h1); n != 2 {
		t.Fatalf("FlushHost(h1) = %d, want 2", n)
	}
	l.fromTrunk(1, h1, frame(vswitch.Broadcast, mac(7), 8), frame(vswitch.Broadcast, mac(8), 9), frame(vswitch.Broadcast, mac(9), 10))
	l.expect("after flush", "a:8", "a:9", "a:10")
	if got := fenceStatus(t, s, 1); got.MACs != 4 || got.HostLimitRefused != 3 {
		t.Fatalf("after flush: MACs %d, refused %d; want 4, 3", got.MACs, got.HostLimitRefused)
	}
	// Aging frees room too.
	s.Expire(time.Now().Add(time.Hour))
	l.fromTrunk(1, h1, frame(vswitch.Broadcast, mac(9), 11), frame(vswitch.Broadcast, mac(10), 12))
	l.expect("after aging", "a:11", "a:12")
	if got := fenceStatus(t, s, 1); got.MACs != 2 || got.HostLimitRefused != 3 {
		t.Fatalf("after aging: MACs %d, refused %d; want 2, 3", got.MACs, got.HostLimitRefused)
	}
}
