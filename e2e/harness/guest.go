package harness

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Guest defaults.
const (
	// GuestTimeout is the default GuestSpec.Timeout: TCG boots take about
	// 4 s alone and much longer with several guests on two cores.
	GuestTimeout = 90 * time.Second
	// GuestMemory is the default GuestSpec.Memory (80M and less fail).
	GuestMemory = "128M"
	// ResultMarker precedes the script's exit status on the console.
	ResultMarker = "CORRAL-RESULT: "
	// StartMarker is printed by the guest's /init just before the script.
	StartMarker = "CORRAL-START: "
	// maxCmdline is the x86 kernel's COMMAND_LINE_SIZE (2048) with room
	// for the fixed arguments.
	maxCmdline = 2000
)

var imageOnce = sync.OnceValues(func() ([2]string, error) {
	root, err := rootOnce()
	if err != nil {
		return [2]string{}, err
	}
	dir := filepath.Join(root, ".cache", "guest")
	cmd := exec.Command(filepath.Join(root, "contrib", "guest", "build.sh"), dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return [2]string{}, fmt.Errorf("contrib/guest/build.sh: %v\n%s", err, out)
	}
	return [2]string{filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd.img")}, nil
})

// GuestImage builds the guest kernel and initramfs with
// contrib/guest/build.sh (cached in <repo>/.cache/guest) once per test
// binary and returns their paths.
func GuestImage(t testing.TB) (kernel, initrd string) {
	t.Helper()
	NeedRoot(t)
	img, err := imageOnce()
	if err != nil {
		t.Fatal(err)
	}
	return img[0], img[1]
}

// GuestSpec describes a QEMU guest for BootGuest.
type GuestSpec struct {
	// Name is the guest's hostname and the name in logs.
	Name string
	// Netdev is a QEMU -netdev value without the id, e.g.
	// "stream,server=off,addr.type=unix,addr.path=/x.sock". Empty: no NIC.
	Netdev string
	// MAC of the virtio-net NIC, e.g. "52:54:00:00:00:01"; empty: QEMU's.
	MAC string
	// Script is the shell script (busybox sh) the guest runs after eth0 is
	// up (without an address); its exit status is the guest's result. It
	// travels gzip+base64 on the kernel command line, or, when it does not
	// fit there (about 1.4 KB compressed), in an archive appended to a copy
	// of the initrd.
	Script string
	// Timeout after which QEMU is killed; 0 means GuestTimeout.
	Timeout time.Duration
	// Memory is QEMU's -m; empty means GuestMemory.
	Memory string
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
}

// Guest is a running QEMU guest. Its console output is the Proc's log.
type Guest struct {
	*Proc
	Spec     GuestSpec
	timedOut atomic.Bool
	timer    *time.Timer
	console  *os.File // write end of QEMU's stdin, the guest's ttyS0
}

// Send writes line and a newline to the guest's console, where the script
// can read it (read -r x): this is how a test tells a waiting guest to go on.
func (g *Guest) Send(line string) error {
	_, err := g.console.WriteString(line + "\n")
	return err
}

// WaitConsole waits until the console shows substr, failing t if the guest
// stops or timeout passes first.
func (g *Guest) WaitConsole(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	if err := g.WaitLog(substr, timeout); err != nil {
		t.Fatalf("%v\nconsole of %s:\n%s", err, g.Spec.Name, g.Log())
	}
}

// EncodeScript returns script gzip-compressed and base64-encoded, the form
// the guest's /init reads from corral_script=.
func EncodeScript(script string) (string, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write([]byte(script)); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b.Bytes()), nil
}

// ErrScriptTooLong means a script does not fit the kernel command line
// (QEMUArgs); BootGuest then ships it in an archive appended to the initrd.
var ErrScriptTooLong = errors.New("script too long for the kernel command line")

// QEMUArgs returns the qemu-system-x86_64 arguments for g, with the script
// on the kernel command line; ErrScriptTooLong if it does not fit.
func QEMUArgs(kernel, initrd string, g GuestSpec) ([]string, error) {
	enc, err := EncodeScript(g.Script)
	if err != nil {
		return nil, err
	}
	name := g.Name
	if name == "" {
		name = "guest"
	}
	if len(enc) > maxCmdline-len(name)-100 {
		return nil, fmt.Errorf("guest %s: %w (%d bytes encoded)", name, ErrScriptTooLong, len(enc))
	}
	return qemuArgs(kernel, initrd, name, enc, g), nil
}

func qemuArgs(kernel, initrd, name, script string, g GuestSpec) []string {
	appendArg := "console=ttyS0 quiet panic=-1 corral_name=" + name + " corral_script=" + script
	mem := g.Memory
	if mem == "" {
		mem = GuestMemory
	}
	args := []string{
		"-name", name,
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", mem,
		"-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendArg,
	}
	if g.Netdev != "" {
		dev := "virtio-net-pci,netdev=n0,romfile="
		if g.MAC != "" {
			dev += ",mac=" + g.MAC
		}
		args = append(args, "-netdev", g.Netdev+",id=n0", "-device", dev)
	}
	return append(args, g.ExtraArgs...)
}

// scriptInitrd writes initrd followed by a cpio (newc) archive holding
// /corral/script, to a file in dir, and returns its path. The kernel
// unpacks concatenated archives in order.
func scriptInitrd(initrd, dir, script string) (string, error) {
	base, err := os.ReadFile(initrd)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	b.Write(base)
	for b.Len()%4 != 0 { // zero padding between archives is skipped
		b.WriteByte(0)
	}
	ino := 0x7000
	entry := func(name string, mode uint32, data []byte) {
		ino++
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry("corral", 0o040755, nil)
	entry("corral/script", 0o100644, []byte(script))
	entry("TRAILER!!!", 0, nil)
	f, err := os.CreateTemp(dir, "initrd-*.img")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// BootGuest starts a QEMU TCG guest running g.Script. It returns at once;
// call Wait for the result. QEMU is killed after g.Timeout and at cleanup.
// Whatever g.Netdev connects to must exist first: QEMU 7.2 never retries.
func BootGuest(t testing.TB, g GuestSpec) *Guest {
	t.Helper()
	kernel, initrd := GuestImage(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 not found (run contrib/test-deps.sh): %v", err)
	}
	args, err := QEMUArgs(kernel, initrd, g)
	if errors.Is(err, ErrScriptTooLong) {
		ird, err := scriptInitrd(initrd, ShortTempDir(t), g.Script)
		if err != nil {
			t.Fatal(err)
		}
		name := g.Name
		if name == "" {
			name = "guest"
		}
		args = qemuArgs(kernel, ird, name, "@", g)
	} else if err != nil {
		t.Fatal(err)
	}
	if g.Timeout == 0 {
		g.Timeout = GuestTimeout
	}
	gu := &Guest{Spec: g}
	// The console's input: Send writes lines the script can read.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	gu.console = w
	t.Cleanup(func() { w.Close() })
	gu.Proc = startEnv(t, nil, nil, r, false, qemu, args...)
	r.Close()
	gu.Proc.Name = "guest " + g.Name
	gu.timer = time.AfterFunc(g.Timeout, func() {
		if !gu.Exited() {
			gu.timedOut.Store(true)
			gu.Proc.Kill()
		}
	})
	t.Cleanup(func() { gu.timer.Stop() })
	return gu
}

var resultRE = regexp.MustCompile(regexp.QuoteMeta(ResultMarker) + `(-?\d+)`)

// ErrNoResult means the guest stopped without printing its result marker.
var ErrNoResult = errors.New("guest stopped without a result")

// Wait waits for QEMU to exit and returns the console output and the
// script's exit status. err is set if the guest timed out, QEMU failed or
// the result marker is missing.
func (g *Guest) Wait() (output string, status int, err error) {
	qerr := g.Proc.Wait()
	out := g.Log()
	if g.timedOut.Load() {
		return out, -1, fmt.Errorf("guest %s: timed out after %v", g.Spec.Name, g.Spec.Timeout)
	}
	m := resultRE.FindStringSubmatch(out)
	if m == nil {
		return out, -1, fmt.Errorf("guest %s: %w (qemu: %v)", g.Spec.Name, ErrNoResult, qerr)
	}
	status, err = strconv.Atoi(m[1])
	if err != nil {
		return out, -1, err
	}
	return out, status, nil
}

// MustSucceed waits for the guest and fails t unless its script exited 0.
// It returns the console output.
func (g *Guest) MustSucceed(t testing.TB) string {
	t.Helper()
	out, status, err := g.Wait()
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, out)
	}
	if status != 0 {
		t.Fatalf("guest %s: script exited %d\nconsole:\n%s", g.Spec.Name, status, out)
	}
	return out
}
