package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSelfSockets(t *testing.T) {
	r := newSelfSockets()
	hostAddr := netip.MustParseAddr("192.0.2.10")
	r.isLocal = func(a netip.Addr) bool { return a == hostAddr }
	ap := netip.MustParseAddrPort
	rmWild := r.add("tcp", ap("0.0.0.0:7000"))
	rmLoop := r.add("udp", ap("127.0.0.1:7407"))
	rmLoop2 := r.add("udp", ap("127.0.0.1:7407")) // twice: configured, then bound
	r.add("tcp", ap("[::]:0"))                    // port 0: nothing
	r.add("tcp", ap("[fd00::1]:8000"))
	for _, tc := range []struct {
		proto, dst string
		want       bool
	}{
		{"tcp", "127.0.0.1:7000", true},           // wildcard bind, loopback
		{"tcp", "127.0.0.2:7000", true},           // any loopback address
		{"tcp", "[::1]:7000", true},               // dual-stack: either family
		{"tcp", "192.0.2.10:7000", true},          // the host's own address
		{"tcp", "[::ffff:192.0.2.10]:7000", true}, // mapped
		{"tcp", "0.0.0.0:7000", true},
		{"tcp", "198.51.100.1:7000", false}, // another host
		{"udp", "127.0.0.1:7000", false},    // other protocol
		{"tcp", "127.0.0.1:7001", false},    // other port
		{"udp", "127.0.0.1:7407", true},     // exact
		{"udp", "127.0.0.2:7407", false},    // bound to 127.0.0.1 only
		{"udp", "192.0.2.10:7407", false},
		{"tcp", "[fd00::1]:8000", true},
		{"tcp", "[fd00::2]:8000", false},
	} {
		if got := r.IsSelf(tc.proto, ap(tc.dst)); got != tc.want {
			t.Errorf("IsSelf(%s, %s) = %v, want %v", tc.proto, tc.dst, got, tc.want)
		}
	}
	if got := strings.Join(r.entries(), ", "); got != "tcp 0.0.0.0:7000, tcp [fd00::1]:8000, udp 127.0.0.1:7407" {
		t.Errorf("entries: %s", got)
	}
	rmLoop()
	rmLoop() // idempotent: the second registration stays
	if !r.IsSelf("udp", ap("127.0.0.1:7407")) {
		t.Error("removing one of two registrations removed both")
	}
	rmLoop2()
	rmWild()
	if r.IsSelf("udp", ap("127.0.0.1:7407")) || r.IsSelf("tcp", ap("127.0.0.1:7000")) {
		t.Error("still self after removal")
	}
	rms, err := r.addString(t.Context(), "tcp", "localhost:5555")
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsSelf("tcp", ap("127.0.0.1:5555")) {
		t.Errorf("localhost dial target not registered: %v", r.entries())
	}
	for _, rm := range rms {
		rm()
	}
}

func TestKernelLocal(t *testing.T) {
	if !kernelLocal(netip.MustParseAddr("127.0.0.1")) {
		t.Error("127.0.0.1 not local")
	}
	// An address of an interface of this host.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			if !kernelLocal(p.Addr()) {
				t.Errorf("interface address %v not local", p.Addr())
			}
		}
	}
	if kernelLocal(netip.MustParseAddr("192.0.2.77")) {
		t.Error("192.0.2.77 (TEST-NET-1) local")
	}
}

// TestRunRegistersSelf: corral registers every IP socket it binds (fence
// listeners of both schemes, the uplink, metrics, configured forwards) and
// its tcp dial targets, before it is ready; unix sockets are not IP.
func TestRunRegistersSelf(t *testing.T) {
	dir := shortDir(t)
	free := func(network string) int {
		if network == "udp" {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			return pc.LocalAddr().(*net.UDPAddr).Port
		}
		return freePort(t)
	}
	uplinkPort, udpPort, fwdPort, dialPort := free("udp"), free("udp"), freePort(t), freePort(t)
	yaml := `host: {name: h1, id: 7}
state_dir: "` + dir + `/state"
uplink: {udp: {listen: "127.0.0.1:` + strconv.Itoa(uplinkPort) + `"}}
metrics: {listen: "127.0.0.1:0"}
fences:
  - name: a
    id: 1
    listen: ["unix://` + dir + `/a.sock", "tcp://127.0.0.1:0", "udp://127.0.0.1:` + strconv.Itoa(udpPort) + `"]
    dial: ["tcp://localhost:` + strconv.Itoa(dialPort) + `"]
    gateway: {enabled: true, forwards: [{proto: udp, listen: "127.0.0.1:` + strconv.Itoa(fwdPort) + `", target: "10.0.2.15:53"}]}
admin: {listen: "unix://` + dir + `/admin.sock"}
`
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	logs, _ := startRun(t, yaml)
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "refuse NAT to corral's own sockets") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no registry log line:\n%s", logs.String())
	}
	// The tcp listener and metrics were bound to port 0: find them.
	tcpAddr := findLog(t, logs.String(), `msg=listening fence=a addr=tcp://`)
	metricsAddr := findLog(t, logs.String(), `addr=http://`)
	for _, want := range []string{
		"tcp " + tcpAddr,
		"udp 127.0.0.1:" + strconv.Itoa(udpPort),
		"udp 127.0.0.1:" + strconv.Itoa(uplinkPort),
		"tcp " + strings.TrimSuffix(metricsAddr, "/metrics"),
		"udp 127.0.0.1:" + strconv.Itoa(fwdPort),
		"tcp 127.0.0.1:" + strconv.Itoa(dialPort),
	} {
		if !strings.Contains(line, want) {
			t.Errorf("registry lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, dir) {
		t.Errorf("a unix socket was registered: %s", line)
	}
}

// findLog returns what follows prefix in the log, up to a space.
func findLog(t *testing.T, logs, prefix string) string {
	t.Helper()
	i := strings.Index(logs, prefix)
	if i < 0 {
		t.Fatalf("no %q in the logs:\n%s", prefix, logs)
	}
	rest := logs[i+len(prefix):]
	if j := strings.IndexAny(rest, " \n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
