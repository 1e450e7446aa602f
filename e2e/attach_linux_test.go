package e2e

// Integration tests of the real corral binary with raw attachment clients
// (one per scheme of DESIGN.md section 5) in two fences.
//
//	           corral (two fences, every scheme listened on)
//	  fence A (id 0x0a)                         fence B (id 0x0b)
//	  unix tcp unixgram unixpacket udp [vsock]  the same six, the same MACs,
//	                                            plus "only" (a MAC only B has)

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/e2e/harness"
)

// Timeouts of these tests: generous for delivery (a loaded 2-core
// machine), bounded for silence.
const (
	acDeliverTimeout = 15 * time.Second
	acQuietWait      = 500 * time.Millisecond
)

// acClient is a raw attachment client speaking one framing.
type acClient struct {
	name   string // "A/unix"
	fence  string
	mac    [6]byte
	conn   net.Conn
	stream bool // 4-byte big-endian length framing; else one frame per message

	rx      chan []byte
	done    chan struct{} // closed when the reader stops
	mu      sync.Mutex
	readErr error
}

func acMAC(last byte) [6]byte { return [6]byte{0x52, 0x54, 0x00, 0x00, 0x53, last} }

var acBroadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// acFrame builds an Ethernet frame (EtherType 0x88b5, local experimental)
// whose payload names its fence and purpose, padded to 60 bytes.
func acFrame(dst, src [6]byte, payload string) []byte {
	f := make([]byte, 0, 64+len(payload))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	f = append(f, 0x88, 0xb5)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

func newACClient(t *testing.T, name, fence string, mac [6]byte, conn net.Conn, stream bool) *acClient {
	c := &acClient{name: name, fence: fence, mac: mac, conn: conn, stream: stream,
		rx: make(chan []byte, 1024), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { c.conn.Close(); <-c.done })
	return c
}

func (c *acClient) read() {
	defer close(c.done)
	defer close(c.rx)
	buf := make([]byte, 70000)
	for {
		var f []byte
		if c.stream {
			var hdr [4]byte
			if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
				c.setErr(err)
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n == 0 || n > uint32(len(buf)) {
				c.setErr(fmt.Errorf("bad length %d from corral", n))
				return
			}
			if _, err := io.ReadFull(c.conn, buf[:n]); err != nil {
				c.setErr(err)
				return
			}
			f = bytes.Clone(buf[:n])
		} else {
			n, err := c.conn.Read(buf)
			if err != nil {
				c.setErr(err)
				return
			}
			f = bytes.Clone(buf[:n])
		}
		select {
		case c.rx <- f:
		default: // the test never lets 1024 frames pile up; drop
		}
	}
}

func (c *acClient) setErr(err error) {
	c.mu.Lock()
	c.readErr = err
	c.mu.Unlock()
}

func (c *acClient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

func (c *acClient) send(t *testing.T, frame []byte) {
	t.Helper()
	var err error
	if c.stream {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
		_, err = c.conn.Write(append(b, frame...))
	} else {
		_, err = c.conn.Write(frame)
	}
	if err != nil {
		t.Fatalf("%s: send: %v", c.name, err)
	}
}

// expect waits for the next frame and requires it to be want, unchanged.
func (c *acClient) expect(t *testing.T, want []byte, what string) {
	t.Helper()
	select {
	case got, ok := <-c.rx:
		if !ok {
			t.Fatalf("%s: connection ended (%v) while waiting for %s", c.name, c.err(), what)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: waiting for %s, got a different frame:\n got  %q\n want %q", c.name, what, got, want)
		}
	case <-time.After(acDeliverTimeout):
		t.Fatalf("%s: %s not delivered within %v", c.name, what, acDeliverTimeout)
	}
}

// drain discards every frame received so far.
func (c *acClient) drain() {
	for {
		select {
		case _, ok := <-c.rx:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// acQuiet waits acQuietWait and fails if any client received anything.
func acQuiet(t *testing.T, what string, clients ...*acClient) {
	t.Helper()
	time.Sleep(acQuietWait)
	for _, c := range clients {
		select {
		case f, ok := <-c.rx:
			if ok {
				t.Fatalf("%s: %s: got an unexpected frame %q", what, c.name, f)
			}
		default:
		}
	}
}

// acVsockLoopback reports why AF_VSOCK loopback (CID 1) does not work
// here, nil when it does (the attach package's rule: as root, try modprobe
// vsock_loopback first). Without it the vsock scheme is left out of the
// test, saying why: the one skip the project allows.
func acVsockLoopback() error {
	var modprobe string
	if os.Geteuid() == 0 {
		if out, err := exec.Command("modprobe", "vsock_loopback").CombinedOutput(); err != nil {
			modprobe = fmt.Sprintf("; modprobe vsock_loopback: %v %s", err, strings.TrimSpace(string(out)))
		}
	}
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, 0, nil)
	if err != nil {
		return fmt.Errorf("AF_VSOCK unavailable: listen: %w%s", err, modprobe)
	}
	port := l.Addr().(*vsock.Addr).Port
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	defer func() { l.Close(); <-accepted }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := vsock.DialContext(ctx, unix.VMADDR_CID_LOCAL, port, nil)
	if err != nil {
		return fmt.Errorf("AF_VSOCK loopback (CID 1) does not connect: %w%s", err, modprobe)
	}
	c.Close()
	return nil
}

// acFence is one fence's listen addresses in a test configuration.
type acFence struct {
	name       string
	id         int
	unix       string
	tcp        string // 127.0.0.1:port
	unixgram   string
	unixpacket string
	udp        string
	vsock      uint32 // 0: none
}

func (f acFence) yaml() string {
	l := []string{
		"unix://" + f.unix, "tcp://" + f.tcp, "unixgram://" + f.unixgram,
		"unixpacket://" + f.unixpacket, "udp://" + f.udp,
	}
	if f.vsock != 0 {
		l = append(l, fmt.Sprintf("vsock://:%d", f.vsock))
	}
	return fmt.Sprintf("  - name: %s\n    id: %d\n    listen: [\"%s\"]\n", f.name, f.id, strings.Join(l, `", "`))
}

// acDial attaches one client per scheme of f, each with MAC acMAC(i+1).
func acDial(t *testing.T, f acFence, dir string) []*acClient {
	t.Helper()
	var out []*acClient
	add := func(scheme string, conn net.Conn, err error, stream bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s/%s: dial: %v", f.name, scheme, err)
		}
		out = append(out, newACClient(t, f.name+"/"+scheme, f.name, acMAC(byte(len(out)+1)), conn, stream))
	}
	c, err := net.Dial("unix", f.unix)
	add("unix", c, err, true)
	c, err = net.Dial("tcp", f.tcp)
	add("tcp", c, err, true)
	local := &net.UnixAddr{Name: filepath.Join(dir, f.name+"-client.dgram"), Net: "unixgram"}
	uc, err := net.DialUnix("unixgram", local, &net.UnixAddr{Name: f.unixgram, Net: "unixgram"})
	if err == nil {
		t.Cleanup(func() { os.Remove(local.Name) })
		// vfkit's greeting: consumed by corral, never switched.
		if _, err := uc.Write([]byte("VFKT")); err != nil {
			t.Fatalf("%s/unixgram: greeting: %v", f.name, err)
		}
	}
	add("unixgram", uc, err, false)
	c, err = net.Dial("unixpacket", f.unixpacket)
	add("unixpacket", c, err, false)
	c, err = net.Dial("udp", f.udp)
	add("udp", c, err, false)
	if f.vsock != 0 {
		vc, err := vsock.Dial(vsock.Local, f.vsock, nil)
		add("vsock", vc, err, true)
	}
	return out
}

// acStatus runs `corral status --json` against the admin socket.
type acStatus struct {
	Fences []struct {
		ID    uint32 `json:"id"`
		Name  string `json:"name"`
		Ports int    `json:"ports"`
	} `json:"fences"`
	Ports []struct {
		ID    uint64 `json:"id"`
		Name  string `json:"name"`
		Fence uint32 `json:"fence"`
	} `json:"ports"`
}

func acCorralStatus(t *testing.T, adminSock string) (acStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "status", "--json", "--admin", adminSock).Output()
	var st acStatus
	if err != nil {
		return st, fmt.Errorf("corral status --json: %w", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("corral status --json: %w\n%s", err, out)
	}
	return st, nil
}

// acPortsIn counts the ports of fence id in st.
func acPortsIn(st acStatus, id uint32) int {
	n := 0
	for _, p := range st.Ports {
		if p.Fence == id {
			n++
		}
	}
	return n
}

func acWaitPorts(t *testing.T, adminSock string, want map[uint32]int) {
	t.Helper()
	var last acStatus
	var lastErr error
	deadline := time.Now().Add(acDeliverTimeout)
	for time.Now().Before(deadline) {
		last, lastErr = acCorralStatus(t, adminSock)
		ok := lastErr == nil
		for id, n := range want {
			if acPortsIn(last, id) != n {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ports per fence: want %v; last status %+v (err %v)", want, last, lastErr)
}

func TestIntegrationAttach(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	sockDir := filepath.Join(dir, "s")
	mk := func(name string, id int, vsockPort uint32) acFence {
		return acFence{
			name: name, id: id,
			unix:       filepath.Join(sockDir, name+".sock"),
			tcp:        fmt.Sprintf("127.0.0.1:%d", harness.FreeTCPPort(t)),
			unixgram:   filepath.Join(sockDir, name+".dgram"),
			unixpacket: filepath.Join(sockDir, name+".pkt"),
			udp:        fmt.Sprintf("127.0.0.1:%d", harness.FreeUDPPort(t)),
			vsock:      vsockPort,
		}
	}
	vsockBase := uint32(40000 + os.Getpid()%20000)
	var va, vb uint32
	if err := acVsockLoopback(); err != nil {
		t.Logf("vsock left out: this kernel has no working AF_VSOCK loopback (%v)", err)
	} else {
		va, vb = vsockBase, vsockBase+1
	}
	fa, fb := mk("A", 0x0a, va), mk("B", 0x0b, vb)
	adminSock := filepath.Join(sockDir, "admin.sock")
	cfg := "fences:\n" + fa.yaml() + fb.yaml() +
		fmt.Sprintf("admin: {listen: \"unix://%s\"}\nlog: {level: debug}\n", adminSock)
	p := harness.StartCorral(t, nil, cfg)

	// Every unix socket file exists with mode 0600.
	for _, s := range []string{fa.unix, fa.unixgram, fa.unixpacket, fb.unix, fb.unixgram, fb.unixpacket, adminSock} {
		st, err := os.Stat(s)
		if err != nil {
			t.Fatalf("socket file: %v", err)
		}
		if st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a socket with 0600", s, st.Mode())
		}
	}

	A := acDial(t, fa, dir)
	B := acDial(t, fb, dir)
	only := func() *acClient {
		c, err := net.Dial("unix", fb.unix)
		if err != nil {
			t.Fatal(err)
		}
		return newACClient(t, "B/only", "B", acMAC(0x99), c, true)
	}()
	all := append(append(append([]*acClient{}, A...), B...), only)

	// Hello: every client sends once, so that datagram peers become ports
	// and every MAC is learned; then wait until the admin API shows them all.
	for _, c := range all {
		c.send(t, acFrame(acBroadcast, c.mac, "hello "+c.name))
	}
	acWaitPorts(t, adminSock, map[uint32]int{0x0a: len(A), 0x0b: len(B) + 1})
	time.Sleep(acQuietWait)
	for _, c := range all {
		c.drain()
	}

	t.Run("broadcast within fence", func(t *testing.T) {
		for _, group := range [][]*acClient{A, append(append([]*acClient{}, B...), only)} {
			for _, s := range group {
				f := acFrame(acBroadcast, s.mac, "broadcast from "+s.name)
				s.send(t, f)
				for _, r := range group {
					if r != s {
						r.expect(t, f, "broadcast from "+s.name)
					}
				}
			}
		}
		acQuiet(t, "after broadcasts (nothing across fences, nothing back to the sender)", all...)
	})

	t.Run("unicast after learning, two unchanged copies", func(t *testing.T) {
		// A and B hold the same MACs: each pair converses in both fences,
		// and each frame reaches only its destination in its own fence.
		for _, group := range [][]*acClient{A, B} {
			for _, s := range group {
				for _, r := range group {
					if r == s {
						continue
					}
					f := acFrame(r.mac, s.mac, fmt.Sprintf("unicast %s -> %s", s.name, r.name))
					s.send(t, f)
					r.expect(t, f, fmt.Sprintf("unicast from %s", s.name))
				}
			}
		}
		acQuiet(t, "after unicasts (no flooding of known unicast, nothing across fences)", all...)
	})

	t.Run("nothing across fences", func(t *testing.T) {
		// A MAC that exists only in B: from A it is unknown unicast,
		// flooded within A only.
		s := A[0]
		f := acFrame(only.mac, s.mac, "to a MAC only fence B has")
		s.send(t, f)
		for _, r := range A[1:] {
			r.expect(t, f, "unknown unicast flooded within A")
		}
		f = acFrame(acBroadcast, s.mac, "broadcast from A")
		s.send(t, f)
		for _, r := range A[1:] {
			r.expect(t, f, "broadcast within A")
		}
		// Multicast, too.
		f = acFrame([6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, s.mac, "multicast from A")
		s.send(t, f)
		for _, r := range A[1:] {
			r.expect(t, f, "multicast within A")
		}
		acQuiet(t, "fence B after traffic for B's MACs sent in A", all...)
	})

	t.Run("admin status shows the ports", func(t *testing.T) {
		st, err := acCorralStatus(t, adminSock)
		if err != nil {
			t.Fatal(err)
		}
		if got := acPortsIn(st, 0x0a); got != len(A) {
			t.Errorf("fence A: got %d ports, want %d", got, len(A))
		}
		if got := acPortsIn(st, 0x0b); got != len(B)+1 {
			t.Errorf("fence B: got %d ports, want %d", got, len(B)+1)
		}
		names := map[string]bool{}
		for _, f := range st.Fences {
			names[f.Name] = true
		}
		if !names["A"] || !names["B"] {
			t.Errorf("fences: got %+v, want A and B", st.Fences)
		}
		// The bridge table of B holds B's MACs, "only" among them.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "fdb", "B", "--json", "--admin", adminSock).Output()
		if err != nil {
			t.Fatalf("corral fdb B --json: %v", err)
		}
		var fdb []struct {
			Fence   uint32 `json:"fence"`
			Entries []struct {
				MAC string `json:"mac"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(out, &fdb); err != nil || len(fdb) != 1 || fdb[0].Fence != 0x0b {
			t.Fatalf("corral fdb B --json: %v\n%s", err, out)
		}
		macs := map[string]bool{}
		for _, e := range fdb[0].Entries {
			macs[e.MAC] = true
		}
		for _, c := range append(append([]*acClient{}, B...), only) {
			if m := net.HardwareAddr(c.mac[:]).String(); !macs[m] {
				t.Errorf("fdb of B lacks %s (%s): %s", m, c.name, out)
			}
		}
	})

	t.Run("malformed length closes only that port", func(t *testing.T) {
		for _, bad := range []struct {
			c      *acClient
			length []byte
			what   string
		}{
			{A[0], []byte{0, 0, 0, 0}, "a length of 0"},             // unix stream
			{A[1], []byte{0x7f, 0xff, 0xff, 0xff}, "a huge length"}, // tcp, over the maximum frame
		} {
			if _, err := bad.c.conn.Write(bad.length); err != nil {
				t.Fatal(err)
			}
			select {
			case <-bad.c.done:
			case <-time.After(acDeliverTimeout):
				t.Fatalf("%s: corral kept the port open after %s", bad.c.name, bad.what)
			}
		}
		acWaitPorts(t, adminSock, map[uint32]int{0x0a: len(A) - 2, 0x0b: len(B) + 1})
		rest := A[2:]
		for _, s := range rest {
			f := acFrame(acBroadcast, s.mac, "after the bad ports, from "+s.name)
			s.send(t, f)
			for _, r := range rest {
				if r != s {
					r.expect(t, f, "broadcast after the bad ports")
				}
			}
		}
		for _, s := range B {
			f := acFrame(B[0].mac, s.mac, "fence B still works")
			if s == B[0] {
				f = acFrame(B[1].mac, s.mac, "fence B still works")
				s.send(t, f)
				B[1].expect(t, f, "unicast in B")
				continue
			}
			s.send(t, f)
			B[0].expect(t, f, "unicast in B")
		}
		acQuiet(t, "after the bad ports", append(append([]*acClient{}, rest...), B...)...)
	})

	t.Run("SIGTERM exits 0 and removes socket files", func(t *testing.T) {
		if err := p.Stop(); err != nil {
			t.Fatalf("corral after SIGTERM: %v\n%s", err, p.Log())
		}
		for _, s := range []string{fa.unix, fa.unixgram, fa.unixpacket, fb.unix, fb.unixgram, fb.unixpacket, adminSock} {
			if _, err := os.Stat(s); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still exists after SIGTERM (%v)", s, err)
			}
		}
		for _, c := range A[2:] {
			if c.stream {
				select {
				case <-c.done:
				case <-time.After(acDeliverTimeout):
					t.Errorf("%s: connection still open after corral exited", c.name)
				}
			}
		}
	})
}

// TestIntegrationConfigErrors runs the binary on bad configurations: each
// exits with status 2, names the key, and creates no socket.
func TestIntegrationConfigErrors(t *testing.T) {
	harness.NeedRoot(t)
	bin := harness.CorralBinary(t)
	for _, tc := range []struct {
		name, yaml, key string
		args            []string
	}{
		{"unknown key", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"], colour: red}]\n", "fences[0].colour", nil},
		{"duplicate fence id", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}, {name: b, id: 1}]\n", "fences[1].id", nil},
		{"duplicate fence name", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}, {name: a, id: 2}]\n", "fences[1].name", nil},
		{"fence id out of range", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}, {name: b, id: 0x1000000}]\n", "fences[1].id", nil},
		{"listen twice", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}, {name: b, id: 2, listen: [\"unix://$S/a.sock\"]}]\n", "fences[1].listen[0]", nil},
		{"bad scheme", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\", \"ftp://x\"]}]\n", "fences[0].listen[1]", nil},
		{"oui not local", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}]\nhost: {oui: \"00:11:22\"}\n", "host.oui", nil},
		{"host id reserved", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}]\nhost: {id: 0xFFFF}\n", "host.id", nil},
		{"uplink mtu", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}]\nuplink: {mtu: 100}\n", "uplink.mtu", nil},
		{"bad peer", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}]\nuplink: {udp: {listen: \"127.0.0.1:7407\", peers: [\"x:y:z\"]}}\n", "uplink.udp.peers[0]", nil},
		{"log level env", "fences: [{name: a, id: 1, listen: [\"unix://$S/a.sock\"]}]\n", "log.level", []string{"CORRAL_LOG_LEVEL=shout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := harness.ShortTempDir(t)
			sdir := filepath.Join(dir, "s")
			cfgFile := filepath.Join(dir, "corral.yaml")
			yaml := tc.yaml + "admin: {listen: \"unix://$S/admin.sock\"}\n"
			if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "run", "--config", cfgFile)
			cmd.Env = append(os.Environ(), "S="+sdir, "XDG_RUNTIME_DIR="+dir)
			cmd.Env = append(cmd.Env, tc.args...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("got %v, want exit status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), "config: "+tc.key+":") {
				t.Errorf("output does not name %q:\n%s", tc.key, out)
			}
			if strings.Contains(string(out), "corral ready") {
				t.Errorf("corral got ready on a bad configuration:\n%s", out)
			}
			if ents, err := os.ReadDir(sdir); err == nil && len(ents) > 0 {
				t.Errorf("%s holds %d entries after a config error, want none", sdir, len(ents))
			}
			if _, err := os.Stat(filepath.Join(dir, "corral")); err == nil {
				t.Errorf("default socket directory created after a config error")
			}
		})
	}
}

// TestIntegrationConfigDefault runs `corral` with no arguments: the
// embedded default configuration (fence "default", gateway on) listens in
// $XDG_RUNTIME_DIR/corral, answers `corral status`, and SIGTERM removes
// its sockets.
func TestIntegrationConfigDefault(t *testing.T) {
	harness.NeedRoot(t)
	bin := harness.CorralBinary(t)
	rt := harness.ShortTempDir(t)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("XDG_STATE_HOME", filepath.Join(rt, "state"))
	p := harness.Start(t, nil, bin)
	if err := p.WaitLog(harness.ReadyMessage, harness.ReadyTimeout); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	sock := filepath.Join(rt, "corral", "default.sock")
	adminSock := filepath.Join(rt, "corral", "admin.sock")
	for _, s := range []string{sock, adminSock} {
		st, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want a socket with 0600", s, st.Mode())
		}
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cl := newACClient(t, "default/unix", "default", acMAC(1), c, true)
	cl.send(t, acFrame(acBroadcast, cl.mac, "hello"))
	// Without --admin, the client commands find the default admin socket.
	var st acStatus
	harness.WaitFor(t, acDeliverTimeout, "the port in corral status", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "status", "--json").Output()
		if err != nil || json.Unmarshal(out, &st) != nil {
			return false
		}
		for _, p := range st.Ports {
			if p.Fence == 1 && strings.HasPrefix(p.Name, "unix") {
				return true
			}
		}
		return false
	})
	if len(st.Fences) != 1 || st.Fences[0].Name != "default" || st.Fences[0].ID != 1 {
		t.Errorf("fences: got %+v, want one fence default id 1", st.Fences)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "ports").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PORT") || !strings.Contains(string(out), "unix") {
		t.Errorf("corral ports: %v\n%s", err, out)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, p.Log())
	}
	for _, s := range []string{sock, adminSock} {
		if _, err := os.Stat(s); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after SIGTERM (%v)", s, err)
		}
	}
}
