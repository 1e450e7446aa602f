package e2e

// TestIntegrationStatePerInstance (issue 11 item 3), with the real
// binary: copies of one unchanged configuration, each run with its own
// $XDG_RUNTIME_DIR and all with one $XDG_STATE_HOME, keep apart state. A
// copy that ran before leaves leases behind, yet new copies hand out
// 10.0.2.15 first; two copies running at once hand out the same addresses
// to the same MACs; a second corral of a running copy exits with status
// 1 naming it, before it touches a socket; a restarted copy keeps its
// leases.

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/stack/dhcp/dhcptest"
)

const stateConfig = `fences:
  - {name: lab, id: 1, listen: ["unix://$XDG_RUNTIME_DIR/corral/lab.sock"], gateway: {enabled: true}}
`

func TestIntegrationStatePerInstance(t *testing.T) {
	bin := harness.CorralBinary(t)
	cfg := filepath.Join(harness.ShortTempDir(t), "lab.yaml")
	if err := os.WriteFile(cfg, []byte(stateConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	stateHome := harness.ShortTempDir(t)
	t.Setenv("XDG_STATE_HOME", stateHome)
	// start runs a copy with runtime directory rt.
	start := func(rt string) *harness.Proc {
		t.Helper()
		t.Setenv("XDG_RUNTIME_DIR", rt)
		p := harness.Start(t, nil, bin, "run", "--config", cfg)
		if err := p.WaitLog(harness.ReadyMessage, harness.ReadyTimeout); err != nil {
			t.Fatalf("%v\n%s", err, p.Log())
		}
		return p
	}
	lease := func(rt string, mac byte) string {
		t.Helper()
		c, err := net.Dial("unix", filepath.Join(rt, "corral", "lab.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		l, err := dhcptest.StreamLease(c, [6]byte{0x52, 0x54, 0, 0xab, 0, mac}, "", 60*time.Second)
		if err != nil {
			t.Fatalf("lease for MAC …:%02x in %s: %v", mac, rt, err)
		}
		return l.IP.String()
	}
	rtC, rtA, rtB := harness.ShortTempDir(t), harness.ShortTempDir(t), harness.ShortTempDir(t)

	c := start(rtC)
	if got := lease(rtC, 0x0c) + " " + lease(rtC, 0x0d); got != "10.0.2.15 10.0.2.16" {
		t.Fatalf("copy C: leases %s", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	a, b := start(rtA), start(rtB)
	for _, tc := range []struct {
		mac  byte
		want string
	}{{0x01, "10.0.2.15"}, {0x02, "10.0.2.16"}} {
		for _, rt := range []string{rtA, rtB} {
			if got := lease(rt, tc.mac); got != tc.want {
				t.Errorf("copy in %s, MAC %#x: got %s, want %s", rt, tc.mac, got, tc.want)
			}
		}
	}

	// A second corral of copy A: status 1, naming A, before any socket.
	t.Setenv("XDG_RUNTIME_DIR", rtA)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := a.Log()
	out, err := exec.CommandContext(ctx, bin, "run", "--config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second corral of copy A: %v, want exit status 1\n%s", err, out)
	}
	want := "is in use by another corral (pid " + strconv.Itoa(a.Cmd.Process.Pid) + ", admin unix://" + rtA + "/corral/admin.sock)"
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "listening") {
		t.Errorf("second corral's output lacks %q or got as far as listening:\n%s", want, out)
	}
	if a.Log() != before {
		t.Errorf("copy A logged while the second corral started:\n%s", a.Log()[len(before):])
	}

	for _, p := range []*harness.Proc{a, b} {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(stateHome, "corral", "*", "leases-1.json"))
	if len(dirs) != 3 {
		t.Errorf("lease files: %v, want one per copy", dirs)
	}

	// Copy A again: its own leases, whichever MAC asks first.
	start(rtA)
	if got := lease(rtA, 0x02) + " " + lease(rtA, 0x01) + " " + lease(rtA, 0x03); got != "10.0.2.16 10.0.2.15 10.0.2.17" {
		t.Errorf("copy A restarted: leases %s, want 10.0.2.16 10.0.2.15 10.0.2.17", got)
	}
}
