package uplink

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

// needRoot: not root → t.Fatal under CI=true, else t.Skip.
var netipZero netip.AddrPort

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short (make unit): needs a network namespace and AF_PACKET; make test runs it")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (network namespace, AF_PACKET); CI=true, so not skipping")
	}
	t.Skip("needs root (network namespace, AF_PACKET)")
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// inNetNS runs f on a thread switched into the named namespace.
func inNetNS(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open netns %s: %v", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns %s: %v", ns, err)
			return
		}
		f()
	}()
	<-done
}

// Topology: one namespace, a veth pair ra ══ rb (MTU 1500), a raw Uplink
// on each end.
func TestIntegrationRawUplink(t *testing.T) {
	needRoot(t)
	ns := fmt.Sprintf("ut%d-raw", os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "add", "ra", "mtu", "1500", "type", "veth", "peer", "name", "rb", "mtu", "1500")
	run(t, "ip", "-n", ns, "link", "set", "ra", "up")
	run(t, "ip", "-n", ns, "link", "set", "rb", "up")

	var a, b *testHost
	inNetNS(t, ns, func() {
		a = newHost(t, 1, []uint32{1}, func(c *Config) { c.UDPListen = netipZero; c.RawInterface = "ra" })
		b = newHost(t, 2, []uint32{1, 2}, func(c *Config) { c.UDPListen = netipZero; c.RawInterface = "rb" })
	})
	if t.Failed() {
		t.FailNow()
	}
	if got, want := a.u.MaxEncapLen(), 1514; got != want {
		t.Fatalf("raw MaxEncapLen = %d, want %d", got, want)
	}
	waitHello(t, a, b, 1, 2)
	waitHello(t, b, a, 1)

	// Flood, unicast, fragmented unicast (4+1514 > 1500).
	f := frame(100, 0xff, 1, 1)
	a.send(t, 1, vswitch.Broadcast, f)
	b.expect(t, 1, a.u.OuterMAC(), f)
	for _, n := range []int{60, 1496, 1497, 1514, 2900} {
		g := frame(n, 2, 1, byte(n))
		a.send(t, 1, b.u.OuterMAC(), g)
		b.expect(t, 1, a.u.OuterMAC(), g)
		h := frame(n, 1, 2, byte(n+1))
		b.send(t, 1, a.u.OuterMAC(), h)
		a.expect(t, 1, b.u.OuterMAC(), h)
	}
	// A batch larger than the scratch slots, half of it fragmented.
	sendBigBatch(t, a, b)

	// a lacks fence 2: b's fence-2 flood is not sent to it (one peer that
	// does not want it: no broadcast, no unicast copy).
	b.send(t, 2, vswitch.Broadcast, frame(80, 0xff, 2, 3))
	a.expectNone(t, 2, 300*time.Millisecond)
	if got := a.u.Status().RxByFence[2]; got != 0 {
		t.Fatalf("a rx_by_fence[2] = %d, want 0", got)
	}
	if st := b.u.Status(); st.Counters["rx_reassembled"] < 3 || st.Transport != "raw" {
		t.Fatalf("b: transport %s rx_reassembled %d", st.Transport, st.Counters["rx_reassembled"])
	}

	// The interface going down and up does not end the uplink.
	run(t, "ip", "-n", ns, "link", "set", "rb", "down")
	b.send(t, 1, a.u.OuterMAC(), frame(64, 1, 2, 0x55)) // fails, counted
	time.Sleep(100 * time.Millisecond)
	run(t, "ip", "-n", ns, "link", "set", "rb", "up")
	waitFor(t, "veth carrier", func() bool {
		out, _ := exec.Command("ip", "-n", ns, "-br", "link", "show", "rb").Output()
		return strings.Contains(string(out), "UP ")
	})
	t.Logf("b after link down/up: rx_errors %d tx_errors %d", b.u.Status().Counters["rx_errors"], b.u.Status().Counters["tx_errors"])
	g := frame(300, 1, 2, 0x66)
	waitFor(t, "frames flow again after link down/up", func() bool {
		b.send(t, 1, a.u.OuterMAC(), g)
		select {
		case f := <-a.rx:
			return bytes.Equal(f.data, g)
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

// Topology: namespaces g1 and g2 joined by a veth (192.0.2.1 ══ 192.0.2.2),
// one Uplink in each on 0.0.0.0:7407 with multicast group 239.7.4.7:7407
// and no static peers: they find each other through the group.
func TestIntegrationMulticastGroup(t *testing.T) {
	needRoot(t)
	var nss [2]string
	for i := range nss {
		nss[i] = fmt.Sprintf("ut%d-g%d", os.Getpid(), i+1)
		ns := nss[i]
		_ = exec.Command("ip", "netns", "del", ns).Run()
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", nss[0], "link", "add", "g", "type", "veth", "peer", "name", "g", "netns", nss[1])
	for i, ns := range nss {
		run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", i+1), "dev", "g")
		run(t, "ip", "-n", ns, "link", "set", "g", "up")
	}
	group := netip.MustParseAddrPort("239.7.4.7:7407")
	var hs [2]*testHost
	for i, ns := range nss {
		inNetNS(t, ns, func() {
			hs[i] = newHost(t, uint16(i+1), []uint32{1}, func(c *Config) {
				c.UDPListen = netip.MustParseAddrPort("0.0.0.0:7407")
				c.Group = group
			})
		})
	}
	if t.Failed() {
		t.FailNow()
	}
	a, b := hs[0], hs[1]
	waitHello(t, a, b, 1)
	waitHello(t, b, a, 1)
	f := frame(100, 0xff, 1, 1)
	a.send(t, 1, vswitch.Broadcast, f)
	b.expect(t, 1, a.u.OuterMAC(), f)
	g := frame(1514, 1, 2, 2) // unicast, fragmented
	b.send(t, 1, a.u.OuterMAC(), g)
	a.expect(t, 1, b.u.OuterMAC(), g)
	for _, h := range hs {
		c := h.u.Status().Counters
		if c["duplicate_mac"] != 0 {
			t.Fatalf("%s: duplicate_mac %d for its own looped-back hellos", h.u.cfg.HostName, c["duplicate_mac"])
		}
	}
}

// TestRawNeedsCapNetRaw drops CAP_NET_RAW on one thread (capabilities are
// per thread on Linux; the thread is discarded afterwards) and checks that
// New fails with a message that names the capability.
func TestRawNeedsCapNetRaw(t *testing.T) {
	needRoot(t)
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if e := unix.Capget(&hdr, &data[0]); e != nil {
			err = fmt.Errorf("capget: %w", e)
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
		if e := unix.Capset(&hdr, &data[0]); e != nil {
			err = fmt.Errorf("capset: %w", e)
			return
		}
		var u *Uplink
		u, err = New(Config{HostID: 1, RawInterface: "lo"})
		if u != nil {
			u.Close()
			err = fmt.Errorf("New succeeded without CAP_NET_RAW")
		}
	}()
	<-done
	if err == nil || !strings.Contains(err.Error(), "needs CAP_NET_RAW") {
		t.Fatalf("New without CAP_NET_RAW: %v; want an error that names CAP_NET_RAW", err)
	}
	t.Logf("error: %v", err)
}

// rawPair opens two raw transports on the ends of a veth pair ra ══ rb in
// a new namespace: tx on ra, rx on rb.
func rawPair(t *testing.T, name string) (tx, rx *rawTransport, ctr *counters) {
	t.Helper()
	needRoot(t)
	ns := fmt.Sprintf("ut%d-%s", os.Getpid(), name)
	_ = exec.Command("ip", "netns", "del", ns).Run()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "add", "ra", "mtu", "1500", "type", "veth", "peer", "name", "rb", "mtu", "1500")
	run(t, "ip", "-n", ns, "link", "set", "ra", "up")
	run(t, "ip", "-n", ns, "link", "set", "rb", "up")
	ctr = new(counters)
	var err error
	inNetNS(t, ns, func() {
		self := [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x01}
		if tx, err = openRaw("ra", fence.EtherType, self, ctr); err != nil {
			return
		}
		self[5] = 2
		rx, err = openRaw("rb", fence.EtherType, self, ctr)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.close(); rx.close() })
	return tx, rx, ctr
}

// rawMAC is an outer MAC of the raw tests' installation.
func rawMAC(b byte) [6]byte { return [6]byte{0x02, 0xfe, 0x0c, 0x01, 0x00, b} }

// rawFrame is a 100-byte outer frame from host 1 (destination left zero).
func rawFrame(seed byte) []byte {
	f := make([]byte, 100)
	copy(f[6:], []byte{0x02, 0xfe, 0x0c, 0x01, 0x00, 0x01, byte(fence.EtherType >> 8), byte(fence.EtherType & 0xff)})
	for i := 14; i < len(f); i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// rawRecvBufs returns n receive buffers with their sizes and sources.
func rawRecvBufs(n int) ([][]byte, []int, []netip.AddrPort) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	return bufs, make([]int, n), make([]netip.AddrPort, n)
}

// TestRawSendCopies sends one batch in which a frame goes to several outer
// destinations (the unicast copies of a flood; the destination is written
// into the frame itself) and checks, on the other end of the veth, that
// every copy left with its own destination, in order.
func TestRawSendCopies(t *testing.T) {
	tx, rx, ctr := rawPair(t, "rawc")
	mac, mk := rawMAC, rawFrame
	f, g := mk(1), mk(2)
	items := []outItem{
		{frame: f, dst: mac(3)}, {frame: f, dst: mac(4)}, {frame: f, dst: mac(5)},
		{frame: g, dst: mac(3)}, {frame: g, dst: mac(4)}, {frame: g, dst: mac(4)},
	}
	want := make([][]byte, len(items))
	for i, it := range items {
		want[i] = slices.Clone(it.frame)
		copy(want[i], it.dst[:])
	}
	if err := tx.send(items); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, from := rawRecvBufs(8)
	got := 0
	deadline := time.Now().Add(testTimeout)
	for got < len(want) && time.Now().Before(deadline) {
		_ = rx.f.SetReadDeadline(deadline)
		n, err := rx.recv(bufs[:len(bufs)-got], sizes, from)
		if err != nil {
			t.Fatalf("recv after %d frames: %v", got, err)
		}
		for i := 0; i < n; i++ {
			if !bytes.Equal(bufs[i][:sizes[i]], want[got]) {
				t.Fatalf("frame %d: got % x…, want % x…", got, bufs[i][:16], want[got][:16])
			}
			got++
		}
	}
	if got != len(want) {
		t.Fatalf("received %d of %d frames", got, len(want))
	}
	if c := ctr.c[ctrTxDatagrams].Load(); c != uint64(len(items)) {
		t.Fatalf("tx_sends = %d, want %d", c, len(items))
	}
}

// TestRawSendRecvAllocs checks that the raw transport sends and receives a
// batch in the steady state without allocating. (Its name contains
// "Alloc": make test also runs it without the race detector.)
func TestRawSendRecvAllocs(t *testing.T) {
	tx, rx, _ := rawPair(t, "rawa")
	bufs, sizes, from := rawRecvBufs(8)
	batch := make([]outItem, len(bufs))
	for i := range batch {
		batch[i] = outItem{frame: rawFrame(byte(i)), dst: rawMAC(2)}
	}
	_ = rx.f.SetReadDeadline(time.Now().Add(testTimeout))
	allocs := testing.AllocsPerRun(20, func() {
		if err := tx.send(batch); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(batch); {
			n, err := rx.recv(bufs[:len(batch)-got], sizes, from)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	t.Logf("%.1f allocs per batch of %d sent and received", allocs, len(batch))
	if allocs > 0 && !raceEnabled {
		t.Errorf("raw send+recv allocates %.1f times per batch, want 0", allocs)
	}
}

// TestIntegrationRawUplinkSealed is the raw uplink, sealed: frames,
// floods and fragments open; a flood of a fence one host holds no key of
// is broadcast (the outer destination is authenticated, a sealed flood
// cannot be readdressed) and dropped there, unread.
func TestIntegrationRawUplinkSealed(t *testing.T) {
	needRoot(t)
	ns := fmt.Sprintf("ut%d-rawseal", os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "add", "sa", "mtu", "1500", "type", "veth", "peer", "name", "sb", "mtu", "1500")
	run(t, "ip", "-n", ns, "link", "set", "sa", "up")
	run(t, "ip", "-n", ns, "link", "set", "sb", "up")
	var a, b *testHost
	inNetNS(t, ns, func() {
		a = newHost(t, 1, []uint32{1}, sealed(sealKeys(t, testSecret, false, 1), func(c *Config) { c.UDPListen = netipZero; c.RawInterface = "sa" }))
		b = newHost(t, 2, []uint32{1, 2}, sealed(sealKeys(t, testSecret, false, 1, 2), func(c *Config) { c.UDPListen = netipZero; c.RawInterface = "sb" }))
	})
	if t.Failed() {
		t.FailNow()
	}
	waitHello(t, a, b, 1, 2)
	waitHello(t, b, a, 1)
	f := frame(100, 0xff, 1, 1)
	a.send(t, 1, vswitch.Broadcast, f)
	b.expect(t, 1, a.u.OuterMAC(), f)
	for _, n := range []int{60, 1471, 1472, 1514, 2900} {
		g := frame(n, 2, 1, byte(n))
		a.send(t, 1, b.u.OuterMAC(), g)
		b.expect(t, 1, a.u.OuterMAC(), g)
		h := frame(n, 1, 2, byte(n+1))
		b.sendRoomy(t, 1, a.u.OuterMAC(), h)
		a.expect(t, 1, b.u.OuterMAC(), h)
	}
	b.send(t, 2, vswitch.Broadcast, frame(80, 0xff, 2, 3))
	waitFor(t, "a drops b's fence-2 flood: no key", func() bool { return a.u.Status().Counters["drop_no_key"] > 0 })
	if got := a.u.Status().RxByFence[2]; got != 0 {
		t.Fatalf("a rx_by_fence[2] = %d, want 0", got)
	}
	if c := b.u.Status().Counters; c["drop_auth"] != 0 || c["rx_reassembled"] < 2 {
		t.Fatalf("b: drop_auth %d, rx_reassembled %d", c["drop_auth"], c["rx_reassembled"])
	}
}
