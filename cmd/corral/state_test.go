package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/stack/dhcp/dhcptest"
)

func TestInstanceStateNames(t *testing.T) {
	admin := func(p string) attach.Addr { return attach.Addr{Scheme: attach.Unix, Target: p} }
	key, dir := instanceState("/s", admin("/run/user/1000/corral/admin.sock"), "h")
	if key != "admin unix:///run/user/1000/corral/admin.sock" || !strings.HasPrefix(dir, "/s/run-user-1000-corral-admin.sock-") || len(filepath.Base(dir)) != len("run-user-1000-corral-admin.sock-")+8 {
		t.Errorf("admin socket: got key %q dir %q", key, dir)
	}
	// The name is a function of the cleaned path; different paths (even
	// ones that escape alike) get different directories.
	seen := map[string]string{}
	for _, p := range []string{"/run/user/1000/corral/admin.sock", "/run/user/1000/corral//admin.sock", "/run/user/1000/corral-admin.sock",
		"/run/user-1000/corral/admin.sock", "/tmp/a b/admin.sock", "/tmp/a_b/admin.sock", "/" + strings.Repeat("x/", 60) + "admin.sock"} {
		_, d := instanceState("/s", admin(p), "h")
		if filepath.Dir(d) != "/s" || len(filepath.Base(d)) > 64+9 || strings.ContainsAny(filepath.Base(d), " /") {
			t.Errorf("%s: directory %q", p, d)
		}
		clean := filepath.Clean(p)
		if prev, ok := seen[d]; ok && prev != clean {
			t.Errorf("%s and %s share the directory %s", prev, p, d)
		}
		seen[d] = clean
	}
	if len(seen) != 6 {
		t.Errorf("got %d directories for 6 distinct paths", len(seen))
	}
	for _, tc := range []struct{ name, want string }{
		{"lab1", "/s/host-lab1"},
		{"..", "/s/host-_."},
		{"a/b c", "/s/host-a-b_c"},
	} {
		key, dir := instanceState("/s", attach.Addr{}, tc.name)
		if dir != tc.want || key != "host.name "+tc.name {
			t.Errorf("host.name %q: got %q %q, want dir %q", tc.name, key, dir, tc.want)
		}
	}
}

func TestInstanceDirFromConfig(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/test-xdg")
	t.Setenv("XDG_STATE_HOME", "/var/test-state")
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/var/test-state/corral" || !strings.HasPrefix(cfg.InstanceDir, "/var/test-state/corral/run-test-xdg-corral-admin.sock-") ||
		cfg.InstanceKey != "admin unix:///run/test-xdg/corral/admin.sock" {
		t.Errorf("default: state dir %q, instance %q (%s)", cfg.StateDir, cfg.InstanceDir, cfg.InstanceKey)
	}
	if g := cfg.Fences[0].Gateway; g == nil || g.StateDir != cfg.InstanceDir {
		t.Errorf("the gateway keeps its leases in %q, want the instance's %q", g.StateDir, cfg.InstanceDir)
	}
	cfg, err = parse(t, "state_dir: /srv/st\nhost: {name: lab1}\nadmin: {listen: \"\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InstanceDir != "/srv/st/host-lab1" || cfg.InstanceKey != "host.name lab1" || cfg.Fences[0].Gateway.StateDir != cfg.InstanceDir {
		t.Errorf("without admin socket: instance %q (%s)", cfg.InstanceDir, cfg.InstanceKey)
	}
}

// TestLockInstance: a second lock of one instance directory fails naming
// the holder, in this process too (flock locks open files); after release
// it succeeds.
func TestLockInstance(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{InstanceDir: filepath.Join(dir, "i"), InstanceKey: "admin unix:///x/admin.sock"}
	log := slog.New(slog.DiscardHandler)
	release, err := lockInstance(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.InstanceDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("instance directory: %v %v, want mode 0700", st, err)
	}
	_, err = lockInstance(cfg, log)
	var inUse *StateInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second lock: got %v, want a StateInUseError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "(pid "+strconv.Itoa(os.Getpid())+", admin unix:///x/admin.sock)") || !strings.Contains(msg, cfg.InstanceDir) || !strings.Contains(msg, "admin unix:///x/admin.sock") {
		t.Errorf("message lacks the holder or the directory: %s", msg)
	}
	release()
	release, err = lockInstance(cfg, log)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release()

	// A state directory that cannot be made stops corral, saying why.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := &Config{InstanceDir: filepath.Join(file, "i"), InstanceKey: cfg.InstanceKey}
	if _, err := lockInstance(bad, log); err == nil || !strings.Contains(err.Error(), "must name a directory corral can write") {
		t.Errorf("state directory under a file: got %v", err)
	}
}

// stateYAML is one lab, unchanged between its copies: each copy runs with
// its own $XDG_RUNTIME_DIR.
func stateYAML(root string) string {
	return `state_dir: "` + root + `"
fences:
  - {name: lab, id: 1, listen: ["unix://$XDG_RUNTIME_DIR/lab.sock"], gateway: {enabled: true}}
admin: {listen: "unix://$XDG_RUNTIME_DIR/admin.sock"}
`
}

// leaseOn gets a lease for mac through the fence socket sock.
func leaseOn(t *testing.T, sock string, mac byte) netip.Addr {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := dhcptest.StreamLease(c, [6]byte{0x52, 0x54, 0, 0x12, 0x34, mac}, "", 30*time.Second)
	if err != nil {
		t.Fatalf("lease for MAC …:%02x on %s: %v", mac, sock, err)
	}
	return l.IP
}

// TestLeasesPerInstance (issue 11 item 3): instances that share a state_dir
// keep apart leases. An instance that ran before leaves leases behind; a
// new one still hands out 10.0.2.15 first, two copies running at once
// hand out the same addresses to the same MACs, and a restarted copy
// keeps its own.
func TestLeasesPerInstance(t *testing.T) {
	root := filepath.Join(shortDir(t), "state")
	yaml := stateYAML(root)
	rtC, rtA, rtB := shortDir(t), shortDir(t), shortDir(t)

	t.Setenv("XDG_RUNTIME_DIR", rtC)
	_, stopC := startRun(t, yaml)
	for i, mac := range []byte{0x0c, 0x0d} {
		if got, want := leaseOn(t, filepath.Join(rtC, "lab.sock"), mac), netip.AddrFrom4([4]byte{10, 0, 2, byte(15 + i)}); got != want {
			t.Fatalf("instance C, MAC %#x: got %v, want %v", mac, got, want)
		}
	}
	if err := stopC(); err != nil {
		t.Fatal(err)
	}

	t.Setenv("XDG_RUNTIME_DIR", rtA)
	_, stopA := startRun(t, yaml)
	t.Setenv("XDG_RUNTIME_DIR", rtB)
	_, stopB := startRun(t, yaml)
	for _, tc := range []struct {
		mac  byte
		want string
	}{{0x01, "10.0.2.15"}, {0x02, "10.0.2.16"}} {
		for _, rt := range []string{rtA, rtB} {
			if got := leaseOn(t, filepath.Join(rt, "lab.sock"), tc.mac); got.String() != tc.want {
				t.Errorf("copy in %s, MAC %#x: got %v, want %s", rt, tc.mac, got, tc.want)
			}
		}
	}
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) != 3 {
		t.Fatalf("state_dir holds %v (%v), want three instance directories", ents, err)
	}

	// Copy A again: its own leases, MAC 2 first.
	t.Setenv("XDG_RUNTIME_DIR", rtA)
	startRun(t, yaml)
	for _, tc := range []struct {
		mac  byte
		want string
	}{{0x02, "10.0.2.16"}, {0x01, "10.0.2.15"}, {0x03, "10.0.2.17"}} {
		if got := leaseOn(t, filepath.Join(rtA, "lab.sock"), tc.mac); got.String() != tc.want {
			t.Errorf("copy A restarted, MAC %#x: got %v, want %s", tc.mac, got, tc.want)
		}
	}
}

// TestRunSecondInstanceExits1: `corral run` with the configuration of a
// running instance stops at once with status 1, naming the running one,
// and leaves the running one alone.
func TestRunSecondInstanceExits1(t *testing.T) {
	root := filepath.Join(shortDir(t), "state")
	rt := shortDir(t)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	yaml := stateYAML(root)
	logs, _ := startRun(t, yaml)
	before := logs.String()

	cfgFile := filepath.Join(shortDir(t), "copy.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "run", "--config", cfgFile)
	if code != 1 || !strings.Contains(errOut, "is in use by another corral (pid "+strconv.Itoa(os.Getpid())) ||
		!strings.Contains(errOut, "admin unix://"+rt+"/admin.sock") {
		t.Fatalf("second corral: exit %d, stderr:\n%s\nwant 1 naming the running instance", code, errOut)
	}
	if strings.Contains(errOut, "listening") {
		t.Errorf("the second corral got as far as listening:\n%s", errOut)
	}
	// The running one saw nothing: no connection, no port, no log line.
	if after := logs.String(); after != before {
		t.Errorf("the running instance logged while the second one started:\n%s", after[len(before):])
	}
	if got := leaseOn(t, filepath.Join(rt, "lab.sock"), 0x01); got.String() != "10.0.2.15" {
		t.Errorf("running instance: lease %v, want 10.0.2.15", got)
	}
}
