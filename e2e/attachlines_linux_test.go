package e2e

// TestE2EQEMUAttachLines (issue 11 item 2): the lines corral prints are
// the lines that work. corral runs with paths under $XDG_RUNTIME_DIR like
// its default configuration; `corral attach-lines` (which finds the admin
// socket by itself) gives each address's lines, the same as corral
// logged; QEMU started with exactly those lines — the stream line of
// fence default and the dgram line of fence lab — boots guests that both
// get 10.0.2.15 from their fence's fresh gateway; and the tcp, socket and
// server=on lines connect (QEMU started with -S, no guest).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/e2e/harness"
)

func TestE2EQEMUAttachLines(t *testing.T) {
	harness.NeedRoot(t)
	harness.GuestImage(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 not found (run contrib/test-deps.sh): %v", err)
	}
	rt := harness.RuntimeDir(t)
	sw := harness.StartCorral(t, nil, `
fences:
  - name: default
    id: 1
    listen: ["unix://$XDG_RUNTIME_DIR/corral/default.sock", "tcp://127.0.0.1:0"]
    dial: ["unix://$XDG_RUNTIME_DIR/vm-server.sock"]
    gateway: {enabled: true}
  - name: lab
    id: 2
    listen: ["unixgram://$XDG_RUNTIME_DIR/corral/lab.dgram"]
    gateway: {enabled: true}
`)
	// The client commands find the admin socket under $XDG_RUNTIME_DIR.
	t.Setenv("XDG_RUNTIME_DIR", rt)
	adminSock := filepath.Join(rt, "corral", "admin.sock")
	bin := harness.CorralBinary(t)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		if err != nil {
			t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var fas []admin.FenceAttach
	if err := json.Unmarshal([]byte(run("attach-lines", "--json")), &fas); err != nil {
		t.Fatal(err)
	}
	line := func(fence, scheme, client string, dial bool) string {
		t.Helper()
		for _, fa := range fas {
			for _, ad := range fa.Addrs {
				if fa.Name != fence || ad.Dial != dial || !strings.HasPrefix(ad.Addr, scheme+"://") {
					continue
				}
				for _, l := range ad.Lines {
					if l.Client == client {
						return l.Line
					}
				}
			}
		}
		t.Fatalf("no %s line for %s %s (dial %v) in %+v", client, fence, scheme, dial, fas)
		return ""
	}
	stream := line("default", "unix", "qemu", false)
	dgram := line("lab", "unixgram", "qemu", false)
	if want := "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=" + filepath.Join(rt, "corral", "default.sock") +
		" -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"; stream != want {
		t.Fatalf("stream line:\n got %s\nwant %s", stream, want)
	}
	// What corral logged, and --client, are the same lines.
	for _, l := range []string{stream, dgram} {
		if !strings.Contains(sw.Log(), `qemu="`+l+`"`) {
			t.Errorf("corral did not log %s:\n%s", l, sw.Log())
		}
	}
	if got := run("attach-lines", "default", "--client", "qemu"); !strings.HasPrefix(got, stream+"\n") {
		t.Errorf("attach-lines default --client qemu:\n%s\nwant first %s", got, stream)
	}

	// The lines that connect: QEMU -S (no guest) with each, one at a
	// time; fence default has its gateway's port and then QEMU's.
	ports := func() int {
		st, err := acCorralStatus(t, adminSock)
		if err != nil {
			return -1
		}
		return acPortsIn(st, 1)
	}
	harness.WaitFor(t, 30*time.Second, "the gateway's port alone in fence default", func() bool { return ports() == 1 })
	for _, l := range []string{line("default", "tcp", "qemu", false), line("default", "tcp", "qemu-socket", false), line("default", "unix", "qemu", true)} {
		args := append([]string{"-accel", "tcg", "-nodefaults", "-display", "none", "-monitor", "none", "-S"}, shellFields(t, l)...)
		q := harness.Start(t, nil, qemu, args...)
		harness.WaitFor(t, 60*time.Second, "a port for QEMU -S with "+l, func() bool { return ports() == 2 || q.Exited() })
		if q.Exited() {
			t.Fatalf("QEMU with %s exited: %v\n%s", l, q.Wait(), q.Log())
		}
		q.Kill()
		harness.WaitFor(t, 60*time.Second, "the port of QEMU -S to go", func() bool { return ports() == 1 })
	}

	// Two guests, exactly the stream and dgram lines (and so the same
	// MAC, in two fences): each gets 10.0.2.15 from its fence's gateway.
	script := `udhcpc -i eth0 -n -q -t 10 -T 3 || { echo "FAIL: no lease"; exit 1; }
ip -4 addr show dev eth0
ip -4 addr show dev eth0 | grep -q "inet 10.0.2.15/24" || { echo "FAIL: not 10.0.2.15"; exit 2; }
`
	start := time.Now()
	var guests []*harness.Guest
	for i, l := range []string{stream, dgram} {
		guests = append(guests, harness.BootGuest(t, harness.GuestSpec{Name: fmt.Sprintf("al%d", i+1), Timeout: qemuLife,
			ExtraArgs: shellFields(t, l), Script: script}))
	}
	for _, g := range guests {
		g.MustSucceed(t)
	}
	t.Logf("two guests with the printed lines got 10.0.2.15 in %v", time.Since(start).Round(time.Millisecond))

	// The leases are in this instance's state directory.
	for _, f := range []string{"leases-1.json", "leases-2.json"} {
		m, _ := filepath.Glob(filepath.Join(rt, "state", "corral", "*", f))
		if len(m) != 1 {
			t.Errorf("%s: found %v under %s/state/corral/*/", f, m, rt)
			continue
		}
		b, err := os.ReadFile(m[0])
		if err != nil || !strings.Contains(string(b), `"ip": "10.0.2.15"`) || !strings.Contains(filepath.Base(filepath.Dir(m[0])), "corral-admin.sock-") {
			t.Errorf("%s (%v):\n%s", m[0], err, b)
		}
	}
	if err := sw.Stop(); err != nil {
		t.Errorf("corral on SIGTERM: %v\n%s", err, sw.Log())
	}
}

// shellFields splits a printed line as a shell would; the lines of this
// test need no quoting, so it insists there is none.
func shellFields(t *testing.T, line string) []string {
	t.Helper()
	if strings.ContainsAny(line, `'"\`) {
		t.Fatalf("line %q is quoted; this test's paths need no quoting", line)
	}
	return strings.Fields(line)
}
