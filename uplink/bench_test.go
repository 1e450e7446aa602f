package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// BenchmarkLoopback measures WriteTrunk → UDP loopback → ReadTrunk between
// two Uplinks, unicast, in batches. Reports frames/s received and loss.
func BenchmarkLoopback(b *testing.B) {
	for _, noOff := range []bool{false, true} {
		for _, size := range []int{64, 1400, 1514} {
			b.Run(fmt.Sprintf("offload=%v/%d", !noOff, size), func(b *testing.B) {
				benchPair(b, size, noOff)
			})
		}
	}
}

func benchPair(b *testing.B, size int, noOffload bool) {
	ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour, noOffload: noOffload})
	if err != nil {
		b.Fatal(err)
	}
	defer ua.Close()
	ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour, noOffload: noOffload})
	if err != nil {
		b.Fatal(err)
	}
	defer ub.Close()
	// Teach a where b is: one frame from b.
	ub.learn(ua.self, ua.LocalAddr(), time.Now())
	ua.learn(ub.self, ub.LocalAddr(), time.Now())

	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		bs := ub.BatchSize()
		bufs := make([][]byte, bs)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.BufSize)
		}
		sizes := make([]int, bs)
		fences := make([]uint32, bs)
		hosts := make([][6]byte, bs)
		for {
			n, err := ub.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					b.Error(err)
				}
				return
			}
			got.Add(int64(n))
		}
	}()
	bs := ua.BatchSize()
	bufs := make([][]byte, bs)
	fences := make([]uint32, bs)
	hosts := make([][6]byte, bs)
	f := frame(size, 2, 1, 0)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.Headroom+size)
		fences[i], hosts[i] = 1, ub.self
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		n := min(bs, b.N-sent)
		for i := 0; i < n; i++ {
			copy(bufs[i][vswitch.Headroom:], f)
		}
		if _, err := ua.WriteTrunk(bufs[:n], fences[:n], hosts[:n], vswitch.Headroom); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	// Wait until everything arrived or nothing more arrives for 50 ms.
	last, lastAt, el := got.Load(), time.Now(), time.Since(start)
	for got.Load() < int64(sent) && time.Since(lastAt) < 50*time.Millisecond {
		time.Sleep(time.Millisecond)
		if g := got.Load(); g != last {
			last, lastAt, el = g, time.Now(), time.Since(start)
		}
	}
	if got.Load() == int64(sent) {
		el = time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/el.Seconds()/1e6, "Mpps")
	b.ReportMetric(100*float64(int64(sent)-got.Load())/float64(sent), "%loss")
	b.ReportMetric(float64(ub.Status().Counters["rx_gro_buffers"]), "gro-buffers")
	ub.Close()
	<-done
}

func TestWriteTrunkAllocs(t *testing.T) {
	ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), HelloInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ub.Close()
	ua.learn(ub.self, ub.LocalAddr(), time.Now())
	const n = 16
	bufs := make([][]byte, n)
	fences := make([]uint32, n)
	hosts := make([][6]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.Headroom+1514)
		copy(bufs[i][vswitch.Headroom:], frame(1514, 2, 1, 0))
		fences[i], hosts[i] = 1, ub.self
	}
	for _, tc := range []struct {
		name string
		size int
	}{{"whole", 1000}, {"fragmented", 1514}} {
		for i := range bufs {
			bufs[i] = bufs[i][:vswitch.Headroom+tc.size]
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := ua.WriteTrunk(bufs, fences, hosts, vswitch.Headroom); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %.1f allocs per batch of %d", tc.name, allocs, n)
		if allocs > 0 && !raceEnabled {
			t.Errorf("%s: WriteTrunk allocates %.1f times per batch, want 0", tc.name, allocs)
		}
	}
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
