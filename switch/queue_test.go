package vswitch_test

import (
	"fmt"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// TestQueueBounds: a transmit queue refuses frames beyond its frame bound
// and beyond its byte bound, except that an empty queue takes any frame.
func TestQueueBounds(t *testing.T) {
	const small, large = 2048, vswitch.BufSize // what a queued frame counts
	for _, tc := range []struct {
		name           string
		queueLen       int
		queueBytes     int
		size, count    int
		charge         int // buffer bytes per queued frame
		queued, drops  int
		statusQueueLen int
	}{
		{"frames bound", 4, 1 << 20, 64, 10, small, 4, 6, 4},
		{"bytes bound, small frames", 100, 3 * small, 1500, 10, small, 3, 7, 100},
		{"bytes bound, not exact", 100, 3*small + 100, 1984, 10, small, 3, 7, 100},
		{"bytes bound, large frames", 100, 3 * large, 1985, 10, large, 3, 7, 100},
		{"large frame, empty queue", 100, small, 9000, 2, large, 1, 1, 100},
		{"defaults hold a 256 KiB read of 64-byte frames", 0, 0, 64, 3855, small, 3855, 0, vswitch.DefaultQueueFrames},
		{"defaults, 1500 bytes", 0, 0, 1500, 5000, small, 4096, 5000 - 4096, vswitch.DefaultQueueFrames},
		{"defaults, 9000 bytes", 0, 0, 9000, 200, large, 127, 200 - 127, vswitch.DefaultQueueFrames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSwitch(t, vswitch.Config{QueueLen: tc.queueLen, QueueBytes: tc.queueBytes})
			l := newLab(t, s)
			a1 := l.port("a1", vswitch.PortConfig{Fence: 1})
			a2 := l.port("a2", vswitch.PortConfig{Fence: 1})
			l.send("a2", frame(mac(1), mac(2), 0))
			l.deliveries()
			var frames [][]byte
			for i := 0; i < tc.count; i++ {
				frames = append(frames, payload(mac(2), mac(1), uint32(i), tc.size))
				if len(frames) == 32 || i == tc.count-1 {
					a1.Inject(frames)
					frames = frames[:0]
				}
			}
			st := portStatus(t, s, "a2")
			if st.Queued != tc.queued || st.QueuedBytes != tc.queued*tc.charge || st.QueueLen != tc.statusQueueLen {
				t.Errorf("status: queued %d frames %d bytes of %d; want %d, %d, %d",
					st.Queued, st.QueuedBytes, st.QueueLen, tc.queued, tc.queued*tc.charge, tc.statusQueueLen)
			}
			if got := st.Drops["queue_full"]; got != uint64(tc.drops) {
				t.Errorf("queue_full drops: got %d, want %d", got, tc.drops)
			}
			next := uint32(0)
			n := a2.Drain(func(f []byte) {
				if tagOf(f) != next || len(f) != tc.size {
					t.Errorf("drained tag %d (%d bytes), want %d (%d bytes)", tagOf(f), len(f), next, tc.size)
				}
				next++
			})
			if n != tc.queued {
				t.Errorf("drained %d frames, want %d", n, tc.queued)
			}
			if st := portStatus(t, s, "a2"); st.Queued != 0 || st.QueuedBytes != 0 {
				t.Errorf("after drain: queued %d frames %d bytes, want 0", st.Queued, st.QueuedBytes)
			}
		})
	}
}

// TestGlobalQueueBound: ports that never read cannot together queue more
// than Config.MaxQueuedBytes, though each queue's own bound would take
// more; the excess is dropped and counted as global_queue_full on the
// destination and its fence, and the bytes come back when a queue is
// drained or its port detached.
func TestGlobalQueueBound(t *testing.T) {
	const bound = 1 << 20 // 1 MiB; each port's own bound is 8 MiB
	const stuck = 24
	s := newSwitch(t, vswitch.Config{MaxQueuedBytes: bound, MaxPortMACs: 1})
	l := newLab(t, s)
	src := l.port("src", vswitch.PortConfig{Fence: 1})
	ports := make([]*vswitch.StaticPort, stuck)
	for i := range ports {
		name := fmt.Sprintf("stuck%d", i)
		ports[i] = l.port(name, vswitch.PortConfig{Fence: 1})
		l.send(name, frame(mac(200), mac(byte(10+i)), 0)) // learn its MAC
	}
	l.deliveries()
	if st := s.Status(); st.MaxQueuedBytes != bound || st.QueuedBytes != 0 {
		t.Fatalf("status: queued %d of %d, want 0 of %d", st.QueuedBytes, st.MaxQueuedBytes, bound)
	}
	offered := 0
	for round := 0; round < 40; round++ {
		for i := range ports {
			frames := make([][]byte, 32)
			for k := range frames {
				frames[k] = payload(mac(byte(10+i)), mac(1), uint32(round*32+k), 1500)
			}
			src.Inject(frames)
			offered += len(frames)
			if q := s.Status().QueuedBytes; q > bound {
				t.Fatalf("round %d port %d: %d bytes queued, bound %d", round, i, q, bound)
			}
		}
	}
	st := s.Status()
	sum := 0
	var dropped uint64
	for _, p := range st.Ports {
		sum += p.QueuedBytes
		dropped += p.Drops["global_queue_full"]
		if p.Drops["queue_full"] != 0 {
			t.Errorf("port %s: %d queue_full drops; its own bound was never reached", p.Name, p.Drops["queue_full"])
		}
	}
	if int64(sum) != st.QueuedBytes || sum > bound || sum < bound-vswitch.BufSize {
		t.Errorf("queued %d bytes over the ports, %d in the budget; want ≈ the bound %d", sum, st.QueuedBytes, bound)
	}
	if dropped == 0 || fenceStatus(t, s, 1).Drops["global_queue_full"] != dropped {
		t.Errorf("global_queue_full drops: ports %d, fence %d", dropped, fenceStatus(t, s, 1).Drops["global_queue_full"])
	}
	// Draining one port and detaching another give their bytes back.
	before := st.QueuedBytes
	d0 := portStatus(t, s, "stuck0").QueuedBytes
	d1 := portStatus(t, s, "stuck1").QueuedBytes
	if ports[0].Drain(nil) == 0 || d0 == 0 || d1 == 0 {
		t.Fatalf("stuck0 and stuck1 had nothing queued (%d, %d bytes)", d0, d1)
	}
	ports[1].Detach(nil)
	if got := s.Status().QueuedBytes; got != before-int64(d0)-int64(d1) {
		t.Errorf("after drain and detach: %d bytes queued, want %d", got, before-int64(d0)-int64(d1))
	}
	// ... and that room is used again.
	src.Inject([][]byte{payload(mac(12), mac(1), 1<<20, 1500)})
	if got := portStatus(t, s, "stuck2").Drops["global_queue_full"]; portStatus(t, s, "stuck2").QueuedBytes == 0 {
		t.Errorf("stuck2: nothing queued (%d global drops)", got)
	}
	for _, p := range ports[2:] {
		p.Drain(nil)
	}
	ports[0].Drain(nil)
	if got := s.Status().QueuedBytes; got != 0 {
		t.Errorf("all drained: %d bytes still charged", got)
	}
}
