package vswitch_test

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/porttest"
)

func TestFencePortLimit(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{MaxFencePorts: 2})
	a := attach(t, s, porttest.NewPort(8, 64), vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, porttest.NewPort(8, 64), vswitch.PortConfig{Name: "b", Fence: 1})
	// Another fence has its own count.
	attach(t, s, porttest.NewPort(8, 64), vswitch.PortConfig{Name: "other", Fence: 2})
	for i := 0; i < 3; i++ {
		_, err := s.Attach(porttest.NewPort(8, 64), vswitch.PortConfig{Name: "c", Fence: 1})
		var pl *vswitch.PortLimitError
		if !errors.As(err, &pl) || !errors.Is(err, vswitch.ErrPortLimit) || pl.Fence != 1 || pl.Max != 2 {
			t.Fatalf("third port: got %v, want a PortLimitError for fence 1, max 2", err)
		}
	}
	st := s.Status()
	if f := st.Fences[0]; f.PortsRefused != 3 || f.MaxPorts != 2 || f.Ports != 2 {
		t.Errorf("fence 1: ports %d, max_ports %d, ports_refused %d; want 2, 2, 3", f.Ports, f.MaxPorts, f.PortsRefused)
	}
	if f := st.Fences[1]; f.PortsRefused != 0 {
		t.Errorf("fence 2: ports_refused %d, want 0", f.PortsRefused)
	}
	a.Close()
	attach(t, s, porttest.NewPort(8, 64), vswitch.PortConfig{Name: "c", Fence: 1})
}

// TestReadWaiterHoldsNoBuffers checks that the reader of a ReadWaiter
// port holds no frame buffers while it waits, before and after traffic.
func TestReadWaiterHoldsNoBuffers(t *testing.T) {
	goroutineLeakCheck(t)
	var mu sync.Mutex
	var waits, maxHeld int
	vswitch.SetWaitHook(func(held int) {
		mu.Lock()
		waits++
		maxHeld = max(maxHeld, held)
		mu.Unlock()
	})
	t.Cleanup(func() { vswitch.SetWaitHook(nil) })
	s := newSwitch(t, vswitch.Config{})
	a, b := porttest.NewWaitPort(16, 1024), porttest.NewWaitPort(16, 1024)
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 1})
	for i := 0; i < 100; i++ {
		a.In <- paddedFrames(vswitch.Broadcast, 1500+i*100, 1)[0]
		recv(t, b.Out, "flood at b")
	}
	b.In <- frame(mac(1), mac(2), 1)
	recv(t, a.Out, "reply at a")
	waitFor(t, waitTimeout, "readers to wait again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return waits >= 2+101
	})
	mu.Lock()
	defer mu.Unlock()
	if maxHeld != 0 {
		t.Errorf("a waiting reader held %d frame buffers, want 0", maxHeld)
	}
}

// chanWaitPort is a ReadWaiter port over channels that allocates nothing:
// Read takes frames from in, Write counts frames.
type chanWaitPort struct {
	in      chan []byte
	head    []byte
	written atomic.Int64
	wrote   chan struct{} // a token after each Write
	closed  chan struct{}
	once    sync.Once
}

func newChanWaitPort() *chanWaitPort {
	return &chanWaitPort{in: make(chan []byte, 64), wrote: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (p *chanWaitPort) WaitRead() error {
	if p.head != nil {
		return nil
	}
	select {
	case p.head = <-p.in:
		return nil
	case <-p.closed:
		return net.ErrClosed
	}
}

func (p *chanWaitPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.head == nil {
		if err := p.WaitRead(); err != nil {
			return 0, err
		}
	}
	n := 0
	for f := p.head; ; {
		sizes[n] = copy(bufs[n][offset:], f)
		n++
		if n == len(bufs) {
			break
		}
		select {
		case f = <-p.in:
			continue
		default:
		}
		break
	}
	p.head = nil
	return n, nil
}

func (p *chanWaitPort) Write(bufs [][]byte, offset int) (int, error) {
	p.written.Add(int64(len(bufs)))
	select {
	case p.wrote <- struct{}{}:
	default:
	}
	return len(bufs), nil
}

func (p *chanWaitPort) BatchSize() int { return 64 }

func (p *chanWaitPort) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// TestReadWaiterNoAllocs: switching through the goroutines of ReadWaiter
// ports, which take their buffers from the pool per batch, allocates
// nothing in the steady state.
func TestReadWaiterNoAllocs(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	a, b := newChanWaitPort(), newChanWaitPort()
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 1})
	b.in <- frame(mac(1), mac(2), 0) // learn b's MAC
	waitFor(t, waitTimeout, "b's MAC to be learned", func() bool { return len(s.FDB(1)) == 1 })
	for _, size := range []int{64, 1500, 9000} {
		frames := paddedFrames(mac(2), size, 8)
		var want int64
		run := func() {
			for _, f := range frames {
				a.in <- f
			}
			want += int64(len(frames))
			for b.written.Load() < want {
				<-b.wrote
			}
		}
		want = b.written.Load()
		run()
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%d-byte frames: AllocsPerRun: got %v, want 0", size, n)
		}
	}
}
