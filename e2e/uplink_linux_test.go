package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/pcap"
)

// Uplink topology (UDP): three corral hosts, each in its own namespace,
// joined by a Linux bridge in a hub namespace; VMs are namespaces with a
// TAP plugged (corral plug) into one host's fence socket.
//
//	 vm1a (blue)  vm2b (red)     vm1b (blue)             vm2a (red)
//	       \       /                 |                       |
//	   [h1 corral 192.0.2.1]  [h2 corral 192.0.2.2]  [h3 corral 192.0.2.3]
//	          eth0                  eth0                    eth0
//	            \___________ br0 (hub namespace) __________/
//
// vm1a/vm2a share MAC 52:54:00:00:01:01 and IP 198.51.100.1, vm1b/vm2b
// share 52:54:00:00:01:02 and 198.51.100.2: the same lab in two fences.

const (
	ulHello      = "300ms" // uplink.hello_interval of every test host
	ulWait       = 30 * time.Second
	fenceBlue    = 1
	fenceRed     = 2
	macA, macB   = "52:54:00:00:01:01", "52:54:00:00:01:02"
	ipA, ipB     = "198.51.100.1", "198.51.100.2"
	ipRedOnly    = "198.51.100.3" // an address only fence red has
	vmMTU        = 1500
	bigPingBytes = "1472" // ICMP payload: a 1500-byte IP packet, a 1514-byte frame
)

// ulHost is one corral process of an uplink test.
type ulHost struct {
	name string
	ns   *harness.NS
	ip   string
	yaml string
	proc *harness.Proc
	rt   string
}

func (h *ulHost) sock(fence string) string { return filepath.Join(h.rt, h.name+"-"+fence+".sock") }
func (h *ulHost) admin() string            { return "unix://" + filepath.Join(h.rt, h.name+"-admin.sock") }

func (h *ulHost) start(t testing.TB) {
	t.Helper()
	h.proc = harness.StartCorral(t, h.ns, h.yaml)
}

// status reads the host's uplink status through `corral peers --json`.
func (h *ulHost) status(t testing.TB) admin.PeersResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "peers", "--json", "--admin", h.admin()).Output()
	if err != nil {
		t.Fatalf("%s: corral peers --json: %v\n%s", h.name, err, out)
	}
	var st admin.PeersResponse
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%s: corral peers --json: %v\n%s", h.name, err, out)
	}
	return st
}

// fdbHost returns the remote host (outer MAC) h's bridge table holds for
// inner MAC mac in fence fenceName, "" if none or local.
func (h *ulHost) fdbHost(t testing.TB, fenceName, mac string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.CorralBinary(t), "fdb", fenceName, "--json", "--admin", h.admin()).Output()
	if err != nil {
		t.Fatalf("%s: corral fdb: %v\n%s", h.name, err, out)
	}
	var fdbs []admin.FenceFDB
	if err := json.Unmarshal(out, &fdbs); err != nil {
		t.Fatalf("%s: corral fdb --json: %v\n%s", h.name, err, out)
	}
	for _, f := range fdbs {
		for _, e := range f.Entries {
			if e.MAC == mac {
				return e.Host
			}
		}
	}
	return ""
}

// knows reports whether h has a peer named other whose hello lists fences.
func (h *ulHost) knows(t testing.TB, other string, fences ...uint32) bool {
	for _, p := range h.status(t).Peers {
		if p.Name == other && p.HelloKnown && fmt.Sprint(p.Fences) == fmt.Sprint(fences) {
			return true
		}
	}
	return false
}

func (h *ulHost) hasPeer(t testing.TB, other string) bool {
	for _, p := range h.status(t).Peers {
		if p.Name == other {
			return true
		}
	}
	return false
}

func hostYAML(name string, id int, uplinkYAML string, fences []string, h *ulHost) string {
	var b strings.Builder
	fmt.Fprintf(&b, "host: {name: %s, installation: 1, id: %d}\n", name, id)
	b.WriteString("uplink:\n  mtu: 1500\n  hello_interval: " + ulHello + "\n" + uplinkYAML)
	b.WriteString("fences:\n")
	for i, f := range fences {
		fmt.Fprintf(&b, "  - {name: %s, id: %d, listen: [\"unix://%s\"], gateway: {enabled: false}}\n", f, i+1, h.sock(f))
	}
	fmt.Fprintf(&b, "admin: {listen: %q}\nlog: {level: debug}\n", h.admin())
	return b.String()
}

// vm is a namespace with a TAP plugged into a host's fence.
type vm struct {
	name, mac, ip string
	ns            *harness.NS
	plug          *harness.Proc
}

func newVM(t testing.TB, short, mac, ip string) *vm {
	return &vm{name: short, mac: mac, ip: ip, ns: harness.NewNS(t, "ul"+short)}
}

// plugInto runs `corral plug` for the VM's TAP into h's fence and
// configures the TAP's MAC and address.
func (v *vm) plugInto(t testing.TB, h *ulHost, fence string) {
	t.Helper()
	v.plug = harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+h.sock(fence),
		"--tap", "t0", "--netns", v.ns.Name, "--mtu", fmt.Sprint(vmMTU))
	// corral plug logs "plugged" once the TAP exists and is up.
	if err := v.plug.WaitLog("plugged", ulWait); err != nil {
		t.Fatal(err)
	}
	var out string
	var err error
	harness.WaitFor(t, ulWait, v.name+"'s TAP configured", func() bool {
		for _, args := range [][]string{
			{"ip", "link", "set", "t0", "down"},
			{"ip", "link", "set", "t0", "address", v.mac, "mtu", fmt.Sprint(vmMTU)},
			{"ip", "addr", "replace", v.ip + "/24", "dev", "t0"},
			{"ip", "link", "set", "t0", "up"},
		} {
			if out, err = v.ns.Exec(context.Background(), args...); err != nil {
				t.Logf("%s: %v: %s (retrying)", v.name, err, out)
				return false
			}
		}
		return true
	})
}

// unplug stops the VM's plug process (its TAP goes with it).
func (v *vm) unplug(t testing.TB) {
	t.Helper()
	if err := v.plug.Stop(); err != nil {
		t.Logf("plug %s: %v", v.name, err)
	}
	harness.WaitFor(t, ulWait, v.name+"'s TAP gone", func() bool {
		_, err := v.ns.Exec(context.Background(), "ip", "link", "show", "t0")
		return err != nil
	})
}

// ping sends one echo request from v to ip and reports success.
func (v *vm) ping(ip string, extra ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"ping", "-n", "-c", "1", "-W", "1"}, extra...)
	out, err := v.ns.Exec(ctx, append(args, ip)...)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func (v *vm) mustReach(t testing.TB, ip string, extra ...string) {
	t.Helper()
	var last error
	harness.WaitFor(t, ulWait, fmt.Sprintf("%s reaches %s %v", v.name, ip, extra), func() bool {
		last = v.ping(ip, extra...)
		return last == nil
	})
	_ = last
}

// hubLAN makes a hub namespace <prefix>hub with bridge br0 and n host
// namespaces <prefix>h1…hn with eth0 (MTU 1500) on it, addressed 192.0.2.i/24.
func hubLAN(t testing.TB, prefix string, n int) (hub *harness.NS, hosts []*harness.NS) {
	hub = harness.NewNS(t, prefix+"hub")
	hub.MustExec(t, "ip", "link", "add", "br0", "type", "bridge")
	hub.MustExec(t, "ip", "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		ns := harness.NewNS(t, fmt.Sprintf("%sh%d", prefix, i))
		port := fmt.Sprintf("p%d", i)
		harness.Veth(t, ns, "eth0", hub, port, 1500)
		hub.MustExec(t, "ip", "link", "set", port, "master", "br0")
		ns.MustExec(t, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", i), "dev", "eth0")
		hosts = append(hosts, ns)
	}
	return hub, hosts
}

func TestIntegrationUplinkUDP(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "ul", 3)
	hosts := make([]*ulHost, 3)
	for i := range hosts {
		h := &ulHost{name: fmt.Sprintf("h%d", i+1), ns: nss[i], ip: fmt.Sprintf("192.0.2.%d", i+1), rt: rt}
		var peers []string
		for j := 1; j <= 3; j++ {
			if j != i+1 {
				peers = append(peers, fmt.Sprintf("%q", fmt.Sprintf("192.0.2.%d:7407", j)))
			}
		}
		up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [%s]}\n", strings.Join(peers, ", "))
		h.yaml = hostYAML(h.name, 0x10+i, up, []string{"blue", "red"}, h)
		hosts[i] = h
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	for _, h := range hosts {
		h.start(t)
	}

	// Hellos first: a peer whose hello is not known yet gets every flood
	// (DESIGN.md 4.5), so the "no foreign broadcasts" check starts here.
	harness.WaitFor(t, ulWait, "first hellos", func() bool {
		return h1.knows(t, "h2") && h1.knows(t, "h3") && h2.knows(t, "h1") &&
			h2.knows(t, "h3") && h3.knows(t, "h1") && h3.knows(t, "h2")
	})

	vm1a := newVM(t, "vm1a", macA, ipA) // blue on h1
	vm1b := newVM(t, "vm1b", macB, ipB) // blue on h2
	vm2a := newVM(t, "vm2a", macA, ipA) // red on h3
	vm2b := newVM(t, "vm2b", macB, ipB) // red on h1
	vm1a.plugInto(t, h1, "blue")
	vm1b.plugInto(t, h2, "blue")
	vm2a.plugInto(t, h3, "red")
	vm2b.plugInto(t, h1, "red")
	vm2a.ns.MustExec(t, "ip", "addr", "add", ipRedOnly+"/24", "dev", "t0")

	// Every host knows the others' fences before traffic flows.
	harness.WaitFor(t, ulWait, "hellos", func() bool {
		return h1.knows(t, "h2", fenceBlue) && h1.knows(t, "h3", fenceRed) &&
			h2.knows(t, "h1", fenceBlue, fenceRed) && h2.knows(t, "h3", fenceRed) &&
			h3.knows(t, "h1", fenceBlue, fenceRed) && h3.knows(t, "h2", fenceBlue)
	})

	t.Run("within fence across hosts", func(t *testing.T) {
		vm1a.mustReach(t, ipB) // blue: h1 → h2
		vm2a.mustReach(t, ipB) // red, same MACs and IPs: h3 → h1
		vm1b.mustReach(t, ipA)
		vm2b.mustReach(t, ipA)
	})
	t.Run("none across fences", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if err := vm1a.ping(ipRedOnly); err == nil {
				t.Fatalf("blue vm1a reached red-only %s", ipRedOnly)
			}
		}
		// vm2a (red) answers only red ARP: blue's view of ipB is vm1b.
		out := vm1a.ns.MustExec(t, "ip", "neigh", "show", ipB)
		if !strings.Contains(out, macB) {
			t.Fatalf("vm1a neighbour %s: %q, want %s", ipB, out, macB)
		}
	})
	t.Run("host without fence gets none of its broadcasts", func(t *testing.T) {
		// h3 has no blue port; blue ARP broadcasts flowed above.
		vm1a.ns.MustExec(t, "ip", "neigh", "flush", "dev", "t0")
		vm1a.mustReach(t, ipB)
		if got := h3.status(t).RxByFence[fenceBlue]; got != 0 {
			t.Fatalf("h3 received %d blue frames, want 0", got)
		}
		if got := h2.status(t).RxByFence[fenceRed]; got != 0 {
			t.Fatalf("h2 received %d red frames, want 0", got)
		}
		if got := h1.status(t).RxByFence[fenceBlue]; got == 0 {
			t.Fatal("h1 received no blue frames: the check above proves nothing")
		}
	})
	t.Run("1500-byte frames over a 1500-byte uplink", func(t *testing.T) {
		before := h2.status(t).Counters["rx_reassembled"]
		vm1a.mustReach(t, ipB, "-M", "do", "-s", bigPingBytes)
		vm2a.mustReach(t, ipB, "-M", "do", "-s", bigPingBytes)
		if got := h2.status(t).Counters["rx_reassembled"]; got <= before {
			t.Fatalf("h2 rx_reassembled %d → %d: the big frames were not fragmented", before, got)
		}
	})
	h2mac, h3mac := h2.status(t).OuterMAC, h3.status(t).OuterMAC
	t.Run("migration", func(t *testing.T) {
		if got := h1.fdbHost(t, "blue", macB); got != h2mac {
			t.Fatalf("before: h1 has %s at host %q, want h2 %s", macB, got, h2mac)
		}
		vm1b.unplug(t)
		vm1b.plugInto(t, h3, "blue")
		start := time.Now()
		vm1b.mustReach(t, ipA)
		vm1a.mustReach(t, ipB, "-M", "do", "-s", bigPingBytes)
		t.Logf("traffic followed the migration after %v", time.Since(start))
		if got := h1.fdbHost(t, "blue", macB); got != h3mac {
			t.Fatalf("after: h1 has %s at host %q, want h3 %s", macB, got, h3mac)
		}
	})
	t.Run("killed host expires and comes back", func(t *testing.T) {
		h3.proc.Kill()
		killed := time.Now()
		harness.WaitFor(t, ulWait, "h1 and h2 expire h3", func() bool {
			return !h1.hasPeer(t, "h3") && !h2.hasPeer(t, "h3")
		})
		t.Logf("h3 expired %v after SIGKILL (hello interval %s)", time.Since(killed), ulHello)
		if err := h1.proc.WaitLog("peer expired", ulWait); err != nil {
			t.Fatal(err)
		}
		if got := h1.fdbHost(t, "blue", macB); got != "" {
			t.Fatalf("h1 still has %s at %q after h3 expired", macB, got)
		}
		if err := vm1b.plug.Wait(); err == nil {
			t.Log("vm1b's plug ended with its switch")
		}
		harness.WaitFor(t, ulWait, "vm1b's TAP gone", func() bool {
			_, err := vm1b.ns.Exec(context.Background(), "ip", "link", "show", "t0")
			return err != nil
		})
		h3.start(t)
		vm1b.plugInto(t, h3, "blue")
		vm2a.unplug(t)
		vm2a.plugInto(t, h3, "red")
		vm1b.mustReach(t, ipA)
		vm1a.mustReach(t, ipB)
		vm2b.mustReach(t, ipA)
	})
}

// Raw topology: h1 and h2 joined by one veth (MTU 1500), no IP addresses;
// corral speaks MAC-in-MAC on it (AF_PACKET).
//
//	vmA (blue) ─ [h1 corral] eth0 ══ eth0 [h2 corral] ─ vmB (blue)
func TestIntegrationUplinkRaw(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	n1 := harness.NewNS(t, "ulr1")
	n2 := harness.NewNS(t, "ulr2")
	harness.Veth(t, n1, "eth0", n2, "eth0", 1500)
	h1 := &ulHost{name: "r1", ns: n1, rt: rt}
	h2 := &ulHost{name: "r2", ns: n2, rt: rt}
	for i, h := range []*ulHost{h1, h2} {
		h.yaml = hostYAML(h.name, 0x20+i, "  raw: {interface: eth0}\n", []string{"blue", "red"}, h)
		h.start(t)
	}
	vmA := newVM(t, "rvma", macA, ipA)
	vmB := newVM(t, "rvmb", macB, ipB)
	vmA.plugInto(t, h1, "blue")
	vmB.plugInto(t, h2, "blue")
	harness.WaitFor(t, ulWait, "hellos", func() bool {
		return h1.knows(t, "r2", fenceBlue) && h2.knows(t, "r1", fenceBlue)
	})
	vmA.mustReach(t, ipB)
	vmB.mustReach(t, ipA)
	vmA.mustReach(t, ipB, "-M", "do", "-s", bigPingBytes)
	// A red VM on r1 only: its broadcasts (ARP) must not reach r2.
	vmC := newVM(t, "rvmc", macB, ipB)
	vmC.plugInto(t, h1, "red")
	harness.WaitFor(t, ulWait, "r2 knows r1 has red", func() bool { return h2.knows(t, "r1", fenceBlue, fenceRed) })
	for i := 0; i < 2; i++ {
		if err := vmC.ping(ipA); err == nil {
			t.Fatalf("red vmC reached %s, which only blue has", ipA)
		}
	}
	st := h2.status(t)
	if st.Transport != "raw" || st.Counters["rx_reassembled"] == 0 {
		t.Fatalf("h2: transport %q, rx_reassembled %d; want raw and > 0", st.Transport, st.Counters["rx_reassembled"])
	}
	if got := st.RxByFence[fenceRed]; got != 0 {
		t.Fatalf("h2 received %d red frames, want 0", got)
	}
}

// QEMU end to end over the UDP uplink:
//
//	guest qa (blue) ─unix─ [u1 corral 192.0.2.1] eth0 ─ br0 ─ eth0 [u2 corral 192.0.2.2] ─unix─ guest qb (blue)
//
// The guests ping each other; tcpdump on u1's eth0 records the uplink,
// and the capture is decoded here: UDP port 7407 carrying fence-1 frames
// whose inner frames are the guests' ICMP echoes.
func TestIntegrationUplinkQEMU(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "uq", 2)
	hosts := []*ulHost{
		{name: "u1", ns: nss[0], rt: rt},
		{name: "u2", ns: nss[1], rt: rt},
	}
	for i, h := range hosts {
		up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [\"192.0.2.%d:7407\"]}\n", 2-i)
		h.yaml = hostYAML(h.name, 0x30+i, up, []string{"blue"}, h)
		h.start(t)
	}
	pcap := filepath.Join(harness.ShortTempDir(t), "uplink.pcap")
	dump := harness.Start(t, nss[0], "tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-w", pcap, "udp", "port", "7407")
	if err := dump.WaitLog("listening on", ulWait); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, ulWait, "hellos", func() bool {
		return hosts[0].hasPeer(t, "u2") && hosts[1].hasPeer(t, "u1")
	})
	script := func(me, peer string) string {
		return "ip addr add " + me + "/24 dev eth0\necho READY\nread -r x\n[ \"$x\" = go ] || exit 7\n" +
			"ping -c 3 -w 60 " + peer + " || exit 1\necho PING-OK\nread -r x\n"
	}
	guests := []*harness.Guest{
		harness.BootGuest(t, harness.GuestSpec{Name: "qa", MAC: macA, Script: script(ipA, ipB),
			Netdev: "stream,server=off,addr.type=unix,addr.path=" + hosts[0].sock("blue")}),
		harness.BootGuest(t, harness.GuestSpec{Name: "qb", MAC: macB, Script: script(ipB, ipA),
			Netdev: "stream,server=off,addr.type=unix,addr.path=" + hosts[1].sock("blue")}),
	}
	for _, g := range guests {
		g.WaitConsole(t, "READY", harness.GuestTimeout)
	}
	for _, g := range guests {
		if err := g.Send("go"); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range guests {
		g.WaitConsole(t, "PING-OK", harness.GuestTimeout)
	}
	for _, g := range guests {
		if err := g.Send("done"); err != nil {
			t.Fatal(err)
		}
		g.MustSucceed(t)
	}
	if err := dump.Stop(); err != nil {
		t.Logf("tcpdump: %v", err)
	}
	echoes := decodeUplinkCapture(t, pcap)
	if echoes[macA] == 0 || echoes[macB] == 0 {
		t.Fatalf("ICMP echoes in fence-1 frames on the uplink by inner source: %v; want both guests", echoes)
	}
}

// decodeUplinkCapture reads a pcap of Ethernet/IPv4/UDP port 7407 and
// checks every datagram is a valid fence frame of installation 1; it
// returns the number of whole fence-1 frames carrying ICMP (IPv4 protocol
// 1), by inner source MAC.
func decodeUplinkCapture(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, pkts, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil && (h.ByteOrder == nil || !errors.Is(err, io.ErrUnexpectedEOF)) { // a last record cut short is left out
		t.Fatalf("%s: %v", path, err)
	}
	if h.LinkType != pcap.LinkTypeEthernet {
		t.Fatalf("%s: link type %d, want Ethernet", path, h.LinkType)
	}
	params := fence.Params{Installation: 1}
	echoes := map[string]int{}
	datagrams := 0
	for _, p := range pkts {
		pkt := p.Data
		if len(pkt) < 14+20+8 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ihl := int(pkt[14]&0x0f) * 4
		if pkt[14+9] != 17 || binary.BigEndian.Uint16(pkt[14+6:])&0x3fff != 0 { // UDP, not IP-fragmented
			continue
		}
		udp := pkt[14+ihl:]
		if binary.BigEndian.Uint16(udp[2:]) != fence.DefaultUDPPort {
			continue
		}
		datagrams++
		fr, err := params.Parse(udp[8:])
		if err != nil {
			t.Fatalf("datagram %d to port 7407 is not a valid fence frame: %v (% x)", datagrams, err, udp[8:min(len(udp), 40)])
		}
		h := fr.Header()
		if h.Fence() == fence.ControlFence || h.FragType() != fence.Whole {
			continue
		}
		if h.Fence() != fenceBlue {
			t.Fatalf("fence %d on the uplink, only %d exists", h.Fence(), fenceBlue)
		}
		in := fr.Inner()
		if len(in) >= 34 && binary.BigEndian.Uint16(in[12:]) == 0x0800 && in[14+9] == 1 {
			echoes[net.HardwareAddr(in[6:12]).String()]++
		}
	}
	t.Logf("capture: %d uplink datagrams, ICMP by inner source %v", datagrams, echoes)
	return echoes
}

// IPv6 underlay: two hosts on br0 with 2001:db8::1 and ::2, UDP uplink
// over IPv6 (max encapsulated frame 1452 bytes, so 1514-byte frames are
// fragmented).
//
//	vm6a (blue) ─ [u61 corral [2001:db8::1]] ─ br0 ─ [u62 corral [2001:db8::2]] ─ vm6b (blue)
func TestIntegrationUplinkIPv6(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "u6", 2)
	hosts := []*ulHost{{name: "u61", ns: nss[0], rt: rt}, {name: "u62", ns: nss[1], rt: rt}}
	for i, h := range hosts {
		h.ns.MustExec(t, "ip", "-6", "addr", "add", fmt.Sprintf("2001:db8::%d/64", i+1), "dev", "eth0", "nodad")
	}
	for i, h := range hosts {
		up := fmt.Sprintf("  udp: {listen: \"[::]:7407\", peers: [\"[2001:db8::%d]:7407\"]}\n", 2-i)
		h.yaml = hostYAML(h.name, 0x40+i, up, []string{"blue"}, h)
		h.start(t)
	}
	a := newVM(t, "6a", macA, ipA)
	b := newVM(t, "6b", macB, ipB)
	a.plugInto(t, hosts[0], "blue")
	b.plugInto(t, hosts[1], "blue")
	a.mustReach(t, ipB)
	a.mustReach(t, ipB, "-M", "do", "-s", bigPingBytes)
	st := hosts[1].status(t)
	if st.MaxEncapLen != 1452 || st.Counters["rx_reassembled"] == 0 {
		t.Fatalf("u62: max_encap_len %d, rx_reassembled %d; want 1452 and > 0", st.MaxEncapLen, st.Counters["rx_reassembled"])
	}
	for _, p := range st.Peers {
		if p.Name == "u61" && !strings.HasPrefix(p.Addr, "[2001:db8::1]") {
			t.Fatalf("u62 sees u61 at %s, want [2001:db8::1]:7407", p.Addr)
		}
	}
}

// BenchmarkE2EUplinkIperf runs iperf3 TCP for 5 s between two VM
// namespaces on two hosts joined by the UDP uplink (bridge, MTU 1500), with
// the VMs' MTU at 1500 (every full-size frame is fragmented) and at 1440
// (1500 - IPv4 20 - UDP 8 - encapsulation 18 - inner Ethernet 14: nothing is). It reports Gbit/s; b.N is ignored (one run).
//
//	go test -run XXX -bench E2EUplinkIperf -benchtime 1x ./e2e/
func BenchmarkE2EUplinkIperf(b *testing.B) {
	harness.NeedRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 not found (contrib/test-deps.sh): %v", err)
	}
	for _, mtu := range []int{1500, 1440} {
		b.Run(fmt.Sprintf("vm-mtu=%d", mtu), func(b *testing.B) {
			rt := harness.RuntimeDir(b)
			_, nss := hubLAN(b, "ub", 2)
			hosts := []*ulHost{{name: "b1", ns: nss[0], rt: rt}, {name: "b2", ns: nss[1], rt: rt}}
			for i, h := range hosts {
				up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [\"192.0.2.%d:7407\"]}\n", 2-i)
				h.yaml = strings.Replace(hostYAML(h.name, 0x50+i, up, []string{"blue"}, h), "level: debug", "level: info", 1)
				h.start(b)
			}
			va, vb := newVM(b, "ba", macA, ipA), newVM(b, "bb", macB, ipB)
			va.plugInto(b, hosts[0], "blue")
			vb.plugInto(b, hosts[1], "blue")
			for _, v := range []*vm{va, vb} {
				v.ns.MustExec(b, "ip", "link", "set", "t0", "mtu", fmt.Sprint(mtu))
			}
			va.mustReach(b, ipB)
			gbps, retr := vmIperf(b, va, vb)
			for _, h := range hosts {
				snmp := h.ns.MustExec(b, "cat", "/proc/net/snmp")
				for _, l := range strings.Split(snmp, "\n") {
					if strings.HasPrefix(l, "Udp:") {
						b.Logf("%s %s", h.name, l)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				out, _ := exec.CommandContext(ctx, harness.CorralBinary(b), "status", "--admin", h.admin()).CombinedOutput()
				cancel()
				b.Logf("%s status:\n%s", h.name, out)
			}
			st := hosts[1].status(b)
			b.Logf("vm mtu %d: %.2f Gbit/s, %d retransmits; b2 rx_reassembled %d, rx_gro_buffers %d, gso %v gro %v",
				mtu, gbps, retr,
				st.Counters["rx_reassembled"], st.Counters["rx_gro_buffers"], st.GSO, st.GRO)
		})
	}
}

// Multicast group instead of static peers: three hosts on br0 find each
// other through 239.7.4.7:7407; floods go to the group once.
//
//	vmga (blue) ─ [ug h1] ─┐
//	                       br0 ── [ug h3] (no VM)
//	vmgb (blue) ─ [ug h2] ─┘
func TestIntegrationUplinkGroup(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "ug", 3)
	var hosts []*ulHost
	for i, ns := range nss {
		h := &ulHost{name: fmt.Sprintf("g%d", i+1), ns: ns, rt: rt}
		h.yaml = hostYAML(h.name, 0x60+i, "  udp: {listen: \"0.0.0.0:7407\", group: \"239.7.4.7:7407\"}\n", []string{"blue"}, h)
		// The group's route: out of eth0 (the namespaces have no default route).
		ns.MustExec(t, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
		h.start(t)
		hosts = append(hosts, h)
	}
	harness.WaitFor(t, ulWait, "peers found through the group", func() bool {
		for _, h := range hosts {
			n := 0
			for _, p := range h.status(t).Peers {
				if p.HelloKnown {
					n++
				}
			}
			if n != 2 {
				return false
			}
		}
		return true
	})
	a, b := newVM(t, "ga", macA, ipA), newVM(t, "gb", macB, ipB)
	a.plugInto(t, hosts[0], "blue")
	b.plugInto(t, hosts[1], "blue")
	a.mustReach(t, ipB)
	b.mustReach(t, ipA, "-M", "do", "-s", bigPingBytes)
	for _, h := range hosts {
		st := h.status(t)
		if st.Group != "239.7.4.7:7407" || st.Counters["duplicate_mac"] != 0 {
			t.Fatalf("%s: group %q, duplicate_mac %d", h.name, st.Group, st.Counters["duplicate_mac"])
		}
	}
}

// vmIperf runs iperf3 TCP for 5 s from va to a server on vb, reports
// Gbit/s and retransmits as benchmark metrics, and returns them.
func vmIperf(b *testing.B, va, vb *vm) (gbps float64, retr int) {
	b.Helper()
	srv := harness.Start(b, vb.ns, "iperf3", "-s", "-1", "--forceflush", "-B", vb.ip)
	if err := srv.WaitLog("listening", ulWait); err != nil {
		b.Fatal(err)
	}
	out := va.ns.MustExec(b, "iperf3", "-c", vb.ip, "-t", "5", "-J")
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.Fatalf("iperf3 -J: %v\n%s", err, out)
	}
	gbps, retr = res.End.SumReceived.BitsPerSecond/1e9, res.End.SumSent.Retransmits
	b.ReportMetric(gbps, "Gbit/s")
	b.ReportMetric(float64(retr), "retransmits")
	return gbps, retr
}
