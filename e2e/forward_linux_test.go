package e2e

// Port forwards added and removed at run time (issue 4 item 6) through
// the admin API with `corral forward add|ls|rm`, and the gateway's status
// and metrics (`corral gateways`, metrics.listen):
//
//	host 127.0.0.1:P ─(forward)─ corral fence fw (id 31, gateway 10.0.2.0/24)
//	                                  │ unix fw.sock
//	                             corral plug ─ ns fw1 tap0 10.0.2.15 (udhcpc)
//	                                            busybox nc -ll -p 8080
//
// The namespace gets its lease, runs a TCP server; a forward added at run
// time reaches it from the host; after `forward rm` the port is closed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// corralCLI runs the corral binary with args and returns its exit status
// and output.
func corralCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.CorralBinary(t), args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("corral %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, out.String(), errOut.String()
}

// readGreeting connects to addr and reads what the server says.
func readGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestIntegrationForward(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sock := filepath.Join(dir, "fw.sock")
	adminSock := filepath.Join(dir, "admin.sock")
	metricsPort := harness.FreeTCPPort(t)
	cfg := fmt.Sprintf(`state_dir: %s
fences:
  - {name: fw, id: 31, listen: ["unix://%s"], gateway: {enabled: true, ipv6: false}}
  - {name: nogw, id: 32}
admin: {listen: "unix://%s"}
metrics: {listen: "127.0.0.1:%d"}
log: {level: debug}
`, filepath.Join(dir, "state"), sock, adminSock, metricsPort)
	corral := harness.StartCorral(t, nil, cfg)

	ns := harness.NewNS(t, "fw1")
	plug := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+sock, "--tap", "tap0", "--netns", ns.Name)
	harness.WaitFor(t, 30*time.Second, "tap0 in "+ns.Name, func() bool {
		if plug.Exited() {
			t.Fatalf("corral plug exited: %v\n%s", plug.Wait(), plug.Log())
		}
		_, err := nsRun(t, ns, 10*time.Second, "ip", "link", "show", "dev", "tap0")
		return err == nil
	})
	ns.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := nsRun(t, ns, 60*time.Second, "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n",
		"-t", "10", "-T", "2", "-x", "hostname:vmfw", "-s", script); err != nil {
		t.Fatalf("udhcpc: %v\n%s\ncorral:\n%s", err, out, corral.Log())
	}
	if addrs := ns.MustExec(t, "ip", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(addrs, "10.0.2.15/24") {
		t.Fatalf("tap0 has no 10.0.2.15/24:\n%s", addrs)
	}
	harness.Start(t, ns, "busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/echo", "hello from fw1")

	port := harness.FreeTCPPort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	admin := "--admin=" + adminSock

	// Errors a user can act on.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"forward", "add", "nope", "tcp", listen, "10.0.2.15:8080"}, 1, `no fence "nope"`},
		{[]string{"forward", "add", "nogw", "tcp", listen, "10.0.2.15:8080"}, 1, `fence "nogw" has no gateway`},
		{[]string{"forward", "add", "fw", "tcp", listen, "10.0.2.15"}, 2, `target "10.0.2.15"`},
	} {
		code, out, errOut := corralCLI(t, append(tc.args, admin)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("corral %v: exit %d, stderr %q, want exit %d and %q\n%s", tc.args, code, errOut, tc.code, tc.want, out)
		}
	}

	code, out, errOut := corralCLI(t, "forward", "add", "fw", "tcp", listen, "10.0.2.15:8080", admin)
	if code != 0 || !strings.Contains(out, "forwarding tcp "+listen+" -> 10.0.2.15:8080") {
		t.Fatalf("forward add: exit %d\n%s%s", code, out, errOut)
	}
	var greeting string
	harness.WaitFor(t, 30*time.Second, "the namespace's server through "+listen, func() bool {
		greeting, _ = readGreeting(listen)
		return strings.Contains(greeting, "hello from fw1")
	})

	// A second forward on the same address is refused: in use.
	code, _, errOut = corralCLI(t, "forward", "add", "fw", "tcp", listen, "10.0.2.15:8081", admin)
	if code != 1 || !strings.Contains(errOut, "in use") {
		t.Errorf("second forward add: exit %d, stderr %q; want 1 and \"in use\"", code, errOut)
	}

	code, out, errOut = corralCLI(t, "forward", "ls", "fw", "--json", admin)
	var ffs []struct {
		Name     string `json:"name"`
		Forwards []struct{ Proto, Listen, Target string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &ffs) != nil || len(ffs) != 1 || len(ffs[0].Forwards) != 1 ||
		ffs[0].Forwards[0].Listen != listen || ffs[0].Forwards[0].Target != "10.0.2.15:8080" {
		t.Errorf("forward ls --json: exit %d\n%s%s", code, out, errOut)
	}

	// Gateway status: the lease and the forward; metrics: the gateway's.
	code, out, errOut = corralCLI(t, "gateways", "fw", admin)
	for _, want := range []string{"fence fw (31): gateway 10.0.2.2 in 10.0.2.0/24", "IPv6 off", "10.0.2.15", "vmfw",
		"forward tcp " + listen + " -> 10.0.2.15:8080"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("corral gateways: exit %d, output lacks %q\n%s%s", code, want, out, errOut)
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`corral_gateway_forwards{fence="fw"} 1`, `corral_gateway_dhcp_leases{fence="fw"} 1`,
		`corral_fence_ports{fence="fw"} 2`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	code, out, errOut = corralCLI(t, "forward", "rm", "fw", "tcp", listen, admin)
	if code != 0 || !strings.Contains(out, "removed tcp "+listen) {
		t.Fatalf("forward rm: exit %d\n%s%s", code, out, errOut)
	}
	if g, err := readGreeting(listen); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after forward rm, %s: got %q, %v; want connection refused", listen, g, err)
	}
	code, _, errOut = corralCLI(t, "forward", "rm", "fw", "tcp", listen, admin)
	if code != 1 || !strings.Contains(errOut, "has no forward") {
		t.Errorf("second forward rm: exit %d, stderr %q", code, errOut)
	}
	// The server in the namespace is still there: a new forward reaches it.
	code, out, errOut = corralCLI(t, "forward", "add", "31", "tcp", listen, "10.0.2.15:8080", admin)
	if code != 0 {
		t.Fatalf("forward add again: exit %d\n%s%s", code, out, errOut)
	}
	harness.WaitFor(t, 30*time.Second, "the server again through "+listen, func() bool {
		greeting, _ = readGreeting(listen)
		return strings.Contains(greeting, "hello from fw1")
	})
	if err := corral.Stop(); err != nil {
		t.Fatalf("corral stop: %v\n%s", err, corral.Log())
	}
	if g, err := readGreeting(listen); err == nil {
		t.Errorf("after corral stopped, %s still answers %q", listen, g)
	}
}
