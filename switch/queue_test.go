package vswitch_test

import (
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
