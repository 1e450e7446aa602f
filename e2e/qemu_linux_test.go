package e2e

// End-to-end tests with real QEMU guests (TCG, harness.BootGuest):
//   - TwoFences (issue 2 item 8): two fences whose guests share MAC and IP
//     pairs, over stream-unix, socket-tcp and dgram-unix backends; ping works
//     inside each fence and an address of the other fence gets no ARP answer.
//   - Backends: the stream-inet, dgram-inet and socket-udp forms of
//     contrib/examples/README.md.
//   - Gateway (issue 4 item 8): DHCP with busybox udhcpc, a page from the host.
//   - DialServerOn (issue 2 item 5): corral dials server=on guests, which keep
//     their network across a corral restart.
//   - UplinkUDP (issue 3 item 5): guests on two hosts over the UDP uplink, the
//     capture of the uplink decoded against DESIGN.md section 3, 1514-byte
//     frames in two fragments included.
// Guests run a script that waits on the console for the test's "go" and
// "done" (harness Guest.Send), so that several guests act together.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/pcap"
)

// qemuLife bounds a guest's whole life (boot, task and waiting for the
// test); each step a test waits for is bounded by harness.GuestTimeout.
const qemuLife = 3 * time.Minute

// qemuGuestScript returns a guest script that configures addrs on eth0
// (the first is announced with a gratuitous ARP so that corral learns the
// port, which a unixgram peer needs before anything can reach it), prints
// READY and, unless task is empty, waits for "go", runs task and prints
// TASK-OK; then it waits for "done" and exits 0.
func qemuGuestScript(task string, addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "ip addr add %s/24 dev eth0\n", a)
	}
	fmt.Fprintf(&b, "arping -U -c 1 -w 1 -I eth0 %s >/dev/null 2>&1\n", addrs[0])
	b.WriteString("echo READY\n")
	if task != "" {
		b.WriteString("read -r x\n[ \"$x\" = go ] || exit 7\n")
		b.WriteString(task)
		b.WriteString("\necho TASK-OK\n")
	}
	b.WriteString("read -r x\n[ \"$x\" = done ] || exit 8\n")
	return b.String()
}

// qemuBootAll starts every guest at once (they boot in parallel) and
// waits until each has printed READY.
func qemuBootAll(t *testing.T, specs []harness.GuestSpec) []*harness.Guest {
	t.Helper()
	start := time.Now()
	guests := make([]*harness.Guest, len(specs))
	for i, s := range specs {
		guests[i] = harness.BootGuest(t, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(guests))
	for i, g := range guests {
		wg.Go(func() { errs[i] = g.WaitLog("READY", harness.GuestTimeout) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%v\nconsole of %s:\n%s", err, guests[i].Spec.Name, guests[i].Log())
		}
	}
	t.Logf("%d guests booted in parallel and ready after %v", len(guests), time.Since(start).Round(time.Millisecond))
	return guests
}

func qemuSend(t *testing.T, line string, guests ...*harness.Guest) {
	t.Helper()
	for _, g := range guests {
		if err := g.Send(line); err != nil {
			t.Fatalf("console of %s: %v", g.Spec.Name, err)
		}
	}
}

// qemuFinish tells the guests "done" and checks that every script exited 0.
func qemuFinish(t *testing.T, guests ...*harness.Guest) {
	t.Helper()
	qemuSend(t, "done", guests...)
	for _, g := range guests {
		g.MustSucceed(t)
	}
}

func TestE2EQEMUTwoFences(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	dir := harness.ShortTempDir(t)
	tcpA := harness.FreeTCPPort(t)
	sw := harness.StartCorral(t, nil, fmt.Sprintf(`
fences:
  - name: a
    id: 10
    listen: ["unix://%[1]s/a.sock", "tcp://127.0.0.1:%[2]d"]
    gateway: {enabled: false}
  - name: b
    id: 20
    listen: ["unix://%[1]s/b.sock", "unixgram://%[1]s/b.dgram"]
    gateway: {enabled: false}
admin:
  listen: "unix://%[1]s/admin.sock"
`, dir, tcpA))

	const mac1, mac2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
	// Guest 1 of each fence pings guest 2 (the same MACs and IPs in both
	// fences, at the same time) and ARPs for 192.0.2.3, which exists only
	// in fence B (a second address of B2): B1 must get an answer, A1 none.
	pingTask := "ping -c 5 -i 0.3 -w 60 192.0.2.2 || { echo \"FAIL: ping 192.0.2.2\"; exit 1; }\n"
	a1Task := pingTask +
		"if arping -c 3 -w 6 -I eth0 192.0.2.3; then echo \"FAIL: fence B's 192.0.2.3 answered in fence A\"; exit 2; fi"
	b1Task := pingTask +
		"arping -c 3 -w 30 -I eth0 192.0.2.3 || { echo \"FAIL: 192.0.2.3 silent in its own fence\"; exit 3; }"
	guests := qemuBootAll(t, []harness.GuestSpec{
		{Name: "a1", Timeout: qemuLife, MAC: mac1, Netdev: "stream,server=off,addr.type=unix,addr.path=" + filepath.Join(dir, "a.sock"),
			Script: qemuGuestScript(a1Task, "192.0.2.1")},
		{Name: "a2", Timeout: qemuLife, MAC: mac2, Netdev: fmt.Sprintf("socket,connect=127.0.0.1:%d", tcpA),
			Script: qemuGuestScript("", "192.0.2.2")},
		{Name: "b1", Timeout: qemuLife, MAC: mac1, Netdev: "stream,server=off,addr.type=unix,addr.path=" + filepath.Join(dir, "b.sock"),
			Script: qemuGuestScript(b1Task, "192.0.2.1")},
		{Name: "b2", Timeout: qemuLife, MAC: mac2, Netdev: "dgram,local.type=unix,local.path=" + filepath.Join(dir, "b2.dgram") +
			",remote.type=unix,remote.path=" + filepath.Join(dir, "b.dgram"),
			Script: qemuGuestScript("", "192.0.2.2", "192.0.2.3")},
	})
	a1, a2, b1, b2 := guests[0], guests[1], guests[2], guests[3]

	start := time.Now()
	qemuSend(t, "go", a1, b1)
	for _, g := range []*harness.Guest{a1, b1} {
		g.WaitConsole(t, "TASK-OK", harness.GuestTimeout)
		out := g.Log()
		if !strings.Contains(out, "5 packets received") {
			t.Errorf("%s: want all 5 pings answered:\n%s", g.Spec.Name, out)
		}
	}
	t.Logf("pings and ARP probes in both fences took %v", time.Since(start).Round(time.Millisecond))
	if out := a1.Log(); !strings.Contains(out, "Received 0 response") {
		t.Errorf("a1: want arping to report 0 responses:\n%s", out)
	}
	// The same two MACs are learned in both fences, on different ports.
	fdb := qemuFDB(t, filepath.Join(dir, "admin.sock"))
	for _, mac := range []string{mac1, mac2} {
		pa, okA := fdb[10][mac]
		pb, okB := fdb[20][mac]
		if !okA || !okB || pa == pb || pa == 0 || pb == 0 {
			t.Errorf("bridge tables: %s in fence a on port %d (%v), in fence b on port %d (%v); want a local port in each, not the same\n%v",
				mac, pa, okA, pb, okB, fdb)
		}
	}
	qemuFinish(t, a1, a2, b1, b2)

	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
	for _, f := range []string{"a.sock", "b.sock", "b.dgram", "admin.sock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("corral left %s behind after SIGTERM", f)
		}
	}
}

// TestE2EQEMUBackends checks the remaining QEMU backend forms of
// contrib/examples/README.md against one fence: -netdev stream over inet
// (tcp://), -netdev dgram over inet and -netdev socket,udp= (both udp://).
// The first guest pings the other two.
func TestE2EQEMUBackends(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	dir := harness.ShortTempDir(t)
	tcpPort, udpPort := harness.FreeTCPPort(t), harness.FreeUDPPort(t)
	local2, local3 := harness.FreeUDPPort(t), harness.FreeUDPPort(t)
	sw := harness.StartCorral(t, nil, fmt.Sprintf(`
fences:
  - name: k
    id: 40
    listen: ["tcp://127.0.0.1:%[1]d", "udp://127.0.0.1:%[2]d"]
    gateway: {enabled: false}
admin:
  listen: "unix://%[3]s/admin.sock"
`, tcpPort, udpPort, dir))
	task := "for ip in 192.0.2.42 192.0.2.43; do ping -c 2 -w 60 $ip || { echo \"FAIL: ping $ip\"; exit 1; }; done"
	guests := qemuBootAll(t, []harness.GuestSpec{
		{Name: "k1", Timeout: qemuLife, MAC: "52:54:00:00:00:41",
			Netdev: fmt.Sprintf("stream,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=%d", tcpPort),
			Script: qemuGuestScript(task, "192.0.2.41")},
		{Name: "k2", Timeout: qemuLife, MAC: "52:54:00:00:00:42",
			Netdev: fmt.Sprintf("dgram,local.type=inet,local.host=127.0.0.1,local.port=%d,remote.type=inet,remote.host=127.0.0.1,remote.port=%d", local2, udpPort),
			Script: qemuGuestScript("", "192.0.2.42")},
		{Name: "k3", Timeout: qemuLife, MAC: "52:54:00:00:00:43",
			Netdev: fmt.Sprintf("socket,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", udpPort, local3),
			Script: qemuGuestScript("", "192.0.2.43")},
	})
	start := time.Now()
	qemuSend(t, "go", guests[0])
	guests[0].WaitConsole(t, "TASK-OK", harness.GuestTimeout)
	t.Logf("pings over stream-inet, dgram-inet and socket-udp took %v", time.Since(start).Round(time.Millisecond))
	if testing.Verbose() {
		t.Logf("console of k1:\n%s", guests[0].Log())
	}
	qemuFinish(t, guests...)
	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
}

// TestE2EQEMUGateway (issue 4 item 8, last bullet): a guest boots in a
// fence with a gateway, gets a lease with busybox udhcpc (the image's
// /etc/udhcpc/default.script configures address, default route and
// resolv.conf) and fetches a page from an HTTP server on the host's loopback
// through 10.0.2.2. (Debian's static busybox wget segfaults with -q -T, so
// the script uses neither.)
func TestE2EQEMUGateway(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	dir := harness.ShortTempDir(t)
	token := fmt.Sprintf("corral-page-%d", time.Now().UnixNano())
	port := harness.ServeHTTP(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, token)
	}))

	sw := harness.StartCorral(t, nil, fmt.Sprintf(`
state_dir: %[1]s/state
fences:
  - name: g
    id: 50
    listen: ["unix://%[1]s/g.sock"]
    gateway: {enabled: true, subnet: 10.0.2.0/24}
admin:
  listen: "unix://%[1]s/admin.sock"
`, dir))
	script := fmt.Sprintf(`udhcpc -i eth0 -n -q -t 10 -T 3 || { echo "FAIL: no lease"; exit 1; }
ip -4 addr show dev eth0; ip route; cat /etc/resolv.conf
ip -4 addr show dev eth0 | grep -q "inet 10.0.2.15/24" || { echo "FAIL: address"; exit 2; }
ip route | grep -q "default via 10.0.2.2" || { echo "FAIL: default route"; exit 3; }
grep -q "nameserver 10.0.2.3" /etc/resolv.conf || { echo "FAIL: resolv.conf"; exit 4; }
wget -O - http://10.0.2.2:%d/ || { echo "FAIL: wget"; exit 5; }
`, port)
	start := time.Now()
	g := harness.BootGuest(t, harness.GuestSpec{Name: "gw", Timeout: qemuLife, MAC: "52:54:00:00:00:51",
		Netdev: "stream,server=off,addr.type=unix,addr.path=" + filepath.Join(dir, "g.sock"), Script: script})
	out := g.MustSucceed(t)
	if !strings.Contains(out, token) {
		t.Fatalf("the guest did not print the host's page %q:\n%s", token, out)
	}
	t.Logf("boot, DHCP lease and a page from the host through the gateway in %v", time.Since(start).Round(time.Millisecond))
	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
}

// TestE2EQEMUDialServerOn: two guests listen (QEMU -netdev stream,
// server=on), corral dials both. One guest pings the other in a loop; the
// pings stop while corral is down and resume once it is back, without
// touching QEMU.
func TestE2EQEMUDialServerOn(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	dir := harness.ShortTempDir(t)
	p1, p2 := filepath.Join(dir, "g1.sock"), filepath.Join(dir, "g2.sock")
	pingLoop := "ping -i 0.25 -w 300 192.0.2.2 &"
	guests := make([]*harness.Guest, 2)
	for i, s := range []harness.GuestSpec{
		{Name: "d1", Timeout: qemuLife, MAC: "52:54:00:00:00:11", Netdev: "stream,server=on,addr.type=unix,addr.path=" + p1,
			Script: qemuGuestScript(pingLoop, "192.0.2.1")},
		{Name: "d2", Timeout: qemuLife, MAC: "52:54:00:00:00:12", Netdev: "stream,server=on,addr.type=unix,addr.path=" + p2,
			Script: qemuGuestScript("", "192.0.2.2")},
	} {
		guests[i] = harness.BootGuest(t, s)
	}
	d1, d2 := guests[0], guests[1]
	harness.WaitFor(t, 30*time.Second, "QEMU's server sockets", func() bool {
		_, err1 := os.Stat(p1)
		_, err2 := os.Stat(p2)
		return err1 == nil && err2 == nil
	})
	cfg := fmt.Sprintf(`
fences:
  - name: d
    id: 30
    listen: []
    dial: ["unix://%[1]s", "unix://%[2]s"]
    gateway: {enabled: false}
admin:
  listen: "unix://%[3]s/admin.sock"
`, p1, p2, dir)
	sw := harness.StartCorral(t, nil, cfg)
	for _, g := range guests {
		g.WaitConsole(t, "READY", harness.GuestTimeout)
	}
	replies := func() int { return strings.Count(d1.Log(), "bytes from 192.0.2.2") }
	qemuSend(t, "go", d1)
	harness.WaitFor(t, harness.GuestTimeout, "the first 3 ping replies through corral", func() bool { return replies() >= 3 })

	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
	stopped := time.Now()
	// In-flight replies may still arrive; after that, nothing must.
	time.Sleep(3 * time.Second)
	before := replies()
	time.Sleep(3 * time.Second)
	if after := replies(); after != before {
		t.Fatalf("%d ping replies arrived while corral was down: the guests are not networked through corral", after-before)
	}
	for _, p := range []string{p1, p2} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("QEMU's socket %s vanished while corral was down: %v", p, err)
		}
	}

	restart := time.Now()
	sw = harness.StartCorral(t, nil, cfg)
	harness.WaitFor(t, 60*time.Second, "ping replies after the restart", func() bool { return replies() >= before+3 })
	t.Logf("pings resumed %v after corral restarted (%v after it stopped)",
		time.Since(restart).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	qemuFinish(t, d1, d2)
	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
}

// TestE2EQEMUUplinkUDP (issue 3 item 5): two hosts — two corral processes
// in two network namespaces joined by a veth pair — carry one fence over
// the UDP uplink; a guest on each pings the other. tcpdump on the veth must
// see the guests' frames only fence-encapsulated in UDP port 7407: the
// outer header of section 3.1 and a fence header (version 1, whole frame,
// the fence's ID) around the inner ICMP echo requests.
func TestE2EQEMUUplinkUDP(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	dir := harness.ShortTempDir(t)
	const fenceID = 0x00abcd
	n1, n2 := harness.NewNS(t, "qu1"), harness.NewNS(t, "qu2")
	harness.Veth(t, n1, "qe0", n2, "qe0", 1500)
	n1.MustExec(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "qe0")
	n2.MustExec(t, "ip", "addr", "add", "198.51.100.2/24", "dev", "qe0")

	pcap := filepath.Join(dir, "uplink.pcap")
	dump := harness.Start(t, n1, "tcpdump", "-i", "qe0", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", pcap)
	if err := dump.WaitLog("listening on", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	host := func(i int) string {
		return fmt.Sprintf(`
host: {name: qh%[1]d, installation: 1, id: %[1]d}
uplink:
  mtu: 1500
  hello_interval: 300ms
  udp: {listen: "198.51.100.%[1]d:7407", peers: ["198.51.100.%[2]d:7407"]}
fences:
  - {name: f, id: %[3]d, listen: ["unix://%[4]s/h%[1]d.sock"], gateway: {enabled: false}}
admin: {listen: "unix://%[4]s/h%[1]d-admin.sock"}
`, i, 3-i, fenceID, dir)
	}
	harness.StartCorral(t, n1, host(1))
	harness.StartCorral(t, n2, host(2))

	ping := func(peer string) string {
		return "ping -c 3 -w 60 " + peer + " || { echo \"FAIL: ping " + peer + "\"; exit 1; }"
	}
	// 1472 bytes of ICMP payload make 1514-byte frames, which travel in two
	// fragments over a 1500-byte uplink (section 3.4).
	bigPing := "\nping -c 2 -s 1472 -w 60 192.0.2.32 || { echo \"FAIL: 1514-byte frames\"; exit 2; }"
	guests := qemuBootAll(t, []harness.GuestSpec{
		{Name: "u1", Timeout: qemuLife, MAC: "52:54:00:00:00:31", Netdev: "stream,server=off,addr.type=unix,addr.path=" + filepath.Join(dir, "h1.sock"),
			Script: qemuGuestScript(ping("192.0.2.32")+bigPing, "192.0.2.31")},
		{Name: "u2", Timeout: qemuLife, MAC: "52:54:00:00:00:32", Netdev: "stream,server=off,addr.type=unix,addr.path=" + filepath.Join(dir, "h2.sock"),
			Script: qemuGuestScript(ping("192.0.2.31"), "192.0.2.32")},
	})
	start := time.Now()
	qemuSend(t, "go", guests...)
	for _, g := range guests {
		g.WaitConsole(t, "TASK-OK", harness.GuestTimeout)
	}
	t.Logf("guests on two hosts pinged each other over the UDP uplink in %v", time.Since(start).Round(time.Millisecond))
	qemuFinish(t, guests...)
	// tcpdump writes each packet at once (-U --immediate-mode); wait until
	// the capture holds the guests' echoes, then check every frame.
	var c qemuUplinkCapture
	var capErr error
	harness.WaitFor(t, 30*time.Second, "the guests' echoes in the capture of the uplink", func() bool {
		raw, err := os.ReadFile(pcap)
		if err != nil {
			capErr = err
			return true
		}
		c, capErr = qemuCheckUplinkCapture(raw, fenceID)
		return capErr != nil || (c.small[0] >= 3 && c.small[1] >= 3 && c.big[0] >= 2 && c.big[1] >= 2)
	})
	if capErr != nil {
		t.Fatalf("%s: %v", pcap, capErr)
	}
	if err := dump.Stop(); err != nil && !strings.Contains(err.Error(), "signal") {
		t.Logf("tcpdump: %v", err)
	}
	t.Logf("uplink capture: %d frames (%d UDP GSO batches); fence %#x: echo requests %d (u1→u2) + %d (u2→u1), 1514-byte echo request/reply %d/%d from %d fragment pairs",
		c.frames, c.gso, fenceID, c.small[0], c.small[1], c.big[0], c.big[1], c.pairs)
}

// qemuUplinkCapture is what qemuCheckUplinkCapture counted.
type qemuUplinkCapture struct {
	frames int
	small  [2]int // ICMP echo requests u1→u2 (from host 1) and u2→u1 (from host 2)
	big    [2]int // 1514-byte echo requests u1→u2 and replies u2→u1
	pairs  int    // reassembled fragment pairs
	gso    int    // captured UDP GSO batches (several datagrams in one skb)
}

// qemuCheckUplinkCapture checks a capture of the uplink of
// TestE2EQEMUUplinkUDP: no guest MAC outside encapsulation, and every
// datagram on port 7407 a fence frame of DESIGN.md section 3: at most 1472
// bytes, EtherType 0x88b5, a host's outer source MAC, version 1, fence 0 or
// fenceID, Seq 0 for whole frames, fragments in pairs (type 1 then 2, one
// Seq) that reassemble. It counts the guests' inner ICMP echoes.
func qemuCheckUplinkCapture(raw []byte, fenceID uint32) (c qemuUplinkCapture, err error) {
	fs, err := qemuReadPcap(raw)
	if err != nil {
		return c, err
	}
	outer1 := []byte{0x02, 0xfe, 0x0c, 1, 0, 1} // OUI · installation 1 · host 1
	outer2 := []byte{0x02, 0xfe, 0x0c, 1, 0, 2}
	guestMAC := []byte{0x52, 0x54, 0x00, 0x00, 0x00}
	ip31, ip32 := []byte{192, 0, 2, 31}, []byte{192, 0, 2, 32}
	type fragKey struct {
		src [6]byte
		seq byte
	}
	firsts := make(map[fragKey][]byte)
	lastSeq := make(map[[6]byte]byte)
	for i, f := range fs {
		if len(f) < 14 {
			continue
		}
		if bytes.Equal(f[6:11], guestMAC) || bytes.Equal(f[0:5], guestMAC) {
			return c, fmt.Errorf("frame %d on the uplink carries a guest MAC unencapsulated: %x", i, f)
		}
		udp, ok := qemuUDP7407(f)
		if !ok {
			continue
		}
		segs, err := qemuGSOSegments(udp, 1472)
		if err != nil {
			return c, fmt.Errorf("datagram %d: %v", i, err)
		}
		if len(segs) > 1 {
			c.gso++
		}
		for _, payload := range segs {
			if len(payload) < 18 {
				return c, fmt.Errorf("datagram %d: a %d-byte segment, too short for a fence frame", i, len(payload))
			}
			if et := binary.BigEndian.Uint16(payload[12:14]); et != 0x88b5 {
				return c, fmt.Errorf("datagram %d: outer EtherType %#04x, want 0x88b5", i, et)
			}
			src := payload[6:12]
			if !bytes.Equal(src, outer1) && !bytes.Equal(src, outer2) {
				return c, fmt.Errorf("datagram %d: outer source %x is neither host's outer MAC", i, src)
			}
			hdr := payload[14:18]
			ver, ft, seq := hdr[0]>>6, (hdr[0]>>4)&3, hdr[0]&0xf
			fence := uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
			if ver != 1 {
				return c, fmt.Errorf("datagram %d: fence header version %d", i, ver)
			}
			if fence == 0 {
				continue // control channel (hellos)
			}
			if fence != fenceID {
				return c, fmt.Errorf("datagram %d: fence %#x, want %#x", i, fence, fenceID)
			}
			inner := payload[18:]
			key := fragKey{src: [6]byte(src), seq: seq}
			switch ft {
			case 0:
				if seq != 0 {
					return c, fmt.Errorf("datagram %d: whole frame with Seq %d", i, seq)
				}
			case 1:
				if _, dup := firsts[key]; dup {
					return c, fmt.Errorf("datagram %d: a second first fragment of Seq %d from %x", i, seq, src)
				}
				if last, ok := lastSeq[key.src]; ok && last == seq {
					return c, fmt.Errorf("datagram %d: Seq %d again from %x: the sender must increment it per fragmented frame", i, seq, src)
				}
				lastSeq[key.src] = seq
				firsts[key] = inner
				continue
			case 2:
				first, ok := firsts[key]
				if !ok {
					return c, fmt.Errorf("datagram %d: last fragment of Seq %d from %x without a first", i, seq, src)
				}
				delete(firsts, key)
				inner = append(append([]byte(nil), first...), inner...)
				c.pairs++
			default:
				return c, fmt.Errorf("datagram %d: reserved fragment type 3", i)
			}
			// Inner Ethernet/IPv4/ICMP echo between the guests.
			if len(inner) < 14+20+8 || binary.BigEndian.Uint16(inner[12:14]) != 0x0800 || inner[14+9] != 1 {
				continue
			}
			ihl := int(inner[14]&0xf) * 4
			if len(inner) < 14+ihl+8 {
				continue
			}
			if total := int(binary.BigEndian.Uint16(inner[14+2:])); 14+total != len(inner) {
				return c, fmt.Errorf("datagram %d: inner IPv4 length %d in a %d-byte frame (bad reassembly?)", i, total, len(inner))
			}
			icmpType, srcIP, dstIP := inner[14+ihl], inner[14+12:14+16], inner[14+16:14+20]
			fromU1 := bytes.Equal(srcIP, ip31) && bytes.Equal(dstIP, ip32) && bytes.Equal(src, outer1)
			fromU2 := bytes.Equal(srcIP, ip32) && bytes.Equal(dstIP, ip31) && bytes.Equal(src, outer2)
			switch {
			case len(inner) == 1514 && icmpType == 8 && fromU1:
				c.big[0]++
			case len(inner) == 1514 && icmpType == 0 && fromU2:
				c.big[1]++
			case len(inner) < 1514 && icmpType == 8 && fromU1:
				c.small[0]++
			case len(inner) < 1514 && icmpType == 8 && fromU2:
				c.small[1]++
			}
		}
	}
	c.frames = len(fs)
	return c, nil
}

// qemuFDB reads every fence's bridge table with `corral fdb --json`:
// fence ID → MAC → local port ID (0 for a remote host).
func qemuFDB(t *testing.T, adminSock string) map[uint32]map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "fdb", "--json", "--admin", "unix://"+adminSock).Output()
	if err != nil {
		t.Fatalf("corral fdb --json: %v\n%s", err, out)
	}
	var fences []admin.FenceFDB
	if err := json.Unmarshal(out, &fences); err != nil {
		t.Fatalf("corral fdb --json: %v\n%s", err, out)
	}
	m := make(map[uint32]map[string]uint64)
	for _, f := range fences {
		m[f.Fence] = make(map[string]uint64)
		for _, e := range f.Entries {
			m[f.Fence][strings.ToLower(e.MAC)] = e.Port
		}
	}
	return m
}

// qemuGSOSegments splits the payload of a captured UDP packet into the
// datagrams that go on the wire. On a veth, tcpdump sees UDP GSO batches
// before segmentation: datagrams of one size back to back, the last maybe
// shorter. The first datagram's size is the fence frame's own size (from
// the inner IPv4/IPv6/ARP header) or, for a first fragment, max (it is as
// large as fits).
func qemuGSOSegments(p []byte, max int) ([][]byte, error) {
	const outer, hdrLen = 14, 4
	if len(p) < outer+hdrLen {
		return nil, fmt.Errorf("%d bytes, too short for a fence frame", len(p))
	}
	size := max
	if ft := (p[outer] >> 4) & 3; ft == 0 {
		inner := p[outer+hdrLen:]
		n := len(inner)
		if len(inner) >= 14 {
			switch binary.BigEndian.Uint16(inner[12:14]) {
			case 0x0800:
				if len(inner) >= 14+20 {
					n = 14 + int(binary.BigEndian.Uint16(inner[16:18]))
				}
			case 0x86dd:
				if len(inner) >= 14+40 {
					n = 14 + 40 + int(binary.BigEndian.Uint16(inner[18:20]))
				}
			case 0x0806:
				n = 42
			}
		}
		size = outer + hdrLen + n
	}
	if size <= outer+hdrLen || size > max {
		return nil, fmt.Errorf("a %d-byte fence frame; the uplink carries at most %d", size, max)
	}
	var segs [][]byte
	for len(p) > size {
		segs = append(segs, p[:size])
		p = p[size:]
	}
	return append(segs, p), nil
}

// qemuReadPcap returns the frames of a pcap file with Ethernet link type
// (what tcpdump -w writes); a last record cut short (tcpdump is still
// writing) is left out.
func qemuReadPcap(b []byte) ([][]byte, error) {
	h, ps, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil && (h.ByteOrder == nil || !errors.Is(err, io.ErrUnexpectedEOF)) {
		return nil, err // no file header, or not a cut record
	}
	if h.LinkType != pcap.LinkTypeEthernet {
		return nil, fmt.Errorf("pcap: link type %d, want %d (Ethernet)", h.LinkType, pcap.LinkTypeEthernet)
	}
	frames := make([][]byte, 0, len(ps))
	for _, p := range ps {
		frames = append(frames, p.Data)
	}
	return frames, nil
}

// qemuUDP7407 returns the UDP payload of an Ethernet/IPv4/UDP frame to or
// from port 7407.
func qemuUDP7407(f []byte) ([]byte, bool) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return nil, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0xf) * 4
	if ip[9] != 17 || len(ip) < ihl+8 {
		return nil, false
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[0:2]) != 7407 && binary.BigEndian.Uint16(udp[2:4]) != 7407 {
		return nil, false
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return nil, false
	}
	return udp[8:ulen], true
}
