package vswitch_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/porttest"
)

// settlerPort is a porttest.Port that is a vswitch.Settler the test
// settles by hand.
type settlerPort struct {
	*porttest.Port
	once  sync.Once
	ch    chan struct{}
	probe bool
}

func newSettlerPort() *settlerPort {
	return &settlerPort{Port: porttest.NewPort(8, 64), ch: make(chan struct{})}
}

func (p *settlerPort) settle(probe bool) {
	p.once.Do(func() { p.probe = probe; close(p.ch) })
}
func (p *settlerPort) Settled() <-chan struct{} { return p.ch }
func (p *settlerPort) Probe() bool              { return p.probe }

// recordHandler is a slog handler that keeps each record as its message
// and its "name" attribute.
type recordHandler struct {
	mu   sync.Mutex
	recs [][2]string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	name := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "name" {
			name = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, [2]string{r.Message, name})
	h.mu.Unlock()
	return nil
}

// count is the number of records whose message contains msg and whose
// name is name.
func (h *recordHandler) count(msg, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if strings.Contains(r[0], msg) && r[1] == name {
			n++
		}
	}
	return n
}

func (h *recordHandler) text() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.recs {
		b.WriteString(r[0] + " name=" + r[1] + "\n")
	}
	return b.String()
}

// A port that may still turn out a liveness probe (vswitch.Settler)
// switches frames from its attach — a quiet receiver misses nothing — and
// is announced (log line, PortHandle.Announced) only once it settles as a
// client; one that ends as a probe leaves no attach or detach line; one
// that settles as a client and ends at once is announced before its
// detach.
func TestSettlerAnnounce(t *testing.T) {
	goroutineLeakCheck(t)
	logs := &recordHandler{}
	s := newSwitch(t, vswitch.Config{Logger: slog.New(logs)})
	a := porttest.NewPort(8, 64)
	attach(t, s, a, vswitch.PortConfig{Name: "a", Fence: 1})

	quiet := newSettlerPort()
	hq := attach(t, s, quiet, vswitch.PortConfig{Name: "quiet", Fence: 1})
	a.In <- frame(vswitch.Broadcast, mac(1), 1)
	if got := tagOf(recv(t, quiet.Out, "broadcast at the unsettled port")); got != 1 {
		t.Fatalf("quiet got tag %d, want 1", got)
	}
	select {
	case <-hq.Announced():
		t.Fatal("announced before it settled")
	default:
	}
	if logs.count("port attached", "quiet") != 0 {
		t.Fatalf("attach logged before the port settled:\n%s", logs.text())
	}
	quiet.settle(false)
	select {
	case <-hq.Announced():
	case <-time.After(waitTimeout):
		t.Fatal("a port settled as a client was not announced")
	}
	if logs.count("port attached", "quiet") != 1 {
		t.Fatalf("attach of the settled port not logged once:\n%s", logs.text())
	}

	probe := newSettlerPort()
	hp := attach(t, s, probe, vswitch.PortConfig{Name: "probe", Fence: 1})
	probe.settle(true)
	probe.FailRead(io.EOF)
	<-hp.Done()
	select {
	case <-hp.Announced():
		t.Fatal("a probe was announced")
	default:
	}
	if logs.count("port attached", "probe") != 0 || logs.count("port detached", "probe") != 0 ||
		logs.count("a liveness probe", "probe") != 1 {
		t.Fatalf("a probe's lines:\n%s", logs.text())
	}

	// Settled as a client and ended before the switch's waiter ran: the
	// detach announces it first.
	for i := range 20 {
		brief := newSettlerPort()
		hb := attach(t, s, brief, vswitch.PortConfig{Name: "brief", Fence: 1})
		brief.settle(false)
		brief.FailRead(io.EOF)
		<-hb.Done()
		if n, m := logs.count("port attached", "brief"), logs.count("port detached", "brief"); n != i+1 || m != i+1 {
			t.Fatalf("round %d: %d attach and %d detach lines of a brief client:\n%s", i, n, m, logs.text())
		}
		select {
		case <-hb.Announced():
		default:
			t.Fatal("a brief client was not announced")
		}
	}
}
