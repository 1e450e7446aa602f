package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts used by the helpers. They are generous: the tests run on a
// loaded two-core machine.
const (
	// ReadyTimeout bounds how long StartCorral waits for "corral ready".
	ReadyTimeout = 60 * time.Second
	// StopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 20 * time.Second
	// ExecTimeout bounds MustExec.
	ExecTimeout = 60 * time.Second
	// ReadyMessage is the log message corral prints once it is listening.
	ReadyMessage = "corral ready"
)

// NeedRoot stops t unless the test may use root, network namespaces, TAP
// devices and QEMU: under -short ([SkipShort]) it skips; otherwise, not
// being root fails with CI=true and skips without.
func NeedRoot(t testing.TB) {
	t.Helper()
	SkipShort(t, "needs root (network namespaces, TAP, QEMU)")
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, TAP, QEMU); CI=true, so not skipping")
	}
	t.Skip("this test needs root (network namespaces, TAP, QEMU); run as root or with CI=true to make it mandatory")
}

// SkipShort skips t under -short, saying why. -short is `make unit`, the
// sub-minute loop for development: no network namespaces, no TAP, no QEMU,
// no root. `make test` and CI never pass it, so there nothing skips here.
// Test packages outside e2e keep one helper of their own that does the
// same (tap's and stack's needRoot), as they cannot import this one.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped under -short (make unit): %s; make test runs it", why)
	}
}

var rootOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
})

// RepoRoot returns the directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := rootOnce()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var binOnce = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("CORRAL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CORRAL_BIN: %w", err)
		}
		return filepath.Abs(p)
	}
	root, err := rootOnce()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".cache", "e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build to a private name, then rename: test binaries of several
	// packages may build at the same time.
	tmp := filepath.Join(dir, fmt.Sprintf("corral.%d", os.Getpid()))
	cmd := exec.Command("go", "build", "-o", tmp, "./cmd/corral")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/corral: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "corral")
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
})

// CorralBinary builds ./cmd/corral once per test binary and returns the
// path of the executable. CORRAL_BIN, when set, names a prebuilt binary.
func CorralBinary(t testing.TB) string {
	t.Helper()
	bin, err := binOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// runtimeDirs maps a test to its XDG_RUNTIME_DIR, so that a corral
// restarted within one test finds the same default paths.
var runtimeDirs sync.Map // testing.TB -> string

// RuntimeDir returns a directory private to t, used as XDG_RUNTIME_DIR and
// XDG_STATE_HOME of every corral process t starts. It is short enough for
// unix socket paths.
func RuntimeDir(t testing.TB) string {
	t.Helper()
	if d, ok := runtimeDirs.Load(t); ok {
		return d.(string)
	}
	d := ShortTempDir(t)
	runtimeDirs.Store(t, d)
	t.Cleanup(func() { runtimeDirs.Delete(t) })
	return d
}

// ShortTempDir returns a fresh directory under /tmp with a short name
// (unix socket paths are limited to 107 bytes), removed at cleanup.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "corral-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// WaitFor polls cond until it returns true or timeout passes; then it fails
// t naming what it waited for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		if pause < 250*time.Millisecond {
			pause *= 2
		}
	}
}

// LogBuffer is a goroutine-safe buffer of a process's output.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Proc is a process started by Start or StartCorral. Its stdout and stderr
// are captured together.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// ConfigFile is the configuration file StartCorral wrote (a test
	// rewrites it before a reload); empty for other processes.
	ConfigFile string

	log   LogBuffer
	done  chan struct{}
	err   error // set before done is closed
	group bool  // in its own process group: Kill kills the group
}

// Start runs name with args, inside ns unless ns is nil. The process is
// killed at cleanup; if the test failed, its output is logged.
func Start(t testing.TB, ns *NS, name string, args ...string) *Proc {
	t.Helper()
	return startEnv(t, ns, nil, nil, false, name, args...)
}

// StartGroup is Start, here (not in a namespace), with extra environment
// variables, in a process group of its own: Kill and cleanup kill the
// whole group (the children of scripts and daemons with it).
func StartGroup(t testing.TB, env []string, name string, args ...string) *Proc {
	t.Helper()
	return startEnv(t, nil, env, nil, true, name, args...)
}

// startEnv is Start with extra environment variables, if stdin is not nil
// that file as the process's standard input, and, with group, a process
// group of its own.
func startEnv(t testing.TB, ns *NS, env []string, stdin *os.File, group bool, name string, args ...string) *Proc {
	t.Helper()
	var cmd *exec.Cmd
	if ns != nil {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	p := &Proc{Name: filepath.Base(name), Cmd: cmd, done: make(chan struct{}), group: group}
	if group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if ns != nil {
		p.Name += "@" + ns.Name
	}
	cmd.Stdout = &p.log
	cmd.Stderr = &p.log
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", p.Name, cmd, p.Log())
		}
	})
	return p
}

// StartCorral writes configYAML to a file (Proc.ConfigFile) and runs
// `corral run --config FILE args...` inside ns (nil: here), with XDG_RUNTIME_DIR and
// XDG_STATE_HOME set to RuntimeDir(t). It returns once corral has logged
// "corral ready", and fails t if corral exits or does not get ready within
// ReadyTimeout.
func StartCorral(t testing.TB, ns *NS, configYAML string, args ...string) *Proc {
	t.Helper()
	bin := CorralBinary(t)
	rt := RuntimeDir(t)
	f, err := os.CreateTemp(rt, "corral-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(configYAML); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_RUNTIME_DIR=" + rt, "XDG_STATE_HOME=" + filepath.Join(rt, "state")}
	p := startEnv(t, ns, env, nil, false, bin, append([]string{"run", "--config", f.Name()}, args...)...)
	p.Name, p.ConfigFile = "corral", f.Name()
	if ns != nil {
		p.Name += "@" + ns.Name
	}
	if err := p.WaitLog(ReadyMessage, ReadyTimeout); err != nil {
		t.Fatalf("corral did not get ready: %v\nconfig:\n%s\noutput:\n%s", err, configYAML, p.Log())
	}
	return p
}

// Log returns everything the process has written so far.
func (p *Proc) Log() string { return p.log.String() }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitLog waits until the process output contains substr. It returns an
// error if the process exits first or timeout passes.
func (p *Proc) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.Log(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q", p.Name, p.err, substr)
		case <-deadline.C:
			return fmt.Errorf("%s did not print %q within %v", p.Name, substr, timeout)
		case <-tick.C:
		}
	}
}

// Wait waits for the process to exit and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM and waits for the process to exit; after StopTimeout
// it sends SIGKILL and returns an error saying so. Otherwise it returns the
// exit error (nil for status 0).
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.err
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.Exited() {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(StopTimeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.Name, StopTimeout)
	}
}

// Kill sends SIGKILL (if the process still runs; to its whole group for
// StartGroup) and waits for it to exit.
func (p *Proc) Kill() {
	if p.group {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL) // its children too, even after it exited
	} else if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// NS is a network namespace made by NewNS.
type NS struct{ Name string }

// NewNS creates the network namespace c<pid>-<short> with lo up, and
// deletes it at cleanup. A leftover namespace of the same name is deleted
// first.
func NewNS(t testing.TB, short string) *NS {
	t.Helper()
	NeedRoot(t)
	ns := &NS{Name: fmt.Sprintf("c%d-%s", os.Getpid(), short)}
	_ = exec.Command("ip", "netns", "del", ns.Name).Run()
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns.Name, err, out)
		}
	})
	ns.MustExec(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Exec runs args inside the namespace (here if ns is nil) and returns the
// combined output.
func (ns *NS) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("harness: Exec without a command")
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// MustExec is Exec with a timeout of ExecTimeout that fails t on error.
func (ns *NS) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	out, err := ns.Exec(ctx, args...)
	if err != nil {
		t.Fatalf("in %s: %v\n%s", ns.name(), err, out)
	}
	return out
}

func (ns *NS) name() string {
	if ns == nil {
		return "the test's namespace"
	}
	return "netns " + ns.Name
}

// Veth creates a veth pair with end aIf in a and end bIf in b (nil: the
// test's own namespace), sets the MTU (0: leave the default) and brings
// both ends up. Ends in the test's namespace are deleted at cleanup; ends
// in a namespace go with it.
func Veth(t testing.TB, a *NS, aIf string, b *NS, bIf string, mtu int) {
	t.Helper()
	NeedRoot(t)
	args := []string{"link", "add", "name", aIf}
	if a != nil {
		args = append(args, "netns", a.Name)
	}
	args = append(args, "type", "veth", "peer", "name", bIf)
	if b != nil {
		args = append(args, "netns", b.Name)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if a == nil || b == nil {
		host := aIf
		if a != nil {
			host = bIf
		}
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	}
	for _, end := range []struct {
		ns *NS
		If string
	}{{a, aIf}, {b, bIf}} {
		if mtu > 0 {
			end.ns.MustExec(t, "ip", "link", "set", "dev", end.If, "mtu", fmt.Sprint(mtu))
		}
		end.ns.MustExec(t, "ip", "link", "set", "dev", end.If, "up")
	}
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ServeHTTP serves h on addr ("127.0.0.1:0", "[::1]:0") and returns the
// port it got. At cleanup the server is closed and its goroutine waited
// for.
func ServeHTTP(t testing.TB, addr string, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("serve http: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
