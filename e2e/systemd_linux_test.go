package e2e

// Socket activation and the systemd units (issue 11 item 7), with the real
// binary: corral started as systemd starts it (LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES and the sockets from fd 3) serves its admin API and a
// fence's unix, tcp, unixgram and udp addresses on the inherited sockets,
// and leaves the socket files to their owner; an inherited socket that the
// configuration does not name stops it with status 1; contrib/systemd
// passes systemd-analyze verify.

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// activate runs `corral run --config cfg` with files as fds 3… and the
// activation variables, as systemd does (LISTEN_PID is the shell's PID,
// which exec keeps).
func activate(t *testing.T, cfg string, names []string, files []*os.File) (*exec.Cmd, *harness.LogBuffer, chan error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, harness.CorralBinary(t), "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.ExtraFiles = files
	out := &harness.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("corral output:\n%s", out.String())
		}
	})
	for _, f := range files {
		f.Close() // corral has them now
	}
	return cmd, out, done
}

func TestIntegrationSocketActivation(t *testing.T) {
	dir := harness.ShortTempDir(t)
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	labSock, adminSock := filepath.Join(dir, "lab.sock"), filepath.Join(dir, "admin.sock")
	// bound is a bound socket's file, as systemd passes it; the test's
	// own descriptor is closed.
	bound := func(c interface {
		File() (*os.File, error)
		Close() error
	}, err error) *os.File {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return f
	}
	unixLn := func(path string) *os.File {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			ln.SetUnlinkOnClose(false)
		}
		return bound(ln, err)
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := tcp.Addr().String()
	tcpFile := bound(tcp, nil)
	// Datagram sockets (ListenDatagram=): unixgram and udp.
	gramSock := filepath.Join(dir, "lab.gram")
	gramFile := bound(net.ListenUnixgram("unixgram", &net.UnixAddr{Name: gramSock, Net: "unixgram"}))
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := udp.LocalAddr().String()
	udpFile := bound(udp, nil)
	cfg := filepath.Join(dir, "c.yaml")
	conf := `fences:
  - {name: lab, id: 1, listen: ["unix://` + labSock + `", "tcp://` + tcpAddr + `", "unixgram://` + gramSock + `", "udp://` + udpAddr + `"]}
admin: {listen: "unix://` + adminSock + `"}
`
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, out, done := activate(t, cfg, []string{"lab", "labtcp", "admin", "labgram", "labudp"},
		[]*os.File{unixLn(labSock), tcpFile, unixLn(adminSock), gramFile, udpFile})
	harness.WaitFor(t, harness.ReadyTimeout, "corral ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("corral exited: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), harness.ReadyMessage)
	})
	for _, want := range []string{
		`msg="listening on an inherited socket" fence=lab addr=unix://` + labSock + ` name=lab`,
		`msg="listening on an inherited socket" fence=lab addr=tcp://` + tcpAddr + ` name=labtcp`,
		`msg="admin on an inherited socket" name=admin`,
		`msg="listening on an inherited socket" fence=lab addr=unixgram://` + gramSock + ` name=labgram`,
		`msg="listening on an inherited socket" fence=lab addr=udp://` + udpAddr + ` name=labudp`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no log line with %q", want)
		}
	}
	if b, err := exec.Command(harness.CorralBinary(t), "health", "--admin", adminSock).CombinedOutput(); err != nil {
		t.Fatalf("corral health on the inherited admin socket: %v\n%s", err, b)
	}
	u, err := net.Dial("unix", labSock)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acWaitPorts(t, adminSock, map[uint32]int{1: 2})
	// A datagram from a unixgram and a udp peer makes a port each; a
	// broadcast from the stream port reaches both.
	gc, err := net.DialUnix("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "peer.gram"), Net: "unixgram"},
		&net.UnixAddr{Name: gramSock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	uc, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hello := func(last byte) []byte {
		f := make([]byte, 60)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0xac, 0, last, 0x88, 0xb5})
		return f
	}
	gc.Write(hello(1))
	uc.Write(hello(2))
	acWaitPorts(t, adminSock, map[uint32]int{1: 4})
	bcast := hello(3)
	frame := append([]byte{0, 0, 0, byte(len(bcast))}, bcast...)
	if _, err := u.Write(frame); err != nil {
		t.Fatal(err)
	}
	for _, pc := range []net.Conn{gc, uc} {
		pc.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 2048)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				t.Fatalf("the broadcast on the inherited %s socket: %v", pc.LocalAddr().Network(), err)
			}
			if bytes.Equal(buf[:n], bcast) {
				break
			}
		}
	}

	// Stopped, it leaves the socket files to whoever bound them (systemd
	// removes them with RemoveOnStop=).
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("corral: %v\n%s", err, out.String())
		}
		done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("corral did not stop")
	}
	for _, p := range []string{labSock, adminSock, gramSock} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("inherited socket file %s removed: %v", p, err)
		}
	}

	// An inherited socket the configuration does not name.
	os.Remove(labSock)
	os.Remove(adminSock)
	stray := filepath.Join(dir, "stray.sock")
	_, out, done = activate(t, cfg, []string{"stray"}, []*os.File{unixLn(stray)})
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), "stray (unix://"+stray+")") {
			t.Fatalf("corral with a stray socket: %v\n%s", err, out.String())
		}
		done <- nil
	case <-time.After(60 * time.Second):
		t.Fatal("corral with a stray socket kept running")
	}
}

// TestSystemdUnitsVerify: contrib/systemd's user units pass
// systemd-analyze verify (package systemd, contrib/test-deps.sh).
func TestSystemdUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (apt-get install systemd): %v", err)
	}
	root := harness.RepoRoot(t)
	units := []string{filepath.Join(root, "contrib/systemd/corral.service"), filepath.Join(root, "contrib/systemd/corral.socket")}
	for _, user := range []bool{true, false} {
		args := append([]string{"verify"}, units...)
		if user {
			args = append([]string{"--user"}, args...)
		}
		cmd := exec.Command(sa, args...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+harness.ShortTempDir(t))
		if b, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
			t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
}
