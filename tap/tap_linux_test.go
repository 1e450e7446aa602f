package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

var _ vswitch.Port = (*Device)(nil)

// needRoot is the gate of every test that needs root, network namespaces
// or a TAP device: under -short (make unit) it skips, saying so; otherwise,
// when not root, it fails under CI=true and skips without.
func needRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short (make unit): needs root, network namespaces and TAP devices; make test runs it")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (CI=true: not skipping)")
	}
	t.Skip("needs root")
}

// waitNeighbors polls the neighbor table of dev in ns until it has an
// entry for each address in addrs (each "a.b.c.d ", as ip prints it).
func waitNeighbors(t testing.TB, ns, dev string, addrs []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := "\n" + ipIn(t, ns, "neigh", "show", "dev", dev)
		missing := ""
		for _, a := range addrs {
			if !strings.Contains(out, "\n"+a) {
				missing = a
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no neighbor entry for %son %s:%s", missing, dev, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitParked waits until a goroutine with fn (e.g. "(*Device).Read(") on
// its stack is parked: blocked on the network poller, a channel, a select
// or a lock, not running. A test that checks that Close unblocks a call
// waits for the call to block first instead of sleeping.
func waitParked(t testing.TB, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			head, _, _ := strings.Cut(g, "\n") // "goroutine 7 [IO wait]:"
			if strings.Contains(head, "[running]") || strings.Contains(head, "[runnable]") || strings.Contains(head, "[syscall") {
				continue
			}
			if strings.Contains(g, fn) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never blocked", fn)
		}
		time.Sleep(time.Millisecond)
	}
}

// newNS creates a network namespace named after the test process and
// deletes it at cleanup.
func newNS(t testing.TB, short string) string {
	t.Helper()
	name := fmt.Sprintf("ctap%d-%s", os.Getpid(), short)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func ipIn(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"full", Config{Name: "tap0", NetNS: "lab", MTU: 9000}, true},
		{"abs netns", Config{NetNS: "/proc/1/ns/net"}, true},
		{"long name", Config{Name: "abcdefghijklmnop"}, false},
		{"slash name", Config{Name: "a/b"}, false},
		{"small mtu", Config{MTU: 67}, false},
		{"big mtu", Config{MTU: 70000}, false},
		{"relative netns path", Config{NetNS: "a/b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tt.cfg, err, tt.ok)
			}
		})
	}
}

// arpRequest builds an ARP who-has tpa from (sha, spa).
func arpRequest(sha net.HardwareAddr, spa, tpa net.IP) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], sha)
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	binary.BigEndian.PutUint16(f[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	copy(f[22:28], sha)
	copy(f[28:32], spa.To4())
	copy(f[38:42], tpa.To4())
	return f
}

func TestIntegrationTapInNetns(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "a")
	d, err := Open(Config{Name: "ctap0", NetNS: ns, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Name() != "ctap0" {
		t.Fatalf("Name() = %q", d.Name())
	}
	link := ipIn(t, ns, "-o", "link", "show", "ctap0")
	if !strings.Contains(link, "mtu 1400") {
		t.Errorf("link has no mtu 1400: %s", link)
	}
	flags := link[strings.Index(link, "<")+1 : strings.Index(link, ">")]
	if !strings.Contains(","+flags+",", ",UP,") {
		t.Errorf("link not up: %s", link)
	}
	// Not in our own namespace.
	if err := exec.Command("ip", "link", "show", "ctap0").Run(); err == nil {
		t.Error("ctap0 exists in the test's own namespace too")
	}

	// The kernel in the namespace answers ARP for its address.
	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "ctap0")
	mac := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}
	var reqs [][]byte
	for i := 0; i < 4; i++ { // four requesters: four replies
		reqs = append(reqs, arpRequest(mac, net.IPv4(192, 0, 2, byte(10+i)), net.IPv4(192, 0, 2, 1)))
	}
	out := make([][]byte, len(reqs))
	for i, r := range reqs {
		out[i] = append(make([]byte, vswitch.Headroom), r...)
	}
	if n, err := d.Write(out, vswitch.Headroom); err != nil || n != len(out) {
		t.Fatalf("Write = %d, %v", n, err)
	}

	bufs := make([][]byte, BatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, BatchSize)
	timer := time.AfterFunc(30*time.Second, func() { d.Close() })
	defer timer.Stop()
	// The four replies are queued on the device by the time we read: the
	// kernel enters each requester in its neighbor table just before it
	// sends the reply (arp_process), so the test polls the table for the
	// four of them, then reads; one Read must return them all. A reply can
	// still be on its way when its entry appears, so a short Read is
	// retried: the table flushed, the requests written again.
	requesters := make([]string, len(reqs))
	for i := range requesters {
		requesters[i] = fmt.Sprintf("192.0.2.%d ", 10+i)
	}
	best := 0
	for attempt := 0; attempt < 6 && best < len(reqs); attempt++ {
		if attempt > 0 {
			ipIn(t, ns, "neigh", "flush", "dev", "ctap0")
			if n, err := d.Write(out, vswitch.Headroom); err != nil || n != len(out) {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		waitNeighbors(t, ns, "ctap0", requesters)
		n, err := d.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		replies := map[byte]bool{}
		for i := 0; i < n; i++ {
			f := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]
			if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0806 || binary.BigEndian.Uint16(f[20:]) != 2 {
				continue // IPv6 noise and the like
			}
			if !bytes.Equal(f[0:6], mac) || !bytes.Equal(f[28:32], []byte{192, 0, 2, 1}) || !bytes.Equal(f[32:38], mac) {
				t.Fatalf("odd ARP reply % x", f)
			}
			replies[f[41]] = true
		}
		best = max(best, len(replies))
	}
	if best < len(reqs) {
		t.Fatalf("at most %d of %d ARP replies from one Read", best, len(reqs))
	}

	// Close deletes the interface; later calls say net.ErrClosed.
	d.Close()
	if _, err := d.Read(bufs, sizes, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := d.Write(out, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("ip", "-n", ns, "link", "show", "ctap0").Run() == nil {
		if time.Now().After(deadline) {
			t.Fatal("ctap0 still exists after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIntegrationTapCloseUnblocksRead(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "b")
	d, err := Open(Config{NetNS: ns}) // kernel-chosen name, default MTU
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Name(), "tap") {
		t.Errorf("kernel-chosen name %q", d.Name())
	}
	if link := ipIn(t, ns, "-o", "link", "show", d.Name()); !strings.Contains(link, "mtu 1500") {
		t.Errorf("default MTU: %s", link)
	}
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, vswitch.BufSize)}
		// Drain whatever the kernel sends (router solicitations) until closed.
		for {
			if _, err := d.Read(bufs, make([]int, 1), vswitch.Headroom); err != nil {
				errc <- err
				return
			}
		}
	}()
	waitParked(t, "(*Device).Read(")
	d.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
}

func TestIntegrationTapErrors(t *testing.T) {
	needRoot(t)
	_, err := Open(Config{Name: "ctapx", NetNS: fmt.Sprintf("nonexistent-%d", os.Getpid())})
	if err == nil || !strings.Contains(err.Error(), "netns") {
		t.Fatalf("Open in a missing netns: %v", err)
	}
	ns := newNS(t, "c")
	d, err := Open(Config{Name: "ctapdup", NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// The same name twice in one namespace fails (EBUSY).
	if d2, err := Open(Config{Name: "ctapdup", NetNS: ns}); err == nil {
		d2.Close()
		t.Fatal("second TAP with the same name opened")
	}
	// The caller's thread never leaves its namespace: our own ns has no
	// such link.
	if err := exec.Command("ip", "link", "show", "ctapdup").Run(); err == nil {
		t.Fatal("ctapdup visible in the test's namespace")
	}
}

func TestIntegrationTapNoAllocs(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "d")
	d, err := Open(Config{Name: "ctapa", NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "ctapa")
	mac := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x03}
	out := [][]byte{append(make([]byte, vswitch.Headroom), arpRequest(mac, net.IPv4(192, 0, 2, 9), net.IPv4(192, 0, 2, 1))...)}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, 8)
	timer := time.AfterFunc(30*time.Second, func() { d.Close() })
	defer timer.Stop()
	round := func() {
		if _, err := d.Write(out, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := d.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				f := bufs[i][vswitch.Headroom:]
				if sizes[i] >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 {
					return
				}
			}
		}
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Fatalf("TAP Write+Read: %v allocations per run, want 0", a)
	}
}

// TestIntegrationTapWriteWhileDown: the kernel refuses writes to a TAP
// whose link is down (EIO); that drops the frames, counted, and the device
// keeps working once the link is up again (a test that sets `ip link set
// t0 down` to change the MAC must not kill `corral plug`).
func TestIntegrationTapWriteWhileDown(t *testing.T) {
	needRoot(t)
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			ns := newNS(t, fmt.Sprintf("w%v", offload))
			d, err := Open(Config{Name: "ctapw", NetNS: ns, Offload: offload})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			frame := make([]byte, vswitch.Headroom+60)
			copy(frame[vswitch.Headroom:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x08, 0x06})
			ipIn(t, ns, "link", "set", "ctapw", "down")
			n, err := d.Write([][]byte{frame, frame}, vswitch.Headroom)
			if err != nil || n != 2 {
				t.Fatalf("Write while down = %d, %v; want 2, nil (dropped)", n, err)
			}
			if got := d.Drops(); got != 2 {
				t.Errorf("Drops = %d, want 2", got)
			}
			ipIn(t, ns, "link", "set", "ctapw", "up")
			if n, err := d.Write([][]byte{frame}, vswitch.Headroom); err != nil || n != 1 {
				t.Fatalf("Write after up = %d, %v", n, err)
			}
			if got := d.Drops(); got != 2 {
				t.Errorf("Drops after up = %d, want still 2", got)
			}
		})
	}
}
