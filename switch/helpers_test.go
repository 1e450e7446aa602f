package vswitch_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// Documentation MACs (RFC 7042) and QEMU-style MACs.
func mac(last byte) vswitch.MAC { return vswitch.MAC{0x00, 0x00, 0x5e, 0x00, 0x53, last} }

var (
	hostA = vswitch.MAC{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x0a}
	hostB = vswitch.MAC{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x0b}
	mcast = vswitch.MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
)

// frame returns an Ethernet frame dst ← src with EtherType 0x88b5 and a
// 4-byte payload tag.
func frame(dst, src vswitch.MAC, tag uint32) []byte {
	b := make([]byte, 0, 64)
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	b = append(b, 0x88, 0xb5)
	b = binary.BigEndian.AppendUint32(b, tag)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func tagOf(f []byte) uint32 { return binary.BigEndian.Uint32(f[14:18]) }

// paddedFrames returns n frames from mac(1) to dst, tagged 0 to n-1 and
// zero-padded to size bytes.
func paddedFrames(dst vswitch.MAC, size, n int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = make([]byte, size)
		copy(frames[i], frame(dst, mac(1), uint32(i)))
	}
	return frames
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newSwitch returns a switch with fences 1 ("one"), 2 ("two"), 3
// ("three"), closed at the end of the test.
func newSwitch(t testing.TB, cfg vswitch.Config, fences ...vswitch.FenceConfig) *vswitch.Switch {
	t.Helper()
	s, err := vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if fences == nil {
		fences = []vswitch.FenceConfig{{ID: 1, Name: "one"}, {ID: 2, Name: "two"}, {ID: 3, Name: "three"}}
	}
	for _, fc := range fences {
		if err := s.AddFence(fc); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// unlimitedFences are newSwitch's default fences without storm control,
// for tests that flood faster than the default bum_rate.
var unlimitedFences = []vswitch.FenceConfig{
	{ID: 1, Name: "one", BUMRate: -1}, {ID: 2, Name: "two", BUMRate: -1}, {ID: 3, Name: "three", BUMRate: -1},
}

// lab is a set of static ports, by name.
type lab struct {
	t     testing.TB
	s     *vswitch.Switch
	ports map[string]*vswitch.StaticPort
	trunk *vswitch.StaticTrunk
}

func newLab(t testing.TB, s *vswitch.Switch) *lab {
	return &lab{t: t, s: s, ports: map[string]*vswitch.StaticPort{}}
}

func (l *lab) port(name string, pc vswitch.PortConfig) *vswitch.StaticPort {
	l.t.Helper()
	pc.Name = name
	p, err := l.s.AttachStatic(pc, 32)
	if err != nil {
		l.t.Fatal(err)
	}
	l.ports[name] = p
	return p
}

func (l *lab) withTrunk() *vswitch.StaticTrunk {
	l.t.Helper()
	tr, err := l.s.AttachStaticTrunk(32)
	if err != nil {
		l.t.Fatal(err)
	}
	l.trunk = tr
	return tr
}

func (l *lab) send(from string, frames ...[]byte) { l.ports[from].Inject(frames) }

// fromTrunk injects frames of fence from the remote host as one trunk batch.
func (l *lab) fromTrunk(fence uint32, host vswitch.MAC, frames ...[]byte) {
	fences := make([]uint32, len(frames))
	hosts := make([][6]byte, len(frames))
	for i := range frames {
		fences[i], hosts[i] = fence, host
	}
	l.trunk.Inject(frames, fences, hosts)
}

// deliveries drains every port and the trunk and describes what each got
// as "name:tag" strings, sorted ("trunk[fence/host]:tag" for the trunk).
func (l *lab) deliveries() []string {
	var out []string
	for name, p := range l.ports {
		p.Drain(func(f []byte) { out = append(out, fmt.Sprintf("%s:%d", name, tagOf(f))) })
	}
	if l.trunk != nil {
		l.trunk.Drain(func(f []byte, fence uint32, host vswitch.MAC) {
			h := "bcast"
			if host != vswitch.Broadcast {
				h = host.String()
			}
			out = append(out, fmt.Sprintf("trunk[%d/%s]:%d", fence, h, tagOf(f)))
		})
	}
	slices.Sort(out)
	return out
}

func (l *lab) expect(what string, want ...string) {
	l.t.Helper()
	got := l.deliveries()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		l.t.Errorf("%s: got deliveries %v, want %v", what, got, want)
	}
}

// fdb returns the fence's table as "mac@port" / "mac@host" strings.
func fdb(s *vswitch.Switch, fence uint32) []string {
	var out []string
	for _, e := range s.FDB(fence) {
		if e.Port != 0 {
			out = append(out, e.MAC+"@"+e.PortName)
		} else {
			out = append(out, e.MAC+"@"+e.Host)
		}
	}
	return out
}

func portStatus(t testing.TB, s *vswitch.Switch, name string) vswitch.PortStatus {
	t.Helper()
	for _, p := range s.Status().Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no port %q in status", name)
	return vswitch.PortStatus{}
}

func fenceStatus(t testing.TB, s *vswitch.Switch, id uint32) vswitch.FenceStatus {
	t.Helper()
	for _, f := range s.Status().Fences {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no fence %d in status", id)
	return vswitch.FenceStatus{}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// goroutineLeakCheck fails the test if goroutines started during it are
// still running at its end (after cleanups registered later have run).
func goroutineLeakCheck(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var stacks string
		for i := 0; i < 500; i++ {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		t.Errorf("goroutine leak: %d before, %d after:\n%s", before, runtime.NumGoroutine(),
			strings.TrimSpace(stacks))
	})
}
