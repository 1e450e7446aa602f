package vswitch_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// stormLab is fence 1 with bum_rate rate, ports a1 (the sender), a2 and
// a3 with learned MACs, and a trunk, on the fake clock c.
func stormLab(t testing.TB, rate int) (*lab, *fakeClock) {
	c := newClock()
	s := newSwitch(t, vswitch.Config{Now: c.Now}, vswitch.FenceConfig{ID: 1, Name: "one", BUMRate: rate},
		vswitch.FenceConfig{ID: 2, Name: "two"})
	l := newLab(t, s)
	l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	l.port("a3", vswitch.PortConfig{Fence: 1})
	l.port("b1", vswitch.PortConfig{Fence: 2})
	l.withTrunk()
	l.send("a1", frame(mac(2), mac(1), 0))
	l.send("a2", frame(mac(1), mac(2), 0))
	l.send("a3", frame(mac(1), mac(3), 0))
	c.Advance(time.Second) // the learning frames' credit comes back
	l.deliveries()
	return l, c
}

// TestStormControl: a port floods (broadcast, multicast, unknown unicast)
// at most its fence's bum_rate frames per second after a burst of a tenth
// of a second's worth; the excess is dropped and counted (storm) on the
// port and the fence, known unicast is never limited, other ports have
// their own buckets, and the credit refills with the clock.
func TestStormControl(t *testing.T) {
	const rate, burst = 1000, 100 // frames/s; a tenth of a second
	l, c := stormLab(t, rate)
	s := l.s
	a1 := l.ports["a1"]
	kinds := []vswitch.MAC{vswitch.Broadcast, mcast, mac(99)} // mac(99): unknown unicast
	flooded := 0
	send := func(n int) {
		for n > 0 {
			k := min(n, 32)
			frames := make([][]byte, k)
			for i := range frames {
				frames[i] = frame(kinds[(flooded+i)%len(kinds)], mac(1), uint32(flooded+i))
			}
			a1.Inject(frames)
			flooded += k
			n -= k
		}
	}
	count := func() (a2 int, storm uint64) {
		a2 = l.ports["a2"].Drain(nil)
		l.ports["a3"].Drain(nil)
		l.trunk.Drain(nil)
		return a2, portStatus(t, s, "a1").Drops["storm"]
	}

	send(300) // at one instant: the burst passes, the rest is dropped
	if got, storm := count(); got != burst || storm != 300-burst {
		t.Fatalf("300 floods at once: a2 got %d, storm drops %d; want %d, %d", got, storm, burst, 300-burst)
	}
	// Known unicast is not limited, even with no credit left.
	uni := make([][]byte, 32)
	for i := range uni {
		uni[i] = frame(mac(2), mac(1), uint32(i))
	}
	a1.Inject(uni)
	if got, storm := count(); got != 32 || storm != 300-burst {
		t.Fatalf("unicast after the burst: a2 got %d (want 32), storm drops %d", got, storm)
	}
	// Another port of the fence has its own bucket.
	l.ports["a3"].Inject([][]byte{frame(vswitch.Broadcast, mac(3), 1)})
	if got, _ := count(); got != 1 {
		t.Fatalf("a3's broadcast: a2 got %d, want 1", got)
	}
	// 10 ms refill 10 frames.
	c.Advance(10 * time.Millisecond)
	send(50)
	if got, storm := count(); got != 10 || storm != 300-burst+40 {
		t.Fatalf("after 10ms: a2 got %d, storm drops %d; want 10, %d", got, storm, 300-burst+40)
	}
	// A long quiet period refills the burst, no more.
	c.Advance(time.Hour)
	send(200)
	if got, _ := count(); got != burst {
		t.Fatalf("after an hour: a2 got %d, want %d", got, burst)
	}
	// Steady state: 1000 frames/s offered at 2000/s for one second.
	before := portStatus(t, s, "a1").Drops["storm"]
	passed := 0
	for i := 0; i < 100; i++ {
		c.Advance(10 * time.Millisecond)
		send(20)
		n, _ := count()
		passed += n
	}
	if passed != rate {
		t.Errorf("one second at 2000 floods/s: %d passed, want %d", passed, rate)
	}
	if got := portStatus(t, s, "a1").Drops["storm"] - before; got != 2000-rate {
		t.Errorf("one second at 2000 floods/s: %d storm drops, want %d", got, 2000-rate)
	}
	if f := fenceStatus(t, s, 1); f.Drops["storm"] != portStatus(t, s, "a1").Drops["storm"] {
		t.Errorf("fence storm drops %d, port %d", f.Drops["storm"], portStatus(t, s, "a1").Drops["storm"])
	}
	// The storm is the port's alone: fence 2 is untouched.
	if f := fenceStatus(t, s, 2); len(f.Drops) != 0 {
		t.Errorf("fence two drops: %v", f.Drops)
	}
}

// TestStormControlOff: a negative BUMRate turns storm control off; the
// default is DefaultBUMRate.
func TestStormControlOff(t *testing.T) {
	l, _ := stormLab(t, -1)
	for i := 0; i < 100; i++ {
		l.send("a1", paddedFrames(vswitch.Broadcast, 60, 32)...)
		l.ports["a2"].Drain(nil)
		l.ports["a3"].Drain(nil)
		l.trunk.Drain(nil)
	}
	if d := portStatus(t, l.s, "a1").Drops; len(d) != 0 {
		t.Errorf("unlimited: drops %v", d)
	}
	l, _ = stormLab(t, 0)
	n := 0
	for i := 0; i < 100; i++ {
		l.send("a1", paddedFrames(vswitch.Broadcast, 60, 32)...)
		n += l.ports["a2"].Drain(nil)
	}
	if want := vswitch.DefaultBUMRate / 10; n != want {
		t.Errorf("default rate: %d of 3200 passed at one instant, want the burst %d", n, want)
	}
}

// TestStormNoAllocs: dropping a storm allocates nothing.
func TestStormNoAllocs(t *testing.T) {
	l, _ := stormLab(t, 100)
	frames := paddedFrames(vswitch.Broadcast, 64, 32)
	a1 := l.ports["a1"]
	run := func() {
		a1.Inject(frames)
		l.ports["a2"].Drain(nil)
		l.ports["a3"].Drain(nil)
		l.trunk.Drain(nil)
	}
	run()
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Errorf("AllocsPerRun: got %v, want 0", n)
	}
	if portStatus(t, l.s, "a1").Drops["storm"] == 0 {
		t.Error("no storm drops")
	}
}

// stormPort is a VM that floods: every Read returns a full batch of
// broadcasts.
type stormPort struct {
	reads  atomic.Int64
	closed chan struct{}
	once   sync.Once
}

func (p *stormPort) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	p.reads.Add(1)
	f := frame(vswitch.Broadcast, mac(1), 0)
	for i := range bufs {
		sizes[i] = copy(bufs[i][off:], f)
	}
	return len(bufs), nil
}

func (p *stormPort) Write(bufs [][]byte, off int) (int, error) { return len(bufs), nil }
func (p *stormPort) BatchSize() int                            { return 64 }
func (p *stormPort) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// TestStormPausesReader: a port over its rate is not read until its
// credit returns, so a storm costs a few reads per pause rather than a
// read and a drop per frame. The bound on reads is an upper bound: a
// loaded machine only makes fewer.
func TestStormPausesReader(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{}) // default bum_rate 20,000: bursts of 2,000
	sp := &stormPort{closed: make(chan struct{})}
	h, err := s.Attach(sp, vswitch.PortConfig{Name: "storm", Fence: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "storm drops", func() bool { return portStatus(t, s, "storm").Drops["storm"] > 0 })
	r0, t0 := sp.reads.Load(), time.Now()
	time.Sleep(500 * time.Millisecond)
	reads, el := sp.reads.Load()-r0, time.Since(t0)
	// At 20,000 frames/s, 500 ms pass 10,000 frames, 157 reads of 64,
	// plus one dropped read per pause (of at least 1 ms).
	limit := int64(el.Seconds()*vswitch.DefaultBUMRate/64) + int64(el/time.Millisecond) + 40
	t.Logf("%d reads of 64 broadcasts in %v (%.0f frames/s read)", reads, el, float64(reads*64)/el.Seconds())
	if reads > limit {
		t.Errorf("%d reads in %v: the storming port was not paused (want at most %d)", reads, el, limit)
	}
	h.Close()
}
