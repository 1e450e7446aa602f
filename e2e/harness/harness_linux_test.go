package harness_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

func TestHarnessNamespacesAndVeth(t *testing.T) {
	harness.NeedRoot(t)
	a := harness.NewNS(t, "ha")
	b := harness.NewNS(t, "hb")
	harness.Veth(t, a, "ve0", b, "ve1", 1400)
	a.MustExec(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "ve0")
	b.MustExec(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "ve1")
	if out := b.MustExec(t, "ip", "link", "show", "ve1"); !strings.Contains(out, "mtu 1400") || !strings.Contains(out, "UP") {
		t.Fatalf("ve1 not up with mtu 1400:\n%s", out)
	}
	out := a.MustExec(t, "ping", "-c", "2", "-i", "0.2", "-W", "5", "192.0.2.2")
	if !strings.Contains(out, "2 received") {
		t.Fatalf("ping through the veth pair:\n%s", out)
	}
	// A pair with one end in the test's own namespace; that end is deleted
	// when the (sub)test ends.
	hostEnd := fmt.Sprintf("ch%d", os.Getpid()%1000000)
	t.Run("host end", func(t *testing.T) {
		harness.Veth(t, nil, hostEnd, b, "ve2", 0)
		(*harness.NS)(nil).MustExec(t, "ip", "link", "show", hostEnd)
		b.MustExec(t, "ip", "link", "show", "ve2")
	})
	if out, err := (*harness.NS)(nil).Exec(t.Context(), "ip", "link", "show", hostEnd); err == nil {
		t.Fatalf("%s still exists after its test ended:\n%s", hostEnd, out)
	}
	// The namespace really is separate: the address is not here.
	if out, err := (*harness.NS)(nil).Exec(t.Context(), "ip", "-o", "addr", "show"); err != nil || strings.Contains(out, "192.0.2.1/24") {
		t.Fatalf("address leaked into the test's namespace (err %v):\n%s", err, out)
	}
}

func TestHarnessProc(t *testing.T) {
	p := harness.Start(t, nil, "sh", "-c", "echo hello; exec sleep 30")
	if err := p.WaitLog("hello", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Fatalf("Stop of sleep: want killed by SIGTERM, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	q := harness.Start(t, nil, "sh", "-c", "echo bye; exit 3")
	if err := q.Wait(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Wait: want exit status 3, got %v", err)
	}
	if err := q.WaitLog("never printed", 5*time.Second); err == nil {
		t.Fatal("WaitLog of an exited process succeeded for text it never printed")
	}
	if q.Log() != "bye\n" {
		t.Fatalf("Log = %q", q.Log())
	}
}

func TestHarnessEncodeScript(t *testing.T) {
	enc, err := harness.EncodeScript("echo hi\n")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(enc, " \n") {
		t.Fatalf("encoded script has blanks: %q", enc)
	}
	kernel, initrd := "/k", "/i"
	args, err := harness.QEMUArgs(kernel, initrd, harness.GuestSpec{Name: "g", Netdev: "stream,server=off,addr.type=unix,addr.path=/x", MAC: "52:54:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"-accel tcg", "-m 128M", "-netdev stream,server=off,addr.type=unix,addr.path=/x,id=n0", "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:00:00:01", "-no-reboot"} {
		if !strings.Contains(joined, want) {
			t.Errorf("qemu args lack %q: %s", want, joined)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 4000)
	for i := range big {
		big[i] = byte('a' + rng.IntN(26))
	}
	if _, err := harness.QEMUArgs(kernel, initrd, harness.GuestSpec{Script: string(big)}); !errors.Is(err, harness.ErrScriptTooLong) {
		t.Fatalf("a script too long for the kernel command line: err %v, want ErrScriptTooLong", err)
	}
}

// TestHarnessGuest boots a guest attached to a unix stream socket of the
// test's own, and checks the script's exit status, its output and QEMU's
// 4-byte length framing of the guest's ARP request.
func TestHarnessGuest(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sock := filepath.Join(dir, "sw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const mac = "52:54:00:00:00:0a"
	start := time.Now()
	g := harness.BootGuest(t, harness.GuestSpec{
		Name:   "h1",
		Netdev: "stream,server=off,addr.type=unix,addr.path=" + sock,
		MAC:    mac,
		Script: "ip addr add 192.0.2.10/24 dev eth0\necho guest-says-hi\nping -c 1 -W 3 192.0.2.99\nexit 3\n",
	})
	ln.(*net.UnixListener).SetDeadline(time.Now().Add(harness.GuestTimeout))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("QEMU did not connect: %v", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(harness.GuestTimeout))
	hw, _ := net.ParseMAC(mac)
	want := []byte{0x00, 0x01, 0x08, 0x00, 6, 4, 0, 1} // ARP request, Ethernet/IPv4
	var hdr [4]byte
	frame := make([]byte, 65536)
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			t.Fatalf("reading a frame length: %v\nconsole:\n%s", err, g.Log())
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 14 || n > 1514 {
			t.Fatalf("implausible frame length %d", n)
		}
		if _, err := io.ReadFull(conn, frame[:n]); err != nil {
			t.Fatal(err)
		}
		f := frame[:n]
		if !bytes.Equal(f[6:12], hw) {
			t.Fatalf("frame from %x, want %s", f[6:12], mac)
		}
		if binary.BigEndian.Uint16(f[12:14]) != 0x0806 {
			continue // IPv6 neighbour discovery and the like
		}
		if n != 42 || !bytes.Equal(f[14:22], want) || !bytes.Equal(f[38:42], []byte{192, 0, 2, 99}) {
			t.Fatalf("unexpected ARP frame (%d bytes): %x", n, f)
		}
		break
	}
	t.Logf("first ARP after %v", time.Since(start))
	out, status, err := g.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if status != 3 {
		t.Fatalf("status %d, want 3\n%s", status, out)
	}
	if !strings.Contains(out, "guest-says-hi") {
		t.Fatalf("console lacks the script's output:\n%s", out)
	}
	t.Logf("guest boot+script+poweroff took %v", time.Since(start))
}

// TestHarnessGuestPair boots two guests cabled directly by QEMU (server=on
// and server=off) and pings between them: the image's networking and the
// console handshake (Send) work without corral.
func TestHarnessGuestPair(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sock := filepath.Join(dir, "pair.sock")
	// Each guest: address, READY, wait for go, ping, PING-OK, wait for done.
	script := func(me, peer string) string {
		return "ip addr add " + me + "/24 dev eth0\necho READY\nread -r x\n[ \"$x\" = go ] || exit 7\n" +
			"ping -c 2 -w 60 " + peer + " || exit 1\necho PING-OK\nread -r x\n"
	}
	start := time.Now()
	a := harness.BootGuest(t, harness.GuestSpec{
		Name:   "pa",
		Netdev: "stream,server=on,addr.type=unix,addr.path=" + sock,
		MAC:    "52:54:00:00:00:21",
		Script: script("192.0.2.21", "192.0.2.22"),
	})
	harness.WaitFor(t, 30*time.Second, "QEMU's listening socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	b := harness.BootGuest(t, harness.GuestSpec{
		Name:   "pb",
		Netdev: "stream,server=off,addr.type=unix,addr.path=" + sock,
		MAC:    "52:54:00:00:00:22",
		Script: script("192.0.2.22", "192.0.2.21"),
	})
	for _, g := range []*harness.Guest{a, b} {
		g.WaitConsole(t, "READY", harness.GuestTimeout)
	}
	t.Logf("both guests ready after %v", time.Since(start))
	for _, g := range []*harness.Guest{a, b} {
		if err := g.Send("go"); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*harness.Guest{a, b} {
		g.WaitConsole(t, "PING-OK", harness.GuestTimeout)
	}
	for _, g := range []*harness.Guest{a, b} {
		if err := g.Send("done"); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*harness.Guest{a, b} {
		g.MustSucceed(t)
	}
	t.Logf("two guests booted, pinged and stopped in %v", time.Since(start))
}

// TestHarnessStartCorral starts the real binary with a configuration that
// uses $XDG_RUNTIME_DIR (which StartCorral points at RuntimeDir), restarts
// it, and checks that SIGTERM removes its sockets.
func TestHarnessStartCorral(t *testing.T) {
	harness.NeedRoot(t)
	cfg := `
fences:
  - name: x
    id: 7
    listen: ["unix://$XDG_RUNTIME_DIR/corral/x.sock"]
    gateway: {enabled: false}
admin:
  listen: "unix://$XDG_RUNTIME_DIR/corral/admin.sock"
`
	sock := filepath.Join(harness.RuntimeDir(t), "corral", "x.sock")
	for round := range 2 {
		p := harness.StartCorral(t, nil, cfg)
		if !strings.Contains(p.Log(), harness.ReadyMessage) {
			t.Fatalf("round %d: StartCorral returned before %q:\n%s", round, harness.ReadyMessage, p.Log())
		}
		if _, err := os.Stat(sock); err != nil {
			t.Fatalf("round %d: corral's socket is not in RuntimeDir: %v\n%s", round, err, p.Log())
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		c.Close()
		if err := p.Stop(); err != nil {
			t.Fatalf("round %d: corral on SIGTERM: %v\n%s", round, err, p.Log())
		}
		if _, err := os.Stat(sock); err == nil {
			t.Fatalf("round %d: %s left behind after SIGTERM", round, sock)
		}
	}
}

// TestHarnessGuestLongScript boots a guest without a NIC whose script is
// too long for the kernel command line, so it travels in an archive
// appended to the initrd.
func TestHarnessGuestLongScript(t *testing.T) {
	harness.NeedRoot(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for range 100 {
		b.WriteString("# ")
		for range 60 {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		b.WriteString("\n")
	}
	b.WriteString("echo LONG-SCRIPT-END\nexit 4\n")
	g := harness.BootGuest(t, harness.GuestSpec{Name: "long", Script: b.String()})
	out, status, err := g.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if status != 4 || !strings.Contains(out, "LONG-SCRIPT-END") {
		t.Fatalf("status %d, want 4, and LONG-SCRIPT-END on the console:\n%s", status, out)
	}
}
