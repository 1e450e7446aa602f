package vswitch_test

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/porttest"
)

// TestIsolationConcurrent runs the isolation property through the real
// goroutines (readers, writers, janitor) with porttest fakes: ports of
// three fences and a trunk send random tagged frames at once; every
// receiver checks the origin fence. Smaller than TestIsolation, it is
// about races between readers, writers, detaches and Close.
func TestIsolationConcurrent(t *testing.T) {
	goroutineLeakCheck(t)
	const (
		numFences = 3
		perFence  = 3
		perSender = 5000
	)
	s := newSwitch(t, vswitch.Config{QueueLen: 128})
	tr := porttest.NewTrunk(16, 256)
	if err := s.AttachTrunk(tr); err != nil {
		t.Fatal(err)
	}
	macs := []vswitch.MAC{vswitch.Broadcast, mcast, mac(1), mac(2), mac(3), mac(4), mac(5), mac(6)}
	mk := func(rng *rand.Rand, fence uint32) []byte {
		n := 18 + rng.IntN(100)
		if rng.IntN(20) == 0 {
			n = rng.IntN(vswitch.MinFrameSize) // runt: never delivered
		}
		b := make([]byte, n)
		if n >= 18 {
			copy(b[0:6], macs[rng.IntN(len(macs))][:])
			copy(b[6:12], macs[2+rng.IntN(len(macs)-2)][:])
			binary.BigEndian.PutUint32(b[n-4:], fence)
		}
		return b
	}

	var bad atomic.Value
	var delivered atomic.Int64
	var recvWG, sendWG sync.WaitGroup
	stop := make(chan struct{})
	receive := func(out <-chan []byte, fence uint32) {
		defer recvWG.Done()
		for {
			select {
			case f := <-out:
				delivered.Add(1)
				if got := binary.BigEndian.Uint32(f[len(f)-4:]); got != fence {
					bad.Store([2]uint32{fence, got})
				}
			case <-stop:
				return
			}
		}
	}
	var handles []*vswitch.PortHandle
	for f := uint32(1); f <= numFences; f++ {
		for i := 0; i < perFence; i++ {
			p := porttest.NewPort(16, 256)
			handles = append(handles, attach(t, s, p, vswitch.PortConfig{Fence: f}))
			recvWG.Add(1)
			go receive(p.Out, f)
			sendWG.Add(1)
			go func(seed uint64, fence uint32) {
				defer sendWG.Done()
				rng := rand.New(rand.NewPCG(seed, 7))
				for j := 0; j < perSender; j++ {
					select {
					case p.In <- mk(rng, fence):
					case <-p.Closed():
						return
					}
				}
			}(uint64(f)*10+uint64(i), f)
		}
	}
	recvWG.Add(1)
	go func() {
		defer recvWG.Done()
		for {
			select {
			case f := <-tr.Out:
				delivered.Add(1)
				if got := binary.BigEndian.Uint32(f.Data[len(f.Data)-4:]); got != f.Fence {
					bad.Store([2]uint32{f.Fence, got})
				}
			case <-stop:
				return
			}
		}
	}()
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for j := 0; j < perSender; j++ {
			fence := uint32(1 + rng.IntN(numFences+1))
			f := mk(rng, fence)
			if len(f) < vswitch.MinFrameSize {
				continue // the trunk contract: inner frames are at least 14 bytes
			}
			tr.In <- porttest.Frame{Fence: fence, Host: hostA, Data: f}
		}
	}()
	// Detach one port while traffic flows: once frames are being delivered.
	waitFor(t, waitTimeout, "traffic to flow", func() bool { return delivered.Load() >= 100 })
	handles[0].Close()

	sendWG.Wait()
	waitFor(t, waitTimeout, "the switch to read every frame", func() bool {
		var rx uint64
		st := s.Status()
		for _, p := range st.Ports {
			rx += p.RxFrames
		}
		return rx >= uint64((numFences*perFence-1)*perSender) && st.Trunk.RxFrames > 0
	})
	s.Close()
	close(stop)
	recvWG.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a port of fence %d received a frame of fence %d", v.([2]uint32)[0], v.([2]uint32)[1])
	}
	if delivered.Load() < perSender {
		t.Errorf("only %d frames delivered", delivered.Load())
	}
	t.Logf("%d frames delivered", delivered.Load())
}

// benchPort is a Port for pipeline benchmarks: Read returns copies of one
// frame, a full batch per call, until total frames are read, then blocks
// until Close; Write counts frames. Neither allocates.
type benchPort struct {
	frame   []byte
	batch   int
	left    atomic.Int64
	written atomic.Int64
	closed  chan struct{}
	once    sync.Once
}

func newBenchPort(frame []byte, batch int, total int64) *benchPort {
	p := &benchPort{frame: frame, batch: batch, closed: make(chan struct{})}
	p.left.Store(total)
	return p
}

func (p *benchPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := int(min(int64(len(bufs)), p.left.Load()))
	if n <= 0 {
		<-p.closed
		return 0, errClosedBench
	}
	p.left.Add(int64(-n))
	for i := 0; i < n; i++ {
		sizes[i] = copy(bufs[i][offset:], p.frame)
	}
	return n, nil
}

func (p *benchPort) Write(bufs [][]byte, offset int) (int, error) {
	p.written.Add(int64(len(bufs)))
	return len(bufs), nil
}

func (p *benchPort) BatchSize() int { return p.batch }
func (p *benchPort) Close() error   { p.once.Do(func() { close(p.closed) }); return nil }

var errClosedBench = errClosedT{}

type errClosedT struct{}

func (errClosedT) Error() string { return "closed" }

// BenchmarkPipeline measures the whole switch with its goroutines: one
// port reads b.N unicast frames as fast as it can, the other's Write
// counts them. Frames the destination's writer cannot keep up with are
// dropped (queue_full) and reported as drops/op.
//
// In the direct/ variants the destination implements vswitch.TryWriter
// (and always takes everything), so the reader writes the frames itself.
func BenchmarkPipeline(b *testing.B) {
	for _, bc := range []struct {
		name   string
		size   int
		direct bool
	}{{"64", 64, false}, {"1500", 1500, false}, {"direct/64", 64, true}, {"direct/1500", 1500, true}} {
		size := bc.size
		b.Run(bc.name, func(b *testing.B) {
			s := newSwitch(b, vswitch.Config{QueueLen: 1024})
			dst := newBenchPort(frame(mac(2), mac(1), 0), 64, 1)
			dst.frame = make([]byte, 60)
			copy(dst.frame, frame(mac(1), mac(2), 0))
			var dp vswitch.Port = dst
			if bc.direct {
				dp = benchTryPort{dst}
			}
			if _, err := s.Attach(dp, vswitch.PortConfig{Name: "dst", Fence: 1}); err != nil {
				b.Fatal(err)
			}
			waitFor(b, waitTimeout, "dst learned", func() bool { return len(s.FDB(1)) == 1 })
			f := make([]byte, size)
			copy(f, frame(mac(2), mac(1), 0))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			src := newBenchPort(f, 64, int64(b.N))
			if _, err := s.Attach(src, vswitch.PortConfig{Name: "src", Fence: 1}); err != nil {
				b.Fatal(err)
			}
			var st vswitch.PortStatus
			waitFor(b, 10*time.Minute, "all frames forwarded", func() bool {
				st = portStatus(b, s, "dst")
				return st.TxFrames+st.Drops["queue_full"] >= uint64(b.N)
			})
			b.StopTimer()
			b.ReportMetric(float64(st.TxFrames)/b.Elapsed().Seconds(), "frames/s")
			b.ReportMetric(float64(st.Drops["queue_full"])/float64(b.N), "drops/op")
		})
	}
}

// benchTryPort is a benchPort whose TryWrite takes every frame.
type benchTryPort struct{ *benchPort }

func (p benchTryPort) TryWrite(bufs [][]byte, offset int) (int, error) { return p.Write(bufs, offset) }
