package e2e

// TestIntegrationReload (issue 11 item 7), with the real binary: while two
// ports of fence a ping each other without pause, `corral reload` adds
// fence c with a listener and removes fence b (its port is closed); a
// configuration that changes host.name, and one that does not validate,
// are refused with the key named, and the running one stays; SIGHUP
// applies a new listen address of c. Not one ping of fence a is lost.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

func TestIntegrationReload(t *testing.T) {
	bin := harness.CorralBinary(t)
	dir := harness.RuntimeDir(t)
	adminSock := filepath.Join(dir, "admin.sock")
	sock := func(n string) string { return filepath.Join(dir, n+".sock") }
	fence := func(name string, id int, socks ...string) string {
		var l []string
		for _, s := range socks {
			l = append(l, `"unix://`+sock(s)+`"`)
		}
		return fmt.Sprintf("  - {name: %s, id: %d, listen: [%s]}\n", name, id, strings.Join(l, ", "))
	}
	head := `admin: {listen: "unix://` + adminSock + `"}` + "\nfences:\n"
	p := harness.StartCorral(t, nil, head+fence("a", 1, "a")+fence("b", 2, "b"))
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(p.ConfigFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(name, s string, mac [6]byte) *acClient {
		t.Helper()
		c, err := net.Dial("unix", sock(s))
		if err != nil {
			t.Fatal(err)
		}
		return newACClient(t, name, s, mac, c, true)
	}
	ca, cb, cx := dial("A", "a", acMAC(1)), dial("B", "a", acMAC(2)), dial("X", "b", acMAC(3))
	// Attached, then both ports of a learned.
	acWaitPorts(t, adminSock, map[uint32]int{1: 2, 2: 1})
	cb.send(t, acFrame(acBroadcast, cb.mac, "hello from B"))
	ca.expect(t, acFrame(acBroadcast, cb.mac, "hello from B"), "B's hello")
	ca.send(t, acFrame(cb.mac, ca.mac, "hello from A"))
	cb.expect(t, acFrame(cb.mac, ca.mac, "hello from A"), "A's hello")

	// The ping: A sends, B answers, one at a time, until told to stop.
	stop := make(chan struct{})
	var trips atomic.Int64 // round trips so far
	// flowing waits until the ping has made 5 more round trips.
	flowing := func(after string) {
		t.Helper()
		from := trips.Load()
		harness.WaitFor(t, 60*time.Second, "fence a's ping after "+after, func() bool { return trips.Load() >= from+5 })
	}
	pings := make(chan int, 1)
	pingErr := make(chan string, 1)
	go func() {
		n := 0
		defer func() { pings <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ping := acFrame(cb.mac, ca.mac, fmt.Sprintf("ping %06d", n))
			if err := acWrite(ca, ping); err != nil {
				pingErr <- err.Error()
				return
			}
			if msg := acWait(cb, ping); msg != "" {
				pingErr <- fmt.Sprintf("ping %d: %s", n, msg)
				return
			}
			pong := acFrame(ca.mac, cb.mac, fmt.Sprintf("pong %06d", n))
			if err := acWrite(cb, pong); err != nil {
				pingErr <- err.Error()
				return
			}
			if msg := acWait(ca, pong); msg != "" {
				pingErr <- fmt.Sprintf("pong %d: %s", n, msg)
				return
			}
			n++
			trips.Store(int64(n))
			time.Sleep(time.Millisecond)
		}
	}()
	reload := func() (int, string) {
		t.Helper()
		out, err := exec.Command(bin, "reload", "--admin", adminSock).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}

	// Add c, remove b.
	write(head + fence("a", 1, "a") + fence("c", 3, "c"))
	code, out := reload()
	if code != 0 || !strings.Contains(out, "fence c (3) added") || !strings.Contains(out, "fence b (2) removed") {
		t.Fatalf("corral reload: exit %d\n%s", code, out)
	}
	if c, err := net.Dial("unix", sock("c")); err != nil {
		t.Errorf("fence c's new listener: %v", err)
	} else {
		c.Close()
	}
	if _, err := os.Stat(sock("b")); err == nil {
		t.Errorf("fence b's socket is still there")
	}
	harness.WaitFor(t, 30*time.Second, "fence b's port closed", func() bool { return cx.err() != nil })
	flowing("adding c and removing b")

	// Refused: a key that cannot change, and an invalid file.
	write("host: {name: elsewhere}\n" + head + fence("a", 1, "a"))
	if code, out := reload(); code != 1 || !strings.Contains(out, "host.name cannot change at run time") {
		t.Errorf("reload changing host.name: exit %d\n%s", code, out)
	}
	write(head + "  - {name: a, id: 0}\n")
	if code, out := reload(); code != 1 || !strings.Contains(out, "fences[0].id") {
		t.Errorf("reload of an invalid configuration: exit %d\n%s", code, out)
	}
	if c, err := net.Dial("unix", sock("c")); err != nil {
		t.Errorf("after refused reloads, fence c's listener: %v", err)
	} else {
		c.Close()
	}
	flowing("the refused reloads")

	// SIGHUP: c gets a second address.
	write(head + fence("a", 1, "a") + fence("c", 3, "c", "c2"))
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLog("reload: fence c: listening on unix://"+sock("c2"), 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	flowing("SIGHUP")

	close(stop)
	n := <-pings
	select {
	case msg := <-pingErr:
		t.Fatalf("the ping of fence a failed after %d round trips: %s", n, msg)
	default:
	}
	if n < 10 {
		t.Fatalf("only %d round trips", n)
	}
	t.Logf("%d round trips of fence a across three reloads, none lost", n)
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "port detached") && strings.Contains(l, " fence=1 ") {
			t.Errorf("a port of fence a was detached: %s", l)
		}
	}
}

// acWrite sends one frame on c's stream.
func acWrite(c *acClient, frame []byte) error {
	b := make([]byte, 4, 4+len(frame))
	b[2], b[3] = byte(len(frame)>>8), byte(len(frame))
	_, err := c.conn.Write(append(b, frame...))
	return err
}

// acWait waits for want on c: "" when it came next, else what went wrong.
func acWait(c *acClient, want []byte) string {
	select {
	case got, ok := <-c.rx:
		if !ok {
			return fmt.Sprintf("%s: connection ended (%v)", c.name, c.err())
		}
		if string(got) != string(want) {
			return fmt.Sprintf("%s: got %q, want %q", c.name, got, want)
		}
		return ""
	case <-time.After(30 * time.Second):
		return c.name + ": lost (nothing within 30 s)"
	}
}
