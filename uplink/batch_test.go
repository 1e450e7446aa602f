package uplink

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// sendBigBatch writes one WriteTrunk batch of DefaultBatchSize unicast
// frames from a to b: every other frame needs two fragments, so the batch
// holds more fragmented frames than WriteTrunk has scratch slots. It checks
// that b receives every frame intact and in order.
func sendBigBatch(t *testing.T, a, b *testHost) {
	t.Helper()
	n := DefaultBatchSize
	if n/2 <= scratchSlots {
		t.Fatalf("batch %d does not exceed %d scratch slots", n, scratchSlots)
	}
	want := make([][]byte, n)
	bufs := make([][]byte, n)
	fences := make([]uint32, n)
	hosts := make([][6]byte, n)
	for i := range bufs {
		size := 100 + i
		if i%2 == 0 {
			size = 1514
		}
		want[i] = frame(size, 2, 1, byte(i))
		want[i][14], want[i][15] = byte(i>>8), byte(i) // a serial number
		bufs[i] = make([]byte, vswitch.Headroom+size)
		copy(bufs[i][vswitch.Headroom:], want[i])
		fences[i], hosts[i] = 1, b.u.OuterMAC()
	}
	before := a.u.Status().Counters["tx_fragmented"]
	if got, err := a.u.WriteTrunk(bufs, fences, hosts, vswitch.Headroom); err != nil || got != n {
		t.Fatalf("WriteTrunk = %d, %v; want %d", got, err, n)
	}
	if got := a.u.Status().Counters["tx_fragmented"] - before; got != uint64(n/2) {
		t.Fatalf("tx_fragmented grew by %d, want %d", got, n/2)
	}
	deadline := time.After(testTimeout)
	for i := 0; i < n; {
		select {
		case f := <-b.rx:
			if f.fence != 1 || len(f.data) < 16 {
				continue // not from this batch
			}
			if !bytes.Equal(f.data, want[i]) {
				t.Fatalf("frame %d: got %d bytes serial %d, want %d bytes serial %d",
					i, len(f.data), int(f.data[14])<<8|int(f.data[15]), len(want[i]), i)
			}
			i++
		case <-deadline:
			t.Fatalf("%d of %d frames received", i, n)
		}
	}
}

func TestBigBatchInOrder(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, nil)
	b := newHost(t, 2, []uint32{1}, peersOf(a))
	waitHello(t, a, b, 1)
	for range 3 {
		sendBigBatch(t, a, b)
	}
}

// TestReadTrunkAllocs checks that receiving (with and without UDP GRO,
// whole frames and fragments) allocates nothing per batch.
func TestReadTrunkAllocs(t *testing.T) {
	for _, noOff := range []bool{false, true} {
		for _, size := range []int{200, 1514} {
			t.Run(fmt.Sprintf("offload=%v/%d", !noOff, size), func(t *testing.T) {
				ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour, noOffload: noOff})
				if err != nil {
					t.Fatal(err)
				}
				defer ua.Close()
				ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour, noOffload: noOff})
				if err != nil {
					t.Fatal(err)
				}
				defer ub.Close()
				ua.learn(ub.self, ub.LocalAddr(), time.Now())
				const n = 16
				out := make([][]byte, n)
				fences := make([]uint32, n)
				hosts := make([][6]byte, n)
				for i := range out {
					out[i] = make([]byte, vswitch.Headroom+size)
					fences[i], hosts[i] = 1, ub.self
				}
				f := frame(size, 2, 1, 0)
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
				batch() // learn a, warm up
				allocs := testing.AllocsPerRun(50, batch)
				t.Logf("%.1f allocs per batch of %d", allocs, n)
				if allocs > 0 && !raceEnabled {
					t.Errorf("WriteTrunk+ReadTrunk allocate %.1f times per batch, want 0", allocs)
				}
			})
		}
	}
}
