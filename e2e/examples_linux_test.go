package e2e

// The recipes of contrib/examples, run as written with their real tools
// (Debian packages: socat, openssh-server/-client, user-mode-linux, passt):
//
//	ssh cable:  ns x1 ─ plug ─ corral A ═ ssh-cable.sh (socat, ssh → local sshd) ═ corral B ─ plug ─ ns x2
//	UML:        uml-guest.sh (linux.uml, vec0 BESS) ─ corral (unixpacket, gateway 10.0.2.2)
//	passt:      ns g ─ plug ─ corral ─ dial ─ passt-gateway.sh in ns out ─ veth ─ ns up (10.99.0.2)

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// exampleScript returns the path of contrib/examples/name.
func exampleScript(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(harness.RepoRoot(t), "contrib", "examples", name)
}

// needTool fails t when a program the recipe needs is missing (make
// test-deps installs it).
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: run make test-deps (contrib/test-deps.sh installs it)", n)
		}
	}
}

// pingUntil pings dst from ns until it answers (ARP, links coming up).
func pingUntil(t *testing.T, ns *harness.NS, dst string, logs func() string) {
	t.Helper()
	var out string
	var err error
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err = ns.Exec(ctx, "ping", "-c", "2", "-i", "0.3", "-W", "2", dst)
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("ping %s from %s: %v\n%s\n%s", dst, ns.Name, err, out, logs())
}

// TestE2EExampleSSHCable runs contrib/examples/ssh-cable.sh between two
// corrals through a throwaway sshd on loopback, and pings across it.
func TestE2EExampleSSHCable(t *testing.T) {
	harness.NeedRoot(t)
	needTool(t, "socat", "ssh", "ssh-keygen", "/usr/sbin/sshd")
	dir := harness.ShortTempDir(t)
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := harness.FreeTCPPort(t)
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile %s
`, port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd insists on its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	sshd := harness.StartGroup(t, nil, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	harness.WaitFor(t, 30*time.Second, "sshd listening", func() bool {
		if sshd.Exited() {
			t.Fatalf("sshd exited: %v\n%s", sshd.Wait(), sshd.Log())
		}
		return strings.Contains(sshd.Log(), "Server listening")
	})

	sa, sb := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	harness.StartCorral(t, nil, fmt.Sprintf("fences: [{name: A, id: 1, listen: [\"unix://%s\"]}]\nadmin: {listen: \"unix://%s/a-admin.sock\"}\n", sa, dir))
	harness.StartCorral(t, nil, fmt.Sprintf("fences: [{name: B, id: 1, listen: [\"unix://%s\"]}]\nadmin: {listen: \"unix://%s/b-admin.sock\"}\n", sb, dir))
	x1, x2 := harness.NewNS(t, "x1"), harness.NewNS(t, "x2")
	plugTAP(t, x1, sa, "192.0.2.1/24")
	plugTAP(t, x2, sb, "192.0.2.2/24")

	bin := harness.CorralBinary(t)
	cable := harness.StartGroup(t, []string{"CORRAL=" + bin, "REMOTE_CORRAL=" + bin},
		exampleScript(t, "ssh-cable.sh"), sa, "root@127.0.0.1",
		sb, "-p", fmt.Sprint(port), "-i", filepath.Join(dir, "client"),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes")
	pingUntil(t, x1, "192.0.2.2", func() string { return "cable:\n" + cable.Log() + "\nsshd:\n" + sshd.Log() })
	if cable.Exited() {
		t.Fatalf("the cable exited: %v\n%s", cable.Wait(), cable.Log())
	}

	// The line as the README used to have it, unescaped, fails in socat.
	out, err := exec.Command("socat", "EXEC:"+bin+" plug unix://"+sa+" --stdio", "EXEC:true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "wrong number of parameters") {
		t.Errorf("unescaped socat line: %v\n%s (want socat's parameter error)", err, out)
	}
}

// TestE2EExampleUML boots User Mode Linux with contrib/examples/uml-guest.sh
// and uml-init.sh on a fence with a gateway: vec0 up with its mac=, a DHCP
// lease, and pings to the gateway.
func TestE2EExampleUML(t *testing.T) {
	harness.NeedRoot(t)
	needTool(t, "linux.uml", "busybox")
	dir := harness.ShortTempDir(t)
	seq := filepath.Join(dir, "lab.seq")
	harness.StartCorral(t, nil, fmt.Sprintf(`fences:
  - name: lab
    id: 1
    listen: ["unixpacket://%s"]
    gateway: {enabled: true, subnet: 10.0.2.0/24}
admin: {listen: "unix://%s/admin.sock"}
`, seq, dir))
	const mac = "52:54:00:12:34:60"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exampleScript(t, "uml-guest.sh"), seq, mac, exampleScript(t, "uml-init.sh"), "corral_addr=dhcp")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir, "UML_SOCKET="+filepath.Join(dir, "uml.seq"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stdin = nil
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	log := out.String()
	if !strings.Contains(log, "corral-example: ping ok") || !strings.Contains(log, "corral-example: dhcp ok") {
		t.Fatalf("UML guest (exit %v) did not get a lease and ping the gateway:\n%s", err, tail(log, 60))
	}
	if !strings.Contains(log, mac) {
		t.Errorf("vec0 does not have the MAC given with mac=%s:\n%s", mac, tail(log, 60))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestE2EExamplePasst runs passt with contrib/examples/passt-gateway.sh
// in a namespace with an upstream, lets corral dial it, and checks that a
// guest on the fence gets its DHCP lease from passt and pings upstream.
func TestE2EExamplePasst(t *testing.T) {
	harness.NeedRoot(t)
	needTool(t, "passt", "busybox")
	out, up, g := harness.NewNS(t, "pout"), harness.NewNS(t, "pup"), harness.NewNS(t, "pg")
	harness.Veth(t, out, "o0", up, "u0", 0)
	out.MustExec(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "o0")
	up.MustExec(t, "ip", "addr", "add", "10.99.0.2/24", "dev", "u0")
	out.MustExec(t, "ip", "route", "add", "default", "via", "10.99.0.2")
	// passt answers the guest's pings with ping sockets.
	out.MustExec(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")

	dir := harness.ShortTempDir(t)
	psock := filepath.Join(dir, "passt", "passt.sock")
	// passt binds as nobody (passt-gateway.sh): nobody must reach the socket's directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	passt := harness.StartGroup(t, nil, "ip", "netns", "exec", out.Name, exampleScript(t, "passt-gateway.sh"), psock)
	harness.WaitFor(t, 30*time.Second, "passt's socket", func() bool {
		if passt.Exited() {
			t.Fatalf("passt exited: %v\n%s", passt.Wait(), passt.Log())
		}
		_, err := os.Stat(psock)
		return err == nil
	})
	sock := filepath.Join(dir, "out.sock")
	corral := harness.StartCorral(t, nil, fmt.Sprintf(`fences:
  - name: out
    id: 3
    listen: ["unix://%s"]
    dial: ["unix://%s"]
admin: {listen: "unix://%s/admin.sock"}
`, sock, psock, dir))
	if err := corral.WaitLog("connected", 30*time.Second); err != nil {
		t.Fatalf("corral did not reach passt: %v\n%s\npasst:\n%s", err, corral.Log(), passt.Log())
	}
	p := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+sock, "--tap", "tap0", "--netns", g.Name)
	harness.WaitFor(t, 30*time.Second, "tap0 in "+g.Name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := g.Exec(ctx, "ip", "link", "show", "dev", "tap0")
		return err == nil
	})
	g.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	echo "lease ip=$ip router=$router"
	;;
esac
`), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lease, err := g.Exec(ctx, "busybox", "udhcpc", "-i", "tap0", "-q", "-n", "-f", "-t", "10", "-s", script)
	if err != nil || !strings.Contains(lease, "lease ip=10.99.0.1 router=10.99.0.2") {
		t.Fatalf("DHCP through passt: %v\n%s\ncorral:\n%s\nplug:\n%s\npasst:\n%s", err, lease, corral.Log(), p.Log(), passt.Log())
	}
	pingUntil(t, g, "10.99.0.2", func() string { return "passt:\n" + passt.Log() })
}
