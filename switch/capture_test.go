package vswitch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// readAll reads every frame the capture holds now (short wait per frame).
func readAll(t *testing.T, c *vswitch.Capture) []vswitch.CapturedFrame {
	t.Helper()
	var out []vswitch.CapturedFrame
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		fr, err := c.Read(ctx)
		cancel()
		if err != nil {
			return out
		}
		out = append(out, fr)
	}
}

func srcs(frames []vswitch.CapturedFrame) []vswitch.MAC {
	var out []vswitch.MAC
	for _, f := range frames {
		out = append(out, vswitch.MAC(f.Data[6:12]))
	}
	return out
}

func TestCaptureFence(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	l := newLab(t, s)
	l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	l.port("b1", vswitch.PortConfig{Fence: 2})
	l.port("b2", vswitch.PortConfig{Fence: 2})
	l.withTrunk()
	c, err := s.Capture(vswitch.CaptureSelector{Fence: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c2, err := s.Capture(vswitch.CaptureSelector{Fence: 1}, 20) // a second one, truncated
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	l.send("a1", frame(vswitch.Broadcast, mac(1), 1))
	l.send("b1", frame(vswitch.Broadcast, mac(0x11), 2))
	l.send("a2", frame(mac(1), mac(2), 3))
	l.send("b2", frame(mac(0x11), mac(0x12), 4))
	l.fromTrunk(1, hostA, frame(mac(1), mac(0x51), 5))
	l.fromTrunk(2, hostA, frame(mac(0x11), mac(0x52), 6))
	l.deliveries()

	got := readAll(t, c)
	want := []vswitch.MAC{mac(1), mac(2), mac(0x51)}
	if g := srcs(got); len(g) != len(want) || g[0] != want[0] || g[1] != want[1] || g[2] != want[2] {
		t.Fatalf("fence 1 capture: sources %v, want %v", g, want)
	}
	for i, fr := range got {
		if tagOf(fr.Data) != uint32([]int{1, 3, 5}[i]) || fr.Len != len(fr.Data) || fr.Time.IsZero() {
			t.Errorf("frame %d: tag %d len %d/%d time %v", i, tagOf(fr.Data), len(fr.Data), fr.Len, fr.Time)
		}
	}
	got2 := readAll(t, c2)
	if len(got2) != 3 || len(got2[0].Data) != 20 || got2[0].Len <= 20 {
		t.Fatalf("snaplen 20 capture: %d frames, first %d of %d bytes", len(got2), len(got2[0].Data), got2[0].Len)
	}

	// After Close: nothing more is captured and Read ends.
	c.Close()
	l.send("a1", frame(vswitch.Broadcast, mac(1), 7))
	l.deliveries()
	if _, err := c.Read(context.Background()); !errors.Is(err, vswitch.ErrCaptureClosed) {
		t.Fatalf("Read after Close: %v, want ErrCaptureClosed", err)
	}
	if n := len(readAll(t, c2)); n != 1 {
		t.Fatalf("second capture after the first closed: %d frames, want 1", n)
	}
}

func TestCapturePort(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	l := newLab(t, s)
	a1 := l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	l.port("a3", vswitch.PortConfig{Fence: 1})
	c, err := s.Capture(vswitch.CaptureSelector{Port: a1.ID()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l.send("a1", frame(vswitch.Broadcast, mac(1), 1)) // in from a1
	l.send("a2", frame(mac(1), mac(2), 2))            // out to a1
	l.send("a3", frame(mac(2), mac(3), 3))            // a3 → a2: not a1's
	l.deliveries()
	got := readAll(t, c)
	if len(got) != 2 || tagOf(got[0].Data) != 1 || tagOf(got[1].Data) != 2 {
		t.Fatalf("port capture: %d frames %v, want tags 1, 2", len(got), srcs(got))
	}
}

func TestCaptureErrors(t *testing.T) {
	s := newSwitch(t, vswitch.Config{})
	for _, tc := range []struct {
		sel  vswitch.CaptureSelector
		want error
	}{
		{vswitch.CaptureSelector{}, vswitch.ErrBadSelector},
		{vswitch.CaptureSelector{Fence: 1, Port: 1}, vswitch.ErrBadSelector},
		{vswitch.CaptureSelector{Fence: 9}, vswitch.ErrUnknownFence},
		{vswitch.CaptureSelector{Port: 99}, vswitch.ErrUnknownPort},
	} {
		if _, err := s.Capture(tc.sel, 0); !errors.Is(err, tc.want) {
			t.Errorf("Capture(%+v): %v, want %v", tc.sel, err, tc.want)
		}
	}
}

func TestCaptureSlowReaderDrops(t *testing.T) {
	s := newSwitch(t, vswitch.Config{}, unlimitedFences...)
	l := newLab(t, s)
	l.port("a1", vswitch.PortConfig{Fence: 1})
	l.port("a2", vswitch.PortConfig{Fence: 1})
	c, err := s.Capture(vswitch.CaptureSelector{Fence: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const batches, per = 140, 32 // 4480 frames, more than CaptureQueue
	frames := paddedFrames(vswitch.Broadcast, 64, per)
	for i := 0; i < batches; i++ {
		l.send("a1", frames...)
		l.ports["a2"].Drain(nil) // the data path keeps flowing
	}
	total := uint64(batches * per)
	if got := portStatus(t, s, "a2").TxFrames; got != total {
		t.Fatalf("a2 got %d frames, want %d: capture must not slow or drop forwarding", got, total)
	}
	n := uint64(len(readAll(t, c)))
	if n != vswitch.CaptureQueue || c.Dropped() != total-n {
		t.Fatalf("captured %d dropped %d, want %d and %d", n, c.Dropped(), vswitch.CaptureQueue, total-vswitch.CaptureQueue)
	}
}

// TestCaptureOffNoAllocs: a closed capture leaves the data path allocation-free.
func TestCaptureOffNoAllocs(t *testing.T) {
	l := forwardLab(t)
	c, err := l.s.Capture(vswitch.CaptureSelector{Fence: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	frames := paddedFrames(vswitch.Broadcast, 64, 8)
	run := func() {
		l.ports["a1"].Inject(frames)
		l.ports["a2"].Drain(nil)
		l.ports["a3"].Drain(nil)
		l.trunk.Drain(nil)
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("AllocsPerRun after capture closed: %v, want 0", n)
	}
}
