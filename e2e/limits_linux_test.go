package e2e

// Bounded ports against the real binary (issue 8, items 3 and 4):
// limits.ports_per_listener, ports_per_fence, frame_timeout and
// datagram_idle_timeout, and the memory of idle ports.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

const limitsTimeout = 60 * time.Second

// limStatus is the part of GET /v1/status these tests read.
type limStatus struct {
	Fences []struct {
		Name         string `json:"name"`
		Ports        int    `json:"ports"`
		MaxPorts     int    `json:"max_ports"`
		PortsRefused uint64 `json:"ports_refused"`
	} `json:"fences"`
	Listeners []struct {
		Fence         string `json:"fence"`
		Addr          string `json:"addr"`
		Ports         int    `json:"ports"`
		Refused       uint64 `json:"refused"`
		FrameTimeouts uint64 `json:"frame_timeouts"`
		Expired       uint64 `json:"expired"`
	} `json:"listeners"`
}

// limCorral is a running corral with an admin socket.
type limCorral struct {
	t     *testing.T
	p     *harness.Proc
	dir   string
	admin *http.Client
}

// startLimCorral runs corral with fences (YAML list items, indented by
// two spaces, may use $D for a private socket directory) and limits (a
// YAML flow mapping, "" for none).
func startLimCorral(t *testing.T, fences, limits string) *limCorral {
	t.Helper()
	dir := harness.ShortTempDir(t)
	adminSock := filepath.Join(dir, "admin.sock")
	cfg := "fences:\n" + strings.ReplaceAll(fences, "$D", dir) +
		fmt.Sprintf("admin: {listen: \"unix://%s\"}\n", adminSock)
	if limits != "" {
		cfg += "limits: " + limits + "\n"
	}
	c := &limCorral{t: t, dir: dir, admin: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", adminSock)
		},
	}, Timeout: 30 * time.Second}}
	c.p = harness.StartCorral(t, nil, cfg)
	return c
}

func (c *limCorral) status() limStatus {
	c.t.Helper()
	resp, err := c.admin.Get("http://corral/v1/status")
	if err != nil {
		c.t.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	var st limStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatalf("GET /v1/status: %v", err)
	}
	return st
}

// fencePorts returns the ports of the first fence from GET /v1/fences,
// which, unlike /v1/status, does not list every port (cheap with 10,000).
func (c *limCorral) fencePorts() int {
	c.t.Helper()
	resp, err := c.admin.Get("http://corral/v1/fences")
	if err != nil {
		c.t.Fatalf("GET /v1/fences: %v", err)
	}
	defer resp.Body.Close()
	var fs []struct {
		Ports int `json:"ports"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&fs); err != nil || len(fs) == 0 {
		c.t.Fatalf("GET /v1/fences: %v (%d fences)", err, len(fs))
	}
	return fs[0].Ports
}

// listener returns the status of the listener whose address contains addr.
func (c *limCorral) listener(addr string) (ports int, refused, timeouts, expired uint64) {
	c.t.Helper()
	for _, l := range c.status().Listeners {
		if strings.Contains(l.Addr, addr) {
			return l.Ports, l.Refused, l.FrameTimeouts, l.Expired
		}
	}
	c.t.Fatalf("no listener %s in the status", addr)
	return
}

// rss returns corral's resident set size in bytes.
func (c *limCorral) rss() int64 {
	c.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.p.Cmd.Process.Pid))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				c.t.Fatal(err)
			}
			return kb << 10
		}
	}
	c.t.Fatal("no VmRSS")
	return 0
}

// raiseNofile raises this process's descriptor limit (corral, a Go
// program, raises its own soft limit to the hard one).
func raiseNofile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	want := lim
	want.Cur = min(n, lim.Max)
	if lim.Max < n { // root may raise the hard limit (not in every container)
		up := syscall.Rlimit{Cur: n, Max: n}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			want = up
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Logf("raise RLIMIT_NOFILE to %d: %v", want.Cur, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}

// dialMany connects n times to a unix socket; the connections are closed
// at cleanup.
func dialMany(t *testing.T, path string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i, tries := 0, 0; i < n; {
		c, err := net.Dial("unix", path)
		if errors.Is(err, syscall.EAGAIN) && tries < 1000 {
			tries++ // the listen backlog is full: corral is still accepting
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		conns = append(conns, c)
		i, tries = i+1, 0
	}
	return conns
}

// closedByPeer waits (bounded) for c to be closed by corral.
func closedByPeer(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c)
	if err != nil {
		return fmt.Errorf("not closed by corral: %w", err)
	}
	return nil
}

// stillOpen checks that corral keeps c open for d.
func stillOpen(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("closed: %v", err)
}

func TestLimitsListenerCap(t *testing.T) {
	harness.SkipShort(t, "starts corral and 1,025 connections")
	raiseNofile(t, 8192)
	c := startLimCorral(t, `  - {name: a, id: 1, listen: ["unix://$D/a.sock"], gateway: {enabled: false}}
`, "")
	path := filepath.Join(c.dir, "a.sock")
	dialMany(t, path, 1024)
	harness.WaitFor(t, limitsTimeout, "1,024 ports", func() bool { p, _, _, _ := c.listener("a.sock"); return p == 1024 })
	extra := dialMany(t, path, 1)[0]
	if err := closedByPeer(extra, limitsTimeout); err != nil {
		t.Fatalf("the 1,025th connection: %v", err)
	}
	harness.WaitFor(t, limitsTimeout, "the refusal to be counted", func() bool { _, r, _, _ := c.listener("a.sock"); return r == 1 })
	if p, _, _, _ := c.listener("a.sock"); p != 1024 {
		t.Errorf("listener ports = %d, want 1024", p)
	}
	if err := c.p.WaitLog("limits.ports_per_listener", limitsTimeout); err != nil {
		t.Errorf("refusal not logged: %v", err)
	}
}

func TestLimitsFencePorts(t *testing.T) {
	harness.SkipShort(t, "starts corral")
	c := startLimCorral(t, `  - {name: a, id: 1, listen: ["unix://$D/a.sock", "unix://$D/b.sock"], gateway: {enabled: false}}
`, "{ports_per_fence: 3}")
	dialMany(t, filepath.Join(c.dir, "a.sock"), 2)
	harness.WaitFor(t, limitsTimeout, "2 ports", func() bool { return c.status().Fences[0].Ports == 2 })
	conns := dialMany(t, filepath.Join(c.dir, "b.sock"), 2)
	harness.WaitFor(t, limitsTimeout, "3 ports and a refusal", func() bool {
		f := c.status().Fences[0]
		return f.Ports == 3 && f.PortsRefused == 1
	})
	if f := c.status().Fences[0]; f.MaxPorts != 3 {
		t.Errorf("max_ports = %d, want 3", f.MaxPorts)
	}
	// One of the two on b.sock was closed at once.
	closed := 0
	for _, conn := range conns {
		if stillOpen(conn, 200*time.Millisecond) != nil {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d connections over the fence's limit closed, want 1", closed)
	}
}

func TestLimitsDatagramSurge(t *testing.T) {
	harness.SkipShort(t, "starts corral and 1,000 UDP sources")
	raiseNofile(t, 8192)
	const max, sources, burst = 100, 1000, 50
	udp := fmt.Sprintf("127.0.0.1:%d", harness.FreeUDPPort(t))
	c := startLimCorral(t, fmt.Sprintf(`  - {name: a, id: 1, listen: ["udp://%s"], gateway: {enabled: false}}
`, udp), fmt.Sprintf("{ports_per_listener: %d}", max))
	server, err := net.ResolveUDPAddr("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	// Each source sends one runt (dropped by the switch, no flood), in
	// bursts the listener takes without socket-buffer loss; after each
	// burst every datagram is a peer or a refusal.
	for sent := 0; sent < sources; {
		for i := 0; i < burst; i++ {
			cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cl.Close() })
			if _, err := cl.WriteTo([]byte("runt"), server); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		harness.WaitFor(t, limitsTimeout, fmt.Sprintf("%d sources accounted for", sent), func() bool {
			p, r, _, _ := c.listener(udp)
			return uint64(p)+r == uint64(sent)
		})
	}
	p, r, _, _ := c.listener(udp)
	if p != max || r != sources-max {
		t.Errorf("datagram listener: %d peers, %d refused; want %d, %d", p, r, max, sources-max)
	}
}

func TestLimitsFrameTimeout(t *testing.T) {
	harness.SkipShort(t, "starts corral")
	c := startLimCorral(t, `  - {name: a, id: 1, listen: ["unix://$D/a.sock"], gateway: {enabled: false}}
`, "{frame_timeout: 1s}")
	conns := dialMany(t, filepath.Join(c.dir, "a.sock"), 3)
	halfHeader, halfFrame, idle := conns[0], conns[1], conns[2]
	harness.WaitFor(t, limitsTimeout, "3 ports", func() bool { p, _, _, _ := c.listener("a.sock"); return p == 3 })
	whole := binary.BigEndian.AppendUint32(nil, 60)
	whole = append(whole, acFrame(acBroadcast, acMAC(1), "whole")...)
	for _, conn := range conns {
		conn.Write(whole) // every port has sent a whole frame: no clock running
	}
	halfHeader.Write([]byte{0, 0})
	half := binary.BigEndian.AppendUint32(nil, 1000)
	halfFrame.Write(append(half, make([]byte, 500)...))
	start := time.Now()
	go io.Copy(io.Discard, idle) // the floods of the whole frames; ends at cleanup
	for _, conn := range []net.Conn{halfHeader, halfFrame} {
		if err := closedByPeer(conn, limitsTimeout); err != nil {
			t.Fatalf("half-frame sender: %v", err)
		}
	}
	t.Logf("half-frame senders closed after %v (frame_timeout 1s)", time.Since(start).Round(time.Millisecond))
	harness.WaitFor(t, limitsTimeout, "2 frame timeouts", func() bool { _, _, ft, _ := c.listener("a.sock"); return ft == 2 })
	if p, _, _, _ := c.listener("a.sock"); p != 1 {
		t.Errorf("ports = %d, want 1 (the idle one)", p)
	}
	// The idle port lives on, well past the timeout (watched for 2s).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if p, _, ft, _ := c.listener("a.sock"); p != 1 || ft != 2 {
			t.Fatalf("the idle port was closed (ports %d, frame timeouts %d)", p, ft)
		}
	}
}

func TestLimitsDatagramIdle(t *testing.T) {
	harness.SkipShort(t, "starts corral")
	udp := fmt.Sprintf("127.0.0.1:%d", harness.FreeUDPPort(t))
	c := startLimCorral(t, fmt.Sprintf(`  - {name: a, id: 1, listen: ["udp://%s"], gateway: {enabled: false}}
`, udp), "{datagram_idle_timeout: 500ms}")
	server, _ := net.ResolveUDPAddr("udp", udp)
	cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	cl.WriteTo([]byte("runt"), server)
	harness.WaitFor(t, limitsTimeout, "a peer", func() bool { p, _, _, _ := c.listener(udp); return p == 1 })
	start := time.Now()
	harness.WaitFor(t, limitsTimeout, "the idle peer to expire", func() bool {
		p, _, _, e := c.listener(udp)
		return p == 0 && e == 1
	})
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("expired after %v, before datagram_idle_timeout (500ms)", d)
	}
	cl.WriteTo([]byte("runt"), server)
	harness.WaitFor(t, limitsTimeout, "the peer back", func() bool { p, _, _, _ := c.listener(udp); return p == 1 })
}

// TestLimitsIdlePortMemory measures corral's RSS with many idle unix
// stream ports (each has sent one frame, so its reader has run) and after
// they leave. The figures are logged (README "Limits"); the bounds checked
// are the issue's: 10,000 idle ports under 1 GiB, and the surge's memory
// mostly returned within seconds.
func TestLimitsIdlePortMemory(t *testing.T) {
	harness.SkipShort(t, "starts corral and 10,000 connections")
	const first, total = 2000, 10000
	raiseNofile(t, 2*total+1024)
	c := startLimCorral(t, `  - {name: a, id: 1, listen: ["unix://$D/a.sock"], gateway: {enabled: false}}
`, fmt.Sprintf("{ports_per_listener: %d, ports_per_fence: %d}", 2*total, 2*total))
	path := filepath.Join(c.dir, "a.sock")
	runt := binary.BigEndian.AppendUint32(nil, 10)
	runt = append(runt, make([]byte, 10)...) // dropped by the switch as a runt: no flood
	var conns []net.Conn
	grow := func(n int) {
		more := dialMany(t, path, n-len(conns))
		for _, conn := range more {
			if _, err := conn.Write(runt); err != nil {
				t.Fatal(err)
			}
		}
		conns = append(conns, more...)
		harness.WaitFor(t, limitsTimeout, fmt.Sprintf("%d ports", n), func() bool { return c.fencePorts() == n })
	}
	settle := func() int64 {
		// The runts are read once every port's reader has run; let the
		// process go quiet, then take the larger of two readings.
		time.Sleep(time.Second) // measuring, not synchronising
		return max(c.rss(), c.rss())
	}
	base := settle()
	grow(first)
	atFirst := settle()
	grow(total)
	atTotal := settle()
	perPort := (atFirst - base) / first
	perPortTotal := (atTotal - base) / total
	t.Logf("RSS: %d MiB idle; %d MiB with %d idle ports (%d KiB per port); %d MiB with %d (%d KiB per port)",
		base>>20, atFirst>>20, first, perPort>>10, atTotal>>20, total, perPortTotal>>10)
	if atTotal >= 1<<30 {
		t.Errorf("RSS with %d idle ports: %d MiB, want under 1 GiB", total, atTotal>>20)
	}
	for _, conn := range conns {
		conn.Close()
	}
	left := time.Now()
	harness.WaitFor(t, limitsTimeout, "the ports to leave", func() bool { return c.fencePorts() == 0 })
	var after []string
	target := base + (atTotal-base)/4
	returned := time.Duration(0)
	for i := 0; i < 20; i++ {
		time.Sleep(500 * time.Millisecond) // sampling
		r := c.rss()
		after = append(after, fmt.Sprintf("%.1fs %d MiB", time.Since(left).Seconds(), r>>20))
		if r < target && returned == 0 {
			returned = time.Since(left)
		}
	}
	t.Logf("RSS after the %d ports left: %s", total, strings.Join(after, ", "))
	if returned == 0 {
		t.Errorf("RSS did not fall below %d MiB (a quarter of the surge above idle) within 10s of the ports leaving", target>>20)
	} else {
		t.Logf("RSS below %d MiB %v after the ports left", target>>20, returned.Round(100*time.Millisecond))
	}
}

// TestLimitsDatagramSurgeMemory logs corral's RSS when 10,000 UDP sources
// each send one datagram within about a second (default
// ports_per_listener, 1,024), and after the peers expire
// (datagram_idle_timeout 2s here). Before the bound, this surge cost
// 5.2 GB.
func TestLimitsDatagramSurgeMemory(t *testing.T) {
	harness.SkipShort(t, "starts corral and 10,000 UDP sources")
	const sources = 10000
	raiseNofile(t, sources+1024)
	udp := fmt.Sprintf("127.0.0.1:%d", harness.FreeUDPPort(t))
	c := startLimCorral(t, fmt.Sprintf(`  - {name: a, id: 1, listen: ["udp://%s"], gateway: {enabled: false}}
`, udp), "{datagram_idle_timeout: 2s}")
	server, _ := net.ResolveUDPAddr("udp", udp)
	base := c.rss()
	start := time.Now()
	for i := 0; i < sources; i++ {
		cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		cl.WriteTo([]byte("runt"), server)
		cl.Close() // the datagram is queued; the source need not live on
	}
	sent := time.Since(start)
	harness.WaitFor(t, limitsTimeout, "the listener to settle", func() bool {
		p, r, _, _ := c.listener(udp)
		return p == 1024 && r > 0
	})
	peak := c.rss()
	p, r, _, _ := c.listener(udp)
	t.Logf("%d sources in %v: %d peers, %d refused (socket-buffer losses are neither); RSS %d MiB idle, %d MiB with the peers",
		sources, sent.Round(10*time.Millisecond), p, r, base>>20, peak>>20)
	harness.WaitFor(t, limitsTimeout, "the peers to expire", func() bool { p, _, _, _ := c.listener(udp); return p == 0 })
	expired := time.Now()
	var last int64
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last RSS %d MiB (idle %d, peak %d, target below %d)", last>>20, base>>20, peak>>20, (base+(peak-base)/4)>>20)
		}
	})
	harness.WaitFor(t, limitsTimeout, "the memory to return", func() bool {
		last = c.rss()
		return last < base+(peak-base)/4
	})
	t.Logf("RSS %d MiB %v after the peers expired", c.rss()>>20, time.Since(expired).Round(100*time.Millisecond))
	if peak >= 1<<30 {
		t.Errorf("RSS with the surge: %d MiB, want under 1 GiB", peak>>20)
	}
}
