package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
	vswitch "github.com/corralnet/corral/switch"
)

// goldenAttach is a fence with an address of every scheme, the wildcard
// and IPv6 forms of tcp and udp, a path that needs quoting, and dialed
// addresses.
func goldenAttach(t *testing.T) []admin.FenceAttach {
	t.Helper()
	p := newAttachPoints([]Fence{{FenceConfig: fenceConfig(1, "lab")}, {FenceConfig: fenceConfig(2, "empty")}})
	for _, s := range []struct {
		addr string
		dial bool
	}{
		{"unix:///run/user/1000/corral/lab.sock", false},
		{"unix:///run/vm/db.sock", true}, // listed after the listeners
		{"tcp://127.0.0.1:7400", false},
		{"tcp://0.0.0.0:7401", false},
		{"tcp://[::1]:7402", false},
		{"unixgram:///run/user/1000/corral/lab.dgram", false},
		{"udp://127.0.0.1:7500", false},
		{"udp://[::1]:7501", false},
		{"unixpacket:///run/user/1000/corral/lab.seq", false},
		{"vsock://:7400", false},
		{"stdio", false},
		{"unix:///tmp/my lab,1/x.sock", false},
		{"tcp://192.0.2.1:7403", true},
		{"unixgram:///run/vm/gv.sock", true},
	} {
		a, err := attach.ParseAddr(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		p.add(1, a, s.dial)
	}
	return p.Attachments()
}

// TestAttachLinesGolden pins the lines of every scheme, as `corral
// attach-lines` prints them and as the API answers them, against
// testdata/attach-lines.golden (regenerate with -update).
func TestAttachLinesGolden(t *testing.T) {
	fas := goldenAttach(t)
	var b bytes.Buffer
	printAttach(&b, fas)
	b.WriteString("\n---- --client qemu\n")
	if err := printAttachClient(&b, fas, clientQEMU); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n---- GET /v1/attach\n")
	if err := admin.EncodeJSON(&b, fas); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "attach-lines.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/corral -run TestAttachLinesGolden -update)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("the lines differ from %s (run with -update if intended):\n%s", path, b.String())
	}
}

// TestAttachLinesProperties checks what the golden file cannot show at a
// glance: every listen address of a framing a client speaks has its
// client's line, with the real path, quoted so that a shell hands QEMU
// exactly the value, and QEMU's commas doubled.
func TestAttachLinesProperties(t *testing.T) {
	want := map[attach.Scheme][]string{
		attach.Unix:       {clientQEMU, clientQEMUReconnect, clientLima, clientKrunkit, clientPlug},
		attach.TCP:        {clientQEMU, clientQEMUReconnect, clientQEMUSocket, clientPlug},
		attach.Unixgram:   {clientQEMU, clientVfkit, clientKrunkit, clientPlug},
		attach.UDP:        {clientQEMU, clientQEMUSocket, clientPlug},
		attach.Unixpacket: {clientUML, clientPlug},
		attach.Vsock:      {clientGuest},
		attach.Stdio:      nil,
	}
	addrs := map[attach.Scheme]string{
		attach.Unix: "unix:///r/lab.sock", attach.TCP: "tcp://127.0.0.1:7400", attach.Unixgram: "unixgram:///r/lab.dgram",
		attach.UDP: "udp://127.0.0.1:7500", attach.Unixpacket: "unixpacket:///r/lab.seq", attach.Vsock: "vsock://:7400", attach.Stdio: "stdio",
	}
	for sc, clients := range want {
		a, err := attach.ParseAddr(addrs[sc])
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range attachLines(a, false) {
			got = append(got, l.Client)
			if l.Note == "" {
				t.Errorf("%s %s: no note", a, l.Client)
			}
			if l.Client != clientGuest && !strings.Contains(l.Line, strings.TrimPrefix(a.Target, "127.0.0.1:")) {
				t.Errorf("%s %s: line %q lacks the address", a, l.Client, l.Line)
			}
			if strings.HasPrefix(l.Client, "qemu") && !strings.HasSuffix(l.Line, " -device virtio-net-pci,netdev=n0,mac="+exampleMAC) {
				t.Errorf("%s %s: line %q lacks the device", a, l.Client, l.Line)
			}
		}
		if strings.Join(got, " ") != strings.Join(clients, " ") {
			t.Errorf("%s: clients %v, want %v", a, got, clients)
		}
	}

	// A path with a space, a comma and a quote: the shell hands QEMU the
	// value with the comma doubled.
	p := "/tmp/it's a,b/x.sock"
	lines := attachLines(attach.Addr{Scheme: attach.Unix, Target: p}, false)
	out, err := exec.Command("sh", "-c", `for a in "$@"; do printf '%s\n' "$a"; done`, "sh", "x").Output()
	if err != nil || string(out) != "x\n" {
		t.Fatalf("sh: %v %q", err, out)
	}
	out, err = exec.Command("sh", "-c", `for a in `+lines[0].Line+`; do printf '%s\n' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh with %s: %v", lines[0].Line, err)
	}
	wantArgs := "-netdev\nstream,id=n0,server=off,addr.type=unix,addr.path=/tmp/it's a,,b/x.sock\n-device\nvirtio-net-pci,netdev=n0,mac=" + exampleMAC + "\n"
	if string(out) != wantArgs {
		t.Errorf("the shell splits %s into\n%s\nwant\n%s", lines[0].Line, out, wantArgs)
	}
}

// TestAttachLinesCommand: `corral attach-lines` over the admin API of a
// running switch shows the bound addresses (a tcp port 0 as the port it
// got) and their lines; --client and --json; and `corral run` logs the
// lines once ready and prints them for people only when asked.
func TestAttachLinesCommand(t *testing.T) {
	dir := shortDir(t)
	yaml := `state_dir: "` + dir + `/state"
fences:
  - {name: a, id: 1, listen: ["unix://` + dir + `/a.sock", "tcp://127.0.0.1:0"], dial: ["unix://` + dir + `/qemu.sock"]}
  - {name: b, id: 2, listen: ["unixgram://` + dir + `/b.dgram"]}
admin: {listen: "unix://` + dir + `/admin.sock"}
`
	logs, _ := startRun(t, yaml)
	adminSock := filepath.Join(dir, "admin.sock")

	code, out, errOut := runCLI(t, "attach-lines", "--admin", adminSock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{
		"fence a (1)\n  unix://" + dir + "/a.sock\n    qemu [1]            -netdev stream,id=n0,server=off,addr.type=unix,addr.path=" + dir + "/a.sock -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56\n",
		"  unix://" + dir + "/qemu.sock (corral dials it)\n    qemu [7]            -netdev stream,id=n0,server=on,addr.type=unix,addr.path=" + dir + "/qemu.sock -device",
		"fence b (2)\n  unixgram://" + dir + "/b.dgram\n",
		"    vfkit [9]           --device virtio-net,unixSocketPath=" + dir + "/b.dgram,mac=52:54:00:12:34:56\n",
		"\nEvery VM needs its own MAC within its fence",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("attach-lines lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "127.0.0.1:0") || !strings.Contains(out, "addr.host=127.0.0.1,addr.port=") {
		t.Errorf("attach-lines does not show the port the tcp listener got:\n%s", out)
	}

	code, out, errOut = runCLI(t, "attach-lines", "b", "--client", "vfkit", "--admin", adminSock)
	if code != 0 || out != "--device virtio-net,unixSocketPath="+dir+"/b.dgram,mac=52:54:00:12:34:56\n" {
		t.Errorf("--client vfkit: exit %d, %q %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "attach-lines", "b", "--client", "uml", "--admin", adminSock)
	if code != 1 || !strings.Contains(errOut, "no uml line") {
		t.Errorf("--client uml on a fence without unixpacket: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "attach-lines", "--client", "vmware", "--admin", adminSock)
	if code != 2 || !strings.Contains(errOut, "want one of qemu,") {
		t.Errorf("--client vmware: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "attach-lines", "nope", "--admin", adminSock)
	if code != 1 || !strings.Contains(errOut, `no fence "nope"`) {
		t.Errorf("unknown fence: exit %d, %s", code, errOut)
	}
	code, out, _ = runCLI(t, "attach-lines", "a", "--json", "--admin", adminSock)
	var fas []admin.FenceAttach
	if err := json.Unmarshal([]byte(out), &fas); code != 0 || err != nil || len(fas) != 1 || len(fas[0].Addrs) != 3 || !fas[0].Addrs[2].Dial {
		t.Errorf("--json: exit %d, %v: %s", code, err, out)
	}
	// The tcp line names the listener's real port.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(fas[0].Addrs[1].Addr, "tcp://"))
	if port == "0" || port == "" || !strings.Contains(fas[0].Addrs[1].Lines[0].Line, "addr.port="+port+" ") {
		t.Errorf("tcp address %s, line %q", fas[0].Addrs[1].Addr, fas[0].Addrs[1].Lines[0].Line)
	}

	// The log: one record per address, once, before ready (everything is
	// bound then); nothing for people (this is no terminal).
	l := logs.String()
	ready := strings.Index(l, "corral ready")
	if n := strings.Count(l, "msg=attach "); n != 4 || strings.LastIndex(l, "msg=attach ") > ready {
		t.Errorf("logged %d attach records (want 4, before ready):\n%s", n, l)
	}
	if !strings.Contains(l, `qemu="-netdev stream,id=n0,server=off,addr.type=unix,addr.path=`+dir+`/a.sock -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"`) {
		t.Errorf("the log lacks the qemu line of a.sock:\n%s", l)
	}
	if strings.Contains(l, "Attach VMs with these lines") {
		t.Errorf("lines for people went to the log:\n%s", l)
	}
}

// TestRunPrintsAttachLinesForPeople: with an attach writer (corral run's
// stderr when it is a terminal), the lines are printed there once, by
// the time corral is ready.
func TestRunPrintsAttachLinesForPeople(t *testing.T) {
	dir := shortDir(t)
	cfg, err := parse(t, `state_dir: "`+dir+`/state"
fences: [{name: a, id: 1, listen: ["unix://`+dir+`/a.sock"]}]
admin: {listen: ""}
`)
	if err != nil {
		t.Fatal(err)
	}
	var human syncBuffer
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSwitchWith(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), runOptions{attachOut: &human})
	}()
	waitFor(t, "corral ready", func() bool { return strings.Contains(logs.String(), "corral ready") })
	if !strings.Contains(human.String(), "[1] Start corral first") {
		t.Errorf("corral is ready and the lines for people are not all there:\n%s", human.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h := human.String()
	if strings.Count(h, "Attach VMs with these lines") != 1 || !strings.Contains(h, "addr.path="+dir+"/a.sock -device") {
		t.Errorf("printed for people:\n%s", h)
	}
	if terminalWriter(&human) != nil {
		t.Errorf("terminalWriter took a buffer for a terminal")
	}
	if f, err := os.CreateTemp(dir, "x"); err == nil {
		if terminalWriter(f) != nil {
			t.Errorf("terminalWriter took a regular file for a terminal")
		}
		f.Close()
	}
}

func fenceConfig(id uint32, name string) vswitch.FenceConfig {
	return vswitch.FenceConfig{ID: id, Name: name}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
