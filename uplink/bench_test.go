package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralnet/corral/fence"
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
	ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour, noOffload: noOffload})
	if err != nil {
		b.Fatal(err)
	}
	defer ua.Close()
	ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour, noOffload: noOffload})
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
	ua, err := New(Config{HostID: 1, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	ub, err := New(Config{HostID: 2, UDPListen: mustAP("127.0.0.1:0"), LearnPeers: true, trustLearned: true, HelloInterval: time.Hour})
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

// loopTransport hands the same datagrams to every recv and discards sends:
// the benchmarks below measure the uplink's own work per batch, without
// system calls.
type loopTransport struct {
	in   [][]byte
	from netip.AddrPort
}

func (f *loopTransport) recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(f.in))
	for i := 0; i < n; i++ {
		sizes[i] = copy(bufs[i], f.in[i])
		from[i] = f.from
	}
	return n, nil
}
func (f *loopTransport) send([]outItem) error { return nil }
func (f *loopTransport) close() error         { return nil }

func newLoop(b *testing.B, in [][]byte, mods ...func(*Config)) *Uplink {
	cfg := Config{HostID: 1, HelloInterval: time.Hour}
	for _, m := range mods {
		m(&cfg)
	}
	u, err := newBase(cfg)
	if err != nil {
		b.Fatal(err)
	}
	u.link.tr = &loopTransport{in: in, from: mustAP("192.0.2.9:7407")}
	u.link.maxEncap = 1472
	u.start(DefaultBatchSize)
	b.Cleanup(func() { u.Close() })
	return u
}

// BenchmarkReadTrunkNoSocket measures ReadTrunk's stages on batches of 64
// whole 1000-byte frames of one peer, in runs of 16 frames per fence.
func BenchmarkReadTrunkNoSocket(b *testing.B) {
	p := fence.Params{}
	src := p.OuterMAC(2)
	var in [][]byte
	for i := 0; i < 64; i++ {
		in = append(in, encap(p, fence.BroadcastMAC, src, fence.HeaderFields{Fence: uint32(1 + i/16)}, frame(1000, 1, 2, byte(i))))
	}
	u := newLoop(b, in)
	bufs := make([][]byte, len(in))
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes, fences, hosts := make([]int, len(in)), make([]uint32, len(in)), make([][6]byte, len(in))
	b.ReportAllocs()
	b.SetBytes(int64(len(in) * 1000))
	for b.Loop() {
		if n, err := u.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom); err != nil || n != len(in) {
			b.Fatalf("ReadTrunk = %d, %v; want %d", n, err, len(in))
		}
	}
}

// BenchmarkWriteTrunkNoSocket measures WriteTrunk's stages on batches of
// 64 unicast 1000-byte frames to one peer (sealed: AES-256-GCM in place).
func BenchmarkWriteTrunkNoSocket(b *testing.B) {
	b.Run("unsealed", func(b *testing.B) { benchWriteNoSocket(b, newLoop(b, nil)) })
	b.Run("sealed", func(b *testing.B) {
		benchWriteNoSocket(b, newLoop(b, nil, func(c *Config) { c.Seal = &SealConfig{Keys: sealKeys(b, testSecret, false, 1)} }))
	})
}

func benchWriteNoSocket(b *testing.B, u *Uplink) {
	peer := fence.Params{}.OuterMAC(2)
	u.learn(peer, mustAP("192.0.2.9:7407"), time.Now())
	const n = 64
	bufs := make([][]byte, n)
	fences, hosts := make([]uint32, n), make([][6]byte, n)
	for i := range bufs {
		bufs[i] = append(make([]byte, vswitch.Headroom, vswitch.Headroom+1000+fence.SealTagLen), frame(1000, 2, 1, byte(i))...)
		fences[i], hosts[i] = 1, peer
	}
	b.ReportAllocs()
	b.SetBytes(n * 1000)
	for b.Loop() {
		if got, err := u.WriteTrunk(bufs, fences, hosts, vswitch.Headroom); err != nil || got != n {
			b.Fatalf("WriteTrunk = %d, %v; want %d", got, err, n)
		}
	}
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
