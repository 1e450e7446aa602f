package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"

	"github.com/corralnet/corral/gossip"
)

func TestGossipConfig(t *testing.T) {
	const base = "fences: [{name: lab, id: 1}]\n"
	c, err := parse(t, base+`uplink: {udp: {listen: "0.0.0.0:7407"}, gossip: {listen: ":7946", join: ["192.0.2.10", "h.example:7000"], profile: WAN}}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gossip
	if g == nil || g.Listen.String() != "0.0.0.0:7946" || g.Profile != gossip.ProfileWAN ||
		strings.Join(g.Join, ",") != "192.0.2.10:7946,h.example:7000" || !c.Uplink.Directory {
		t.Fatalf("gossip settings %+v, directory %v", g, c.Uplink.Directory)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`uplink: {gossip: {listen: ":7946"}}`, "uplink.gossip.listen: gossip carries the uplink's control plane"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {join: ["a:1"]}}`, "uplink.gossip.listen: required"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: "nope"}}`, "uplink.gossip.listen: \"nope\""},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: ":7946", join: ["a:99999"]}}`, "uplink.gossip.join[0]"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: ":7946", profile: moon}}`, "uplink.gossip.profile"},
		{`uplink: {udp: {listen: ":7407", peers: ["192.0.2.1"]}, gossip: {listen: ":7946"}}`, "uplink.udp.peers: with uplink.gossip"},
		{`uplink: {udp: {listen: ":7407", learn_peers: true}, gossip: {listen: ":7946"}}`, "uplink.udp.learn_peers"},
	} {
		_, err := parse(t, base+tc.yaml+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestGossipKeyDerived(t *testing.T) {
	dir := t.TempDir()
	secret := writeSecret(t, dir, "s.key", 7, false, 0o600)
	k1, prev, err := gossipKeys(&SealSettings{SecretFile: secret, Installation: 1})
	if err != nil || len(k1) != gossip.SecretKeyLen || prev != nil {
		t.Fatalf("gossipKeys: %x %v %v", k1, prev, err)
	}
	k2, _, _ := gossipKeys(&SealSettings{SecretFile: secret, Installation: 2})
	if bytes.Equal(k1, k2) || bytes.Equal(k1, bytes.Repeat([]byte{7}, 32)) {
		t.Fatal("gossip key not bound to the installation, or equal to the secret")
	}
}

// freeTCPUDPPort returns a port free for TCP and UDP on 127.0.0.1 (racy, as
// every such helper).
func freeTCPUDPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// streamPort is a test VM on a unix stream socket (4-byte length framing).
type streamPort struct{ c net.Conn }

func (p streamPort) send(t *testing.T, f []byte) {
	t.Helper()
	if _, err := p.c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)); err != nil {
		t.Fatal(err)
	}
}

func (p streamPort) recv(t *testing.T) []byte {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var h [4]byte
	if _, err := io.ReadFull(p.c, h[:]); err != nil {
		t.Fatalf("recv: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(h[:]))
	if _, err := io.ReadFull(p.c, b); err != nil {
		t.Fatalf("recv: %v", err)
	}
	return b
}

// TestRunGossip wires two corral instances on loopback with gossip: they
// find each other through one seed, send no hellos, carry a broadcast of
// their fence, show the members in `corral peers`, and register the
// gossip sockets with the self-socket registry.
func TestRunGossip(t *testing.T) {
	dir := shortDir(t)
	g1, g2, u1, u2 := freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t), freeTCPUDPPort(t)
	yaml := func(n, id, up, gp, seed int) string {
		return fmt.Sprintf(`host: {name: h%d, id: %d}
state_dir: "%s/state%d"
uplink: {udp: {listen: "127.0.0.1:%d"}, gossip: {listen: "127.0.0.1:%d", join: ["127.0.0.1:%d"]}}
fences:
  - {name: lab, id: 1, listen: ["unix://%s/lab%d.sock"], gateway: {enabled: false}}
admin: {listen: "unix://%s/admin%d.sock"}
`, n, id, dir, n, up, gp, seed, dir, n, dir, n)
	}
	logs1, _ := startRun(t, yaml(1, 1, u1, g1, g2))
	startRun(t, yaml(2, 2, u2, g2, g1))
	for _, want := range []string{fmt.Sprintf("tcp 127.0.0.1:%d", g1), fmt.Sprintf("udp 127.0.0.1:%d", g1)} {
		if !strings.Contains(logs1.String(), want) {
			t.Errorf("self-socket registry lacks %s:\n%s", want, logs1.String())
		}
	}
	dial := func(n int) streamPort {
		c, err := net.Dial("unix", fmt.Sprintf("%s/lab%d.sock", dir, n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return streamPort{c}
	}
	p1, p2 := dial(1), dial(2)
	// Each host accepts frames only from the members it knows of the
	// fence: wait until both see the other there.
	admin1 := filepath.Join(dir, "admin1.sock")
	var st admin.PeersResponse
	for _, n := range []int{2, 1} {
		sock := filepath.Join(dir, fmt.Sprintf("admin%d.sock", n))
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out, errOut := runCLI(t, "peers", "--json", "--admin", sock)
			if code != 0 {
				t.Fatalf("corral peers: %d %s", code, errOut)
			}
			st = admin.PeersResponse{}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatal(err)
			}
			if st.Gossip != nil && len(st.Gossip.Fences) == 1 && len(st.Gossip.Fences[0].Hosts) == 1 && len(st.Peers) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("h%d does not see the other host in fence lab: %s", n, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	f := append(bytes.Repeat([]byte{0xff}, 6), 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5)
	f = append(f, bytes.Repeat([]byte("gossip"), 10)...)
	p1.send(t, f)
	if got := p2.recv(t); !bytes.Equal(got, f) {
		t.Fatalf("h2 got %x, want %x", got, f)
	}
	if st.Counters["tx_hellos"] != 0 {
		t.Errorf("hellos sent with gossip: %d", st.Counters["tx_hellos"])
	}
	code, out, _ := runCLI(t, "peers", "--admin", admin1)
	if code != 0 || !strings.Contains(out, "MEMBER") || !strings.Contains(out, "announced addresses only") ||
		!regexp.MustCompile(`(?m)^h2 +alive`).MatchString(out) {
		t.Errorf("corral peers: exit %d\n%s", code, out)
	}
}
