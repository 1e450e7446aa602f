package uplink

import (
	"fmt"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// TestBatchOrderAndOffload sends batches of equal and mixed sizes, with
// UDP GSO/GRO on and off: every frame arrives once, in order.
func TestBatchOrderAndOffload(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", !off), func(t *testing.T) {
			noOff := func(c *Config) { c.noOffload = off }
			a := newHost(t, 1, []uint32{1}, noOff)
			b := newHost(t, 2, []uint32{1}, func(c *Config) { noOff(c); peersOf(a)(c) })
			waitHello(t, a, b, 1)
			if got := a.u.link.udp.gro != nil; got == off {
				t.Fatalf("GRO on = %v, want %v", got, !off)
			}
			const n = 64
			for _, sizes := range [][]int{{1000}, {1454}, {100, 1454, 1514, 60}, {1514}, {1514, 1514, 2000, 1514, 60}} {
				bufs := make([][]byte, n)
				fences := make([]uint32, n)
				hosts := make([][6]byte, n)
				want := make([][]byte, n)
				for i := range bufs {
					size := sizes[i%len(sizes)]
					want[i] = frame(size, 2, 1, byte(i))
					bufs[i] = append(make([]byte, vswitch.Headroom), want[i]...)
					fences[i], hosts[i] = 1, b.u.OuterMAC()
				}
				if _, err := a.u.WriteTrunk(bufs, fences, hosts, vswitch.Headroom); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					select {
					case f := <-b.rx:
						if string(f.data) != string(want[i]) {
							t.Fatalf("sizes %v: frame %d: got %d bytes (seed %d), want %d bytes", sizes, i, len(f.data), f.data[20]^20, len(want[i]))
						}
					case <-time.After(testTimeout):
						t.Fatalf("sizes %v: frame %d of %d not received", sizes, i, n)
					}
				}
			}
			t.Logf("a: %v", a.u.Status().Counters)
		})
	}
}
