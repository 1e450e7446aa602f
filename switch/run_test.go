package vswitch_test

import (
	"errors"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/porttest"
)

const waitTimeout = 30 * time.Second

func attach(t *testing.T, s *vswitch.Switch, p vswitch.Port, pc vswitch.PortConfig) *vswitch.PortHandle {
	t.Helper()
	h, err := s.Attach(p, pc)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recv receives one frame from ch or fails after the timeout.
func recv(t *testing.T, ch <-chan []byte, what string) []byte {
	t.Helper()
	select {
	case f := <-ch:
		return f
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// none checks that nothing arrives on ch for a short while.
func none(t *testing.T, ch <-chan []byte, what string) {
	t.Helper()
	select {
	case f := <-ch:
		t.Errorf("%s: got frame tag %d, want none", what, tagOf(f))
	case <-time.After(50 * time.Millisecond):
	}
}

func TestPortsEndToEnd(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{})
	a, b, c := porttest.NewPort(8, 64), porttest.NewPort(8, 64), porttest.NewPort(8, 64)
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 1})
	attach(t, s, c, vswitch.PortConfig{Name: "c", Fence: 2})
	a.In <- frame(vswitch.Broadcast, mac(1), 1)
	if got := tagOf(recv(t, b.Out, "broadcast at b")); got != 1 {
		t.Errorf("b got tag %d, want 1", got)
	}
	b.In <- frame(mac(1), mac(2), 2)
	if got := tagOf(recv(t, a.Out, "reply at a")); got != 2 {
		t.Errorf("a got tag %d, want 2", got)
	}
	none(t, c.Out, "fence 2 port")
	none(t, a.Out, "sender")
}

func TestQueueFullIsolation(t *testing.T) {
	goroutineLeakCheck(t)
	const queueLen, total, burst = 64, 3000, 50
	s := newSwitch(t, vswitch.Config{QueueLen: queueLen})
	src := porttest.NewPort(16, 0)
	good := porttest.NewPort(16, 1024)
	stuck := porttest.NewPort(16, 0) // nobody ever receives from stuck.Out
	attach(t, s, src, vswitch.PortConfig{Name: "src", Fence: 1})
	attach(t, s, good, vswitch.PortConfig{Name: "good", Fence: 1})
	attach(t, s, stuck, vswitch.PortConfig{Name: "stuck", Fence: 1})
	// Learn good's MAC so half the frames are unicast to it.
	good.In <- frame(mac(1), mac(2), 0)
	waitFor(t, waitTimeout, "good's MAC to be learned", func() bool { return len(s.FDB(1)) == 1 })

	sendBursts(t, src, good.Out, total, burst)
	st := portStatus(t, s, "stuck")
	// stuck holds at most queueLen queued frames plus one batch in its
	// blocked Write; every other broadcast was dropped on its queue.
	if min := uint64(total/2 - queueLen - 16); st.Drops["queue_full"] < min {
		t.Errorf("stuck queue_full drops: got %d, want >= %d", st.Drops["queue_full"], min)
	}
	noDrops(t, s, "good", "src")
}

// sendBursts sends total frames from src in bursts of burst, tagged 0, 1,
// 2 … and alternately broadcast and unicast to mac(2), and after each
// burst receives every frame sent so far from good, checking that none is
// lost, duplicated or reordered.
func sendBursts(t *testing.T, src *porttest.Port, good <-chan []byte, total, burst int) {
	t.Helper()
	got := 0
	for sent := 0; sent < total; {
		for i := 0; i < burst; i++ {
			dst := vswitch.Broadcast
			if sent%2 == 1 {
				dst = mac(2)
			}
			src.In <- frame(dst, mac(1), uint32(sent))
			sent++
		}
		for got < sent {
			f := recv(t, good, "frames at the good port")
			if tag := tagOf(f); tag != uint32(got) {
				t.Fatalf("good port: got tag %d, want %d (lost, duplicated or reordered)", tag, got)
			}
			got++
		}
	}
}

// waitDetached waits for h's port to be detached and checks that its
// error is want.
func waitDetached(t *testing.T, h *vswitch.PortHandle, want error, after string) {
	t.Helper()
	select {
	case <-h.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("port not detached after %s", after)
	}
	if !errors.Is(h.Err(), want) {
		t.Errorf("Err: got %v, want %v", h.Err(), want)
	}
}

// noDrops checks that the named ports dropped nothing.
func noDrops(t *testing.T, s *vswitch.Switch, names ...string) {
	t.Helper()
	for _, name := range names {
		if d := portStatus(t, s, name).Drops; len(d) != 0 {
			t.Errorf("%s drops: got %v, want none", name, d)
		}
	}
}

func TestDetachOnReadError(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{})
	a, b := porttest.NewPort(4, 64), porttest.NewPort(4, 64)
	ha := attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 1})
	a.In <- frame(vswitch.Broadcast, mac(1), 1)
	recv(t, b.Out, "broadcast")
	errBad := errors.New("framing error: length 0")
	a.FailRead(errBad)
	waitDetached(t, ha, errBad, "a Read error")
	select {
	case <-a.Closed():
	default:
		t.Error("port not closed after detach")
	}
	if got := s.FDB(1); len(got) != 0 {
		t.Errorf("MACs of the detached port remain: %v", got)
	}
	if got := len(s.Status().Ports); got != 1 {
		t.Errorf("ports in status: got %d, want 1", got)
	}
	// Close of a detached handle is fine.
	if err := ha.Close(); err != nil {
		t.Errorf("Close after detach: %v", err)
	}
}

func TestDetachOnWriteError(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{})
	a, b := porttest.NewPort(4, 64), porttest.NewPort(4, 64)
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	hb := attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 1})
	errGone := errors.New("broken pipe")
	b.FailWrite(errGone)
	a.In <- frame(vswitch.Broadcast, mac(1), 1)
	waitDetached(t, hb, errGone, "a Write error")
	if got, want := s.LocalFences(), []uint32{1}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("LocalFences: got %v, want %v", got, want)
	}
}

func TestHandleClose(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{})
	a := porttest.NewPort(4, 0)
	h := attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 2})
	if h.ID() == 0 {
		t.Error("port ID 0")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if h.Err() != nil {
		t.Errorf("Err after Close: got %v, want nil", h.Err())
	}
	if got := s.LocalFences(); len(got) != 0 {
		t.Errorf("LocalFences after close: got %v", got)
	}
}

func TestTrunkEndToEnd(t *testing.T) {
	goroutineLeakCheck(t)
	s := newSwitch(t, vswitch.Config{})
	tr := porttest.NewTrunk(8, 64)
	if err := s.AttachTrunk(tr); err != nil {
		t.Fatal(err)
	}
	if err := s.AttachTrunk(porttest.NewTrunk(1, 1)); !errors.Is(err, vswitch.ErrTrunkAttached) {
		t.Errorf("second trunk: got %v, want ErrTrunkAttached", err)
	}
	a, b := porttest.NewPort(8, 64), porttest.NewPort(8, 64)
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})
	attach(t, s, b, vswitch.PortConfig{Name: "b", Fence: 2})
	r := mac(0x51)
	tr.In <- porttest.Frame{Fence: 2, Host: hostA, Data: frame(vswitch.Broadcast, r, 1)}
	if got := tagOf(recv(t, b.Out, "trunk broadcast in fence 2")); got != 1 {
		t.Errorf("b got tag %d", got)
	}
	none(t, a.Out, "fence 1 port")
	b.In <- frame(r, mac(2), 2)
	select {
	case f := <-tr.Out:
		if f.Fence != 2 || f.Host != hostA || tagOf(f.Data) != 2 {
			t.Errorf("trunk out: got fence %d host %s tag %d, want fence 2 host %s tag 2", f.Fence, f.Host, tagOf(f.Data), hostA)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no frame on the trunk")
	}
	a.In <- frame(vswitch.Broadcast, mac(3), 3)
	select {
	case f := <-tr.Out:
		if f.Fence != 1 || f.Host != vswitch.Broadcast || tagOf(f.Data) != 3 {
			t.Errorf("trunk flood: got fence %d host %s tag %d, want fence 1 host %s tag 3", f.Fence, f.Host, tagOf(f.Data), vswitch.Broadcast)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no flood on the trunk")
	}
	// A trunk read error detaches it; ports keep working.
	tr.FailRead(errors.New("uplink down"))
	waitFor(t, waitTimeout, "trunk detached", func() bool { return s.Status().Trunk == nil })
	select { // the trunk leaves the status before its Close has run
	case <-tr.Closed():
	case <-time.After(waitTimeout):
		t.Error("trunk not closed after detach")
	}
	tr2 := porttest.NewTrunk(8, 64)
	if err := s.AttachTrunk(tr2); err != nil {
		t.Fatalf("re-attach trunk: %v", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	goroutineLeakCheck(t)
	s, err := vswitch.New(vswitch.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddFence(vswitch.FenceConfig{ID: 1}); err != nil {
		t.Fatal(err)
	}
	var ports []*porttest.Port
	var handles []*vswitch.PortHandle
	for i := 0; i < 5; i++ {
		p := porttest.NewPort(4, 0) // writers will block
		ports = append(ports, p)
		handles = append(handles, attach(t, s, p, vswitch.PortConfig{Fence: 1}))
	}
	tr := porttest.NewTrunk(4, 0)
	if err := s.AttachTrunk(tr); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		ports[0].In <- frame(vswitch.Broadcast, mac(1), uint32(i))
	}
	waitFor(t, waitTimeout, "frames read", func() bool { return portStatus(t, s, "").RxFrames > 0 })
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return with blocked writers")
	}
	for i, h := range handles {
		select {
		case <-h.Done():
		default:
			t.Errorf("port %d not done after Close", i)
		}
		if h.Err() != nil {
			t.Errorf("port %d Err: got %v, want nil", i, h.Err())
		}
	}
	if _, err := s.Attach(porttest.NewPort(1, 1), vswitch.PortConfig{Fence: 1}); !errors.Is(err, vswitch.ErrClosed) {
		t.Errorf("Attach after Close: got %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
