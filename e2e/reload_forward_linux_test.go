package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corralnet/corral/e2e/harness"
)

// A forward added at run time (`corral forward add`) is not in the
// configuration; a reload that restarts its fence's gateway with new
// settings starts it again on the same host port, and a reload that
// removes the gateway removes it.
func TestIntegrationReloadKeepsAddedForwards(t *testing.T) {
	bin := harness.CorralBinary(t)
	dir := harness.RuntimeDir(t)
	adminSock := filepath.Join(dir, "admin.sock")
	conf := func(gateway string) string {
		return fmt.Sprintf("admin: {listen: \"unix://%s\"}\nfences:\n  - {name: g, id: 1, listen: [\"unix://%s/g.sock\"], gateway: %s}\n",
			adminSock, dir, gateway)
	}
	p := harness.StartCorral(t, nil, conf("{enabled: true}"))
	write := func(gateway string) {
		t.Helper()
		if err := os.WriteFile(p.ConfigFile, []byte(conf(gateway)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--admin", adminSock)...).CombinedOutput()
		if err != nil {
			t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := cli("forward", "add", "g", "tcp", "127.0.0.1:0", "10.0.2.15:22")
	m := regexp.MustCompile(`tcp (127\.0\.0\.1:\d+) -> 10\.0\.2\.15:22`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("corral forward add: %s", out)
	}
	listen := m[1]
	accepts := func() bool {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if !accepts() {
		t.Fatalf("the forward's host port %s does not accept", listen)
	}

	// New gateway settings: the gateway restarts, the forward with it.
	write("{enabled: true, lease_time: 2h}")
	if out := cli("reload"); !strings.Contains(out, "gateway (re)started") {
		t.Fatalf("corral reload: %s", out)
	}
	if out := cli("forward", "ls", "g"); !strings.Contains(out, listen) {
		t.Fatalf("after the gateway restarted, the forward added at run time is gone:\n%s\n%s", out, p.Log())
	}
	if !accepts() {
		t.Fatalf("after the gateway restarted, %s does not accept", listen)
	}

	// Without the gateway, no forward.
	write("{enabled: false}")
	if out := cli("reload"); !strings.Contains(out, "gateway removed") {
		t.Fatalf("corral reload: %s", out)
	}
	if accepts() {
		t.Fatalf("the gateway is gone and %s still accepts", listen)
	}
	// Back again: the forward went with the gateway, for good.
	write("{enabled: true}")
	cli("reload")
	if out := cli("forward", "ls", "g"); strings.Contains(out, listen) {
		t.Fatalf("a forward of a removed gateway came back:\n%s", out)
	}
}
