package e2e

// `corral plug` with TAP devices in network namespaces.
//
//	ns p1 (tap0 192.0.2.1/24) ─┐
//	ns p2 (tap0 192.0.2.2/24) ─┴─ plug ─ unix a.sock ─ corral fence A (id 1)
//	ns p3 (tap0 192.0.2.2/24) ─── plug ─ unix b.sock ─ corral fence B (id 2)
//
// p1 and p2 ping each other; p3 has p2's address in another fence and
// gets no answer from p1, and p1's ARP never sees p3.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// plugTAP runs `corral plug unix://sock --tap tap0 --netns ns`, waits for
// the TAP to appear, and gives it addr.
func plugTAP(t *testing.T, ns *harness.NS, sock, addr string) *harness.Proc {
	t.Helper()
	p := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+sock, "--tap", "tap0", "--netns", ns.Name, "--log-level", "debug")
	harness.WaitFor(t, 30*time.Second, "tap0 in "+ns.Name, func() bool {
		if p.Exited() {
			t.Fatalf("corral plug exited: %v\n%s", p.Wait(), p.Log())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := ns.Exec(ctx, "ip", "link", "show", "dev", "tap0")
		return err == nil
	})
	ns.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
	ns.MustExec(t, "ip", "addr", "add", addr, "dev", "tap0")
	return p
}

func plugMAC(t *testing.T, ns *harness.NS) string {
	t.Helper()
	out := ns.MustExec(t, "cat", "/sys/class/net/tap0/address")
	return strings.TrimSpace(out)
}

func TestIntegrationPlug(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sa, sb := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	adminSock := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`fences:
  - {name: A, id: 1, listen: ["unix://%s"]}
  - {name: B, id: 2, listen: ["unix://%s"]}
admin: {listen: "unix://%s"}
`, sa, sb, adminSock)
	corral := harness.StartCorral(t, nil, cfg)

	t.Run("unreachable address", func(t *testing.T) {
		ns := harness.NewNS(t, "p0")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "plug", "unix://"+filepath.Join(dir, "nobody.sock"),
			"--tap", "tap0", "--netns", ns.Name).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("got %v, want a non-zero exit; output:\n%s", err, out)
		}
		if !strings.Contains(string(out), "cannot reach") || !strings.Contains(string(out), "nobody.sock") {
			t.Errorf("message does not say which address cannot be reached:\n%s", out)
		}
		if _, err := ns.Exec(ctx, "ip", "link", "show", "dev", "tap0"); err == nil {
			t.Errorf("tap0 left behind in %s after a failed plug", ns.Name)
		}
	})

	t.Run("bad usage exits 2", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, args := range [][]string{
			{"plug", "unix://" + sa},
			{"plug", "unix://" + sa, "--tap", "x", "--stdio"},
			{"plug", "nonsense", "--stdio"},
		} {
			out, err := exec.CommandContext(ctx, harness.CorralBinary(t), args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("corral %s: got %v, want exit status 2; output:\n%s", strings.Join(args, " "), err, out)
			}
		}
	})

	p1, p2, p3 := harness.NewNS(t, "p1"), harness.NewNS(t, "p2"), harness.NewNS(t, "p3")
	plug1 := plugTAP(t, p1, sa, "192.0.2.1/24")
	plug2 := plugTAP(t, p2, sa, "192.0.2.2/24")
	plug3 := plugTAP(t, p3, sb, "192.0.2.2/24")
	mac2, mac3 := plugMAC(t, p2), plugMAC(t, p3)

	t.Run("ping within a fence", func(t *testing.T) {
		// The first pings may race ARP and DAD; allow a few attempts.
		var out string
		var err error
		for i := 0; i < 5; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err = p1.Exec(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2")
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("ping 192.0.2.2 from p1: %v\n%s\ncorral:\n%s\nplug1:\n%s\nplug2:\n%s", err, out, corral.Log(), plug1.Log(), plug2.Log())
		}
		p2.MustExec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.1")
		neigh := p1.MustExec(t, "ip", "neigh", "show", "192.0.2.2", "dev", "tap0")
		if !strings.Contains(neigh, mac2) || strings.Contains(neigh, mac3) {
			t.Errorf("p1's neighbour 192.0.2.2 is %q, want p2's MAC %s (p3's is %s)", neigh, mac2, mac3)
		}
	})

	t.Run("no answer across fences", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := p3.Exec(ctx, "ping", "-c", "3", "-i", "0.3", "-W", "1", "192.0.2.1")
		if err == nil {
			t.Fatalf("p3 (fence B) got an answer from 192.0.2.1 (fence A):\n%s", out)
		}
		if !strings.Contains(out, " 0 received") && !strings.Contains(out, "100% packet loss") {
			t.Errorf("ping output:\n%s", out)
		}
		neigh := p3.MustExec(t, "ip", "neigh", "show", "192.0.2.1", "dev", "tap0")
		if strings.Contains(neigh, "lladdr") {
			t.Errorf("p3 resolved 192.0.2.1 across fences: %q", neigh)
		}
		// p1 still talks to p2, the 192.0.2.2 of its own fence.
		p1.MustExec(t, "ip", "neigh", "flush", "dev", "tap0")
		p1.MustExec(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.2")
		neigh = p1.MustExec(t, "ip", "neigh", "show", "192.0.2.2", "dev", "tap0")
		if !strings.Contains(neigh, mac2) {
			t.Errorf("p1's neighbour 192.0.2.2 is %q, want p2's MAC %s", neigh, mac2)
		}
	})

	t.Run("SIGTERM ends plug with status 0", func(t *testing.T) {
		if err := plug3.Stop(); err != nil {
			t.Errorf("plug after SIGTERM: %v\n%s", err, plug3.Log())
		}
	})

	t.Run("plug re-dials when the switch comes back", func(t *testing.T) {
		// A plug with --once exits instead, with status 1 and a reason.
		p4 := harness.NewNS(t, "p4")
		plugOnce := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+sa, "--tap", "tap0", "--netns", p4.Name, "--once")
		if err := plugOnce.WaitLog("plugged", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		corral.Kill() // not a clean stop: the socket file stays behind
		var ee *exec.ExitError
		done := make(chan error, 1)
		go func() { done <- plugOnce.Wait() }()
		select {
		case err := <-done:
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(plugOnce.Log(), "went away") {
				t.Errorf("plug --once after the switch died: %v, want exit status 1 saying the switch went away:\n%s", err, plugOnce.Log())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("plug --once still running 30 s after the switch died")
		}
		for _, p := range []*harness.Proc{plug1, plug2} {
			if err := p.WaitLog("switch went away, re-dialing", 30*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Log())
			}
		}
		// Let them fail a few dials (backoff) before the switch returns.
		harness.WaitFor(t, 30*time.Second, "a failed re-dial", func() bool {
			return strings.Contains(plug1.Log(), "dial failed, retrying")
		})
		corral = harness.StartCorral(t, nil, cfg)
		for _, p := range []*harness.Proc{plug1, plug2} {
			if err := p.WaitLog("plugged again", 30*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, p.Log())
			}
			if p.Exited() {
				t.Fatalf("%s exited: %v\n%s", p.Name, p.Wait(), p.Log())
			}
		}
		// The TAPs stayed; traffic flows through the new switch.
		var out string
		var err error
		for i := 0; i < 10; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err = p1.Exec(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.2")
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("ping 192.0.2.2 from p1 after the switch restarted: %v\n%s\ncorral:\n%s\nplug1:\n%s", err, out, corral.Log(), plug1.Log())
		}
		// SIGTERM still ends a plug with status 0.
		for _, p := range []*harness.Proc{plug1, plug2} {
			if err := p.Stop(); err != nil {
				t.Errorf("%s after SIGTERM: %v\n%s", p.Name, err, p.Log())
			}
		}
	})
}

// TestIntegrationPlugStdio cables stdio to a fence: frames written to
// `corral plug --stdio` reach a unix client in the fence and back.
func TestIntegrationPlugStdio(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sock := filepath.Join(dir, "a.sock")
	harness.StartCorral(t, nil, fmt.Sprintf("fences: [{name: A, id: 1, listen: [\"unix://%s\"]}]\nadmin: {listen: \"\"}\n", sock))

	cmd := exec.Command(harness.CorralBinary(t), "plug", "unix://"+sock, "--stdio")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("plug stderr:\n%s", stderr.String())
		}
	})
	pipe := struct {
		io.Reader
		io.Writer
	}{stdout, stdin}
	sc := newACClient(t, "stdio", "A", acMAC(1), &pipeConn{rw: pipe, c: []io.Closer{stdin, stdout}}, true)

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	uc := newACClient(t, "A/unix", "A", acMAC(2), c, true)

	// The stdio port exists once plug has dialed: retry the first frame.
	f := acFrame(acBroadcast, sc.mac, "hello over stdio")
	harness.WaitFor(t, acDeliverTimeout, "a frame from stdio", func() bool {
		sc.send(t, f)
		select {
		case got := <-uc.rx:
			return string(got) == string(f)
		case <-time.After(300 * time.Millisecond):
			return false
		}
	})
	uc.drain()
	back := acFrame(sc.mac, uc.mac, "reply to stdio")
	uc.send(t, back)
	sc.expect(t, back, "reply to stdio")

	// Closing stdin ends plug with status 0.
	stdin.Close()
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("plug after stdin closed: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("plug still running 30 s after stdin closed")
	}
}

// pipeConn makes a reader/writer pair look like a net.Conn for acClient.
type pipeConn struct {
	rw io.ReadWriter
	c  []io.Closer
	net.Conn
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.rw.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.rw.Write(b) }
func (p *pipeConn) Close() error {
	for _, c := range p.c {
		c.Close()
	}
	return nil
}
