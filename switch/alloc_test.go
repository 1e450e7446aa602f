package vswitch_test

import (
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// forwardLab is two local ports a1, a2 (fence 1) with learned MACs, a
// third port a3 and a trunk, driven directly (no goroutines).
func forwardLab(t testing.TB) *lab {
	s := newSwitch(t, vswitch.Config{}, unlimitedFences...)
	l := newLab(t, s)
	l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	l.port("a3", vswitch.PortConfig{Fence: 1})
	l.withTrunk()
	l.send("a1", frame(mac(2), mac(1), 0))
	l.send("a2", frame(mac(1), mac(2), 0))
	l.deliveries()
	return l
}

func TestNoAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  vswitch.MAC
		size int
		want int // frames delivered per run
	}{
		{"unicast 64", mac(2), 64, 8},
		{"unicast 1500", mac(2), 1500, 8},
		{"unicast 9000", mac(2), 9000, 8},
		{"flood 64", vswitch.Broadcast, 64, 3 * 8},
		{"flood 1500", vswitch.Broadcast, 1500, 3 * 8},
		{"flood 9000", vswitch.Broadcast, 9000, 3 * 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := forwardLab(t)
			frames := paddedFrames(tc.dst, tc.size, 8)
			a1, a2, a3, tr := l.ports["a1"], l.ports["a2"], l.ports["a3"], l.trunk
			var got int
			run := func() {
				a1.Inject(frames)
				got = a2.Drain(nil) + a3.Drain(nil) + tr.Drain(nil)
			}
			run()
			if got != tc.want {
				t.Fatalf("delivered %d frames per run, want %d", got, tc.want)
			}
			if n := testing.AllocsPerRun(1000, run); n != 0 {
				t.Errorf("AllocsPerRun: got %v, want 0", n)
			}
			if got != tc.want {
				t.Errorf("delivered %d frames per run, want %d", got, tc.want)
			}
		})
	}
	t.Run("from trunk", func(t *testing.T) {
		l := forwardLab(t)
		frames := [][]byte{frame(mac(1), mac(0x51), 1), frame(vswitch.Broadcast, mac(0x51), 2)}
		fences, hosts := []uint32{1, 1}, [][6]byte{hostA, hostA}
		var got int
		run := func() {
			l.trunk.Inject(frames, fences, hosts)
			got = l.ports["a1"].Drain(nil) + l.ports["a2"].Drain(nil) + l.ports["a3"].Drain(nil)
		}
		run()
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("AllocsPerRun: got %v, want 0", n)
		}
		if got != 4 {
			t.Errorf("delivered %d frames per run, want 4", got)
		}
	})
}

func BenchmarkForward(b *testing.B) {
	for _, bc := range []struct {
		name string
		dst  vswitch.MAC
		size int
	}{
		{"unicast/64", mac(2), 64},
		{"unicast/1500", mac(2), 1500},
		{"flood/64", vswitch.Broadcast, 64},
		{"flood/1500", vswitch.Broadcast, 1500},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := forwardLab(b)
			const batch = 32
			frames := paddedFrames(bc.dst, bc.size, batch)
			a1, a2, a3, tr := l.ports["a1"], l.ports["a2"], l.ports["a3"], l.trunk
			a1.Inject(frames) // warm the buffer stashes
			l.deliveries()
			b.ReportAllocs()
			b.SetBytes(int64(bc.size * batch))
			b.ResetTimer()
			for b.Loop() {
				a1.Inject(frames)
				a2.Drain(nil)
				a3.Drain(nil)
				tr.Drain(nil)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
