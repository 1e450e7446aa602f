package e2e

// Sealed uplink (issue 9, DESIGN.md 3.6) against the real binary.
//
//	 vb1 vr1     vb2 vr2     vb3 vr3(evil key)       forger (this test's sockets)
//	   \ /         \ /         \ /                         |
//	[h1 .1]     [h2 .2]     [h3 .3]                     [h4 .4]
//	   eth0        eth0        eth0                        eth0
//	     \___________\___ br0 (hub namespace, a hub: ___/____/
//	                      ageing 0, every frame to every port)
//
// Fence blue (1) is keyed from the installation secret, which every host
// holds; fence red (2) has its own key file, red.key, on h1 and h2 only;
// h3 runs red with another key (evil.key), as a host that was never given
// red's key; fence green (3) exists on h1 only, with its own key. A fourth
// namespace on the segment records the uplink (tcpdump) and then replays,
// re-sources, bit-flips, truncates and forges datagrams.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/pcap"
)

// sealFence is one fence of a sealed test host.
type sealFence struct {
	name    string
	id      int
	keyFile string // "": derived from the installation secret
}

// sealedYAML is the configuration of a sealed test host: installation 1,
// UDP uplink on 0.0.0.0:7407 with static peers, the given fences (no
// gateway), the installation secret and a previous secret file.
func sealedYAML(h *ulHost, id int, peers []string, fences []sealFence, secret, previous string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "host: {name: %s, installation: 1, id: %d}\n", h.name, id)
	fmt.Fprintf(&b, "uplink:\n  mtu: 1500\n  hello_interval: %s\n  udp: {listen: \"0.0.0.0:7407\", peers: [%s]}\n", ulHello, strings.Join(peers, ", "))
	fmt.Fprintf(&b, "  seal: {mode: required, secret_file: %q", secret)
	if previous != "" {
		fmt.Fprintf(&b, ", previous_secret_file: %q", previous)
	}
	b.WriteString("}\nfences:\n")
	for _, f := range fences {
		fmt.Fprintf(&b, "  - {name: %s, id: %d, listen: [\"unix://%s\"], gateway: {enabled: false}", f.name, f.id, h.sock(f.name))
		if f.keyFile != "" {
			fmt.Fprintf(&b, ", key_file: %q", f.keyFile)
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "admin: {listen: %q}\nlog: {level: debug}\n", h.admin())
	return b.String()
}

// peersFrom returns the quoted static peer list of host i of n on a hub LAN.
func peersFrom(i, n int) []string {
	var peers []string
	for j := 1; j <= n; j++ {
		if j != i {
			peers = append(peers, fmt.Sprintf("%q", fmt.Sprintf("192.0.2.%d:7407", j)))
		}
	}
	return peers
}

// quietVM makes v's namespace send nothing on its own: no IPv6 (router
// solicitations, MLD), and static neighbours for the given peers, so
// that the uplink carries only the frames a test sends.
func quietVM(t testing.TB, v *vm) {
	t.Helper()
	v.ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
}

func staticNeigh(t testing.TB, v *vm, peers ...*vm) {
	t.Helper()
	for _, p := range peers {
		v.ns.MustExec(t, "ip", "neigh", "replace", p.ip, "lladdr", p.mac, "dev", "t0", "nud", "permanent")
	}
}

// peerKey returns the key state st reports for the peer named name and fence.
func peerKey(st admin.PeersResponse, name string, f uint32) string {
	for _, p := range st.Peers {
		if p.Name != name {
			continue
		}
		for _, k := range p.Keys {
			if k.Fence == f {
				return k.State
			}
		}
	}
	return ""
}

// inNS runs f on an OS thread switched into ns (sockets it opens belong
// to ns and can be used from any goroutine afterwards).
func inNS(t testing.TB, ns *harness.NS, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/var/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in %s: %v", ns.Name, err)
	}
}

// wireDatagram is one UDP datagram to port 7407 recorded on the segment.
type wireDatagram struct {
	frame   []byte // the whole Ethernet frame
	dst     netip.AddrPort
	payload []byte // the UDP payload: an encapsulated frame
}

// readUplinkDatagrams returns the IPv4 UDP datagrams to port 7407 of a
// pcap (not IP fragments).
func readUplinkDatagrams(t testing.TB, path string) []wireDatagram {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, pkts, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil && (h.ByteOrder == nil || !errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Fatalf("%s: %v", path, err)
	}
	var out []wireDatagram
	for _, p := range pkts {
		pkt := p.Data
		if len(pkt) < 14+20+8 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 || pkt[14+9] != 17 ||
			binary.BigEndian.Uint16(pkt[14+6:])&0x3fff != 0 {
			continue
		}
		ihl := int(pkt[14]&0x0f) * 4
		udp := pkt[14+ihl:]
		if binary.BigEndian.Uint16(udp[2:]) != fence.DefaultUDPPort {
			continue
		}
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[14+16:14+20])), fence.DefaultUDPPort)
		out = append(out, wireDatagram{frame: slices.Clone(pkt), dst: dst, payload: slices.Clone(udp[8:])})
	}
	return out
}

// dropTotal adds the uplink's inbound drop counters.
func dropTotal(c map[string]uint64) uint64 {
	var n uint64
	for k, v := range c {
		if strings.HasPrefix(k, "drop_") && !strings.HasPrefix(k, "drop_tx") {
			n += v
		}
	}
	return n
}

func TestIntegrationSealedUplink(t *testing.T) {
	harness.NeedRoot(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("tcpdump not installed (contrib/test-deps.sh installs it): %v", err)
	}
	rt := harness.RuntimeDir(t)
	hub, nss := hubLAN(t, "sl", 4)
	// A hub, not a switch: the forger sees every datagram.
	hub.MustExec(t, "ip", "link", "set", "br0", "type", "bridge", "ageing_time", "0")
	keys := harness.ShortTempDir(t)
	secret := keygen(t, keys, "installation.key")
	previous := filepath.Join(keys, "previous.key")
	if err := os.WriteFile(previous, nil, 0o600); err != nil { // no previous secret
		t.Fatal(err)
	}
	red, evil, green := keygen(t, keys, "red.key"), keygen(t, keys, "evil.key"), keygen(t, keys, "green.key")
	fences := [][]sealFence{
		{{"blue", 1, ""}, {"red", 2, red}, {"green", 3, green}},
		{{"blue", 1, ""}, {"red", 2, red}},
		{{"blue", 1, ""}, {"red", 2, evil}},
	}
	hosts := make([]*ulHost, 3)
	for i := range hosts {
		h := &ulHost{name: fmt.Sprintf("s%d", i+1), ns: nss[i], ip: fmt.Sprintf("192.0.2.%d", i+1), rt: rt}
		h.yaml = sealedYAML(h, 0x70+i, peersFrom(i+1, 3), fences[i], secret, previous)
		h.start(t)
		hosts[i] = h
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	harness.WaitFor(t, ulWait, "sealed hellos", func() bool {
		return h1.knows(t, "s2") && h1.knows(t, "s3") && h2.knows(t, "s1") && h2.knows(t, "s3") && h3.knows(t, "s1") && h3.knows(t, "s2")
	})
	vms := map[string]*vm{}
	for _, v := range []struct {
		name, fence string
		host        *ulHost
		ip          string
	}{
		{"vb1", "blue", h1, "198.51.100.1"}, {"vb2", "blue", h2, "198.51.100.2"}, {"vb3", "blue", h3, "198.51.100.3"},
		{"vr1", "red", h1, "198.51.100.11"}, {"vr2", "red", h2, "198.51.100.12"}, {"vr3", "red", h3, "198.51.100.13"},
		{"vg1", "green", h1, "198.51.100.21"},
	} {
		m := newVM(t, v.name, fmt.Sprintf("52:54:00:00:02:%02x", len(vms)+1), v.ip)
		quietVM(t, m)
		m.plugInto(t, v.host, v.fence)
		vms[v.name] = m
	}
	staticNeigh(t, vms["vb1"], vms["vb2"], vms["vb3"])
	staticNeigh(t, vms["vb2"], vms["vb1"])
	staticNeigh(t, vms["vr1"], vms["vr2"], vms["vr3"])
	staticNeigh(t, vms["vr2"], vms["vr1"])
	staticNeigh(t, vms["vr3"], vms["vr1"])
	harness.WaitFor(t, ulWait, "fences announced", func() bool {
		return h1.knows(t, "s2", 1, 2) && h1.knows(t, "s3", 1, 2) && h2.knows(t, "s1", 1, 2, 3) && h3.knows(t, "s1", 1, 2, 3)
	})

	dumpFile := filepath.Join(harness.ShortTempDir(t), "segment.pcap")
	dump := harness.Start(t, nss[3], "tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-w", dumpFile, "udp", "port", "7407")
	if err := dump.WaitLog("listening on", ulWait); err != nil {
		t.Fatal(err)
	}
	const pattern = "c0ffee15c0ffee15"
	t.Run("sealed traffic across hosts", func(t *testing.T) {
		vms["vb1"].mustReach(t, "198.51.100.2", "-p", pattern)
		vms["vb1"].mustReach(t, "198.51.100.3", "-p", pattern)
		vms["vr1"].mustReach(t, "198.51.100.12", "-p", pattern)
		vms["vr2"].mustReach(t, "198.51.100.11", "-M", "do", "-s", bigPingBytes, "-p", pattern) // fragments
	})
	t.Run("a host with another key can neither read nor inject red", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if err := vms["vr3"].ping("198.51.100.11", "-p", pattern); err == nil {
				t.Fatal("vr3 (red with the wrong key) reached vr1")
			}
		}
		harness.WaitFor(t, ulWait, "s1 sees s3 failing on red, s3 sees s1 failing", func() bool {
			return peerKey(h1.status(t), "s3", 2) == "failing" && peerKey(h3.status(t), "s1", 2) == "failing"
		})
		if got := peerKey(h1.status(t), "s2", 2); got != "ok" {
			t.Errorf("s1's view of s2's red: %q, want ok", got)
		}
		// Green's key is on s1 only: s2 says so.
		st := h2.status(t)
		if got := peerKey(st, "s1", 3); got != "no key" {
			t.Errorf("s2's view of s1's green: %q, want no key", got)
		}
		out := h2.ns.MustExec(t, harness.CorralBinary(t), "peers", "--admin", h2.admin())
		if !strings.Contains(out, "fence 3: NO KEY here") && !strings.Contains(out, "fence green (3): NO KEY here") {
			t.Errorf("corral peers on s2 does not say green has no key:\n%s", out)
		}
	})
	if err := dump.Stop(); err != nil {
		t.Logf("tcpdump: %v", err)
	}
	recorded := readUplinkDatagrams(t, dumpFile)
	t.Run("nothing readable on the wire", func(t *testing.T) {
		pat := []byte{0xc0, 0xff, 0xee, 0x15, 0xc0, 0xff, 0xee, 0x15}
		data := 0
		for _, d := range recorded {
			fr, err := fence.Params{Installation: 1, Sealed: true}.Parse(d.payload)
			if err != nil {
				t.Fatalf("a datagram on the segment is not a sealed frame: %v", err)
			}
			if fr.Header().Fence() != 0 {
				data++
			}
			if bytes.Contains(d.payload, pat) {
				t.Fatalf("the ping pattern is readable in a datagram of fence %d", fr.Header().Fence())
			}
		}
		if data < 8 {
			t.Fatalf("recorded %d data frames on the segment; the check above proves nothing", data)
		}
		t.Logf("recorded %d datagrams, %d of them data frames", len(recorded), data)
	})

	t.Run("forged, replayed, re-sourced, bit-flipped and truncated datagrams", func(t *testing.T) {
		// The forger's sockets, in h4's namespace: a UDP socket on
		// 192.0.2.4 and an AF_PACKET socket that resends whole frames.
		var udp *net.UDPConn
		var raw int
		inNS(t, nss[3], func() error {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 4), Port: 7407})
			if err != nil {
				return err
			}
			udp = c
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
			if err != nil {
				return err
			}
			raw = fd
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0, Ifindex: ifi.Index})
		})
		t.Cleanup(func() { udp.Close(); unix.Close(raw) })
		var back, backBytes int
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			buf := make([]byte, 70000)
			for {
				n, err := udp.Read(buf)
				if err != nil {
					return
				}
				back++
				backBytes += n
			}
		}()

		type snapshot struct {
			rx, drops, firsts uint64
			addrs             map[string]string
		}
		snap := func(h *ulHost) snapshot {
			st := h.status(t)
			s := snapshot{rx: st.Counters["rx_frames"], drops: dropTotal(st.Counters), firsts: st.Reassembly.Firsts, addrs: map[string]string{}}
			for _, p := range st.Peers {
				s.addrs[p.Name] = p.Addr
			}
			return s
		}
		before := []snapshot{snap(h1), snap(h2), snap(h3)}

		sent := 0
		pace := func() {
			// Bursts of a thousand frames overflow a veth's backlog
			// (netdev_max_backlog): pace, so that every datagram arrives.
			if sent%16 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		udpSend := func(b []byte, to netip.AddrPort) {
			if _, err := udp.WriteToUDPAddrPort(b, to); err != nil {
				t.Fatal(err)
			}
			sent++
			pace()
		}
		// Sealed with another secret, as s2 and as a new host.
		evilSecret := bytes.Repeat([]byte{0x66}, 32)
		for _, src := range []uint16{0x71, 0x99} {
			var keyset []fence.FenceKey
			for _, f := range []uint32{0, 1, 2} {
				k, _ := fence.DeriveFenceKey(evilSecret, 1, f)
				keyset = append(keyset, fence.FenceKey{ID: fence.KeyID(evilSecret), Fence: f, Key: k})
			}
			s, err := fence.NewSealer(fence.SealConfig{Params: fence.Params{Installation: 1, Sealed: true}, HostID: src, Keys: keyset})
			if err != nil {
				t.Fatal(err)
			}
			inner := make([]byte, 100)
			copy(inner, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 9, 9, 0x08, 0x06})
			for _, f := range []uint32{1, 2} {
				buf := make([]byte, fence.SealedHeaderLen+len(inner)+fence.SealTagLen)
				copy(buf[fence.SealedHeaderLen:], inner)
				fr, err := s.Encap(buf, fence.SealedHeaderLen, len(inner), fence.BroadcastMAC, f)
				if err != nil {
					t.Fatal(err)
				}
				udpSend(fr, netip.MustParseAddrPort("192.0.2.1:7407"))
			}
			// Unsealed (version 1) frames of the installation.
			p := fence.Params{Installation: 1}
			b := make([]byte, fence.EncapLen+len(inner))
			copy(b[fence.EncapLen:], inner)
			udpSend(p.Encap(b, fence.EncapLen, len(inner), fence.BroadcastMAC, p.OuterMAC(src), fence.HeaderFields{Fence: 1}),
				netip.MustParseAddrPort("192.0.2.1:7407"))
		}
		eth0 := &unix.SockaddrLinklayer{Ifindex: ifIndex(t, nss[3])}
		used := 0
		for _, d := range recorded {
			if len(d.frame) > 1514 {
				// A UDP GSO train seen before segmentation (the veth
				// carries it whole): several datagrams in one record.
				continue
			}
			used++
			// Replayed as it was, from its real source (whole frame).
			// The UDP checksum is cleared (none, valid over IPv4): a
			// capture on a veth holds a partial checksum the NIC would
			// have finished.
			rep := slices.Clone(d.frame)
			ihl := int(rep[14]&0x0f) * 4
			rep[14+ihl+6], rep[14+ihl+7] = 0, 0
			if err := unix.Sendto(raw, rep, 0, eth0); err != nil {
				t.Fatalf("replay: %v", err)
			}
			sent++
			pace()
			// Re-sourced: the same datagram from the forger's address.
			udpSend(d.payload, d.dst)
			// Bit-flipped and truncated.
			for _, i := range []int{6, 11, 14, 18, 19, 26, 27, len(d.payload) / 2, len(d.payload) - 1} {
				m := slices.Clone(d.payload)
				m[i] ^= 0x04
				udpSend(m, d.dst)
			}
			for _, n := range []int{18, 27, 44, len(d.payload) - 1} {
				udpSend(d.payload[:n], d.dst)
			}
		}
		if used < 20 {
			t.Fatalf("only %d recorded datagrams fit one frame", used)
		}
		t.Logf("forger sent %d datagrams, from %d recorded ones", sent, used)
		// Every forged datagram is a drop or (a fragment) a pending
		// first; wait until the counters account for all of them.
		var counted uint64
		deadline := time.Now().Add(ulWait)
		for {
			after := []snapshot{snap(h1), snap(h2), snap(h3)}
			counted = 0
			for i := range after {
				counted += after[i].drops - before[i].drops + after[i].firsts - before[i].firsts
			}
			if counted >= uint64(sent) {
				break
			}
			if time.Now().After(deadline) {
				for i, h := range hosts {
					st := h.status(t)
					t.Logf("%s: counters %v, reassembly %+v (before: drops %d, firsts %d)", h.name, st.Counters, st.Reassembly, before[i].drops, before[i].firsts)
				}
				t.Fatalf("%d of %d forged datagrams counted as dropped or pending", counted, sent)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // anything late would show in rx_frames now
		for i, h := range hosts {
			a := snap(h)
			if a.rx != before[i].rx {
				t.Errorf("%s: rx_frames %d → %d: a forged frame was delivered", h.name, before[i].rx, a.rx)
			}
			for name, addr := range before[i].addrs {
				if a.addrs[name] != addr {
					t.Errorf("%s: peer %s moved from %s to %s", h.name, name, addr, a.addrs[name])
				}
			}
			if len(a.addrs) != len(before[i].addrs) {
				t.Errorf("%s: peers %v, before %v", h.name, a.addrs, before[i].addrs)
			}
		}
		udp.SetReadDeadline(time.Now().Add(time.Second))
		<-readDone
		if back != 0 {
			t.Fatalf("the forger got %d datagrams (%d bytes) back for %d sent: amplification", back, backBytes, sent)
		}
		// Bad datagrams are summarized, never logged one by one.
		for _, h := range hosts {
			if n := strings.Count(h.proc.Log(), "peer learned"); n > 2 {
				t.Errorf("%s logged %d peer learned lines", h.name, n)
			}
		}
	})
	t.Run("still working", func(t *testing.T) {
		vms["vb2"].mustReach(t, "198.51.100.1")
		vms["vr2"].mustReach(t, "198.51.100.11")
	})
}

// ifIndex returns eth0's index in ns.
func ifIndex(t testing.TB, ns *harness.NS) int {
	t.Helper()
	var idx int
	inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			idx = ifi.Index
		}
		return err
	})
	return idx
}

// TestIntegrationSealedRotation rotates the installation secret of two
// sealed hosts with SIGHUP, one host at a time, in three rounds (the new
// secret receive-only; the new one sending and the old one receive-only;
// the old one retired), while a VM pings across every 10 ms: no echo is
// lost and no frame fails to open.
func TestIntegrationSealedRotation(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "sr", 2)
	keys := harness.ShortTempDir(t)
	oldKey, err := os.ReadFile(keygen(t, keys, "old"))
	if err != nil {
		t.Fatal(err)
	}
	var newKey []byte
	for {
		b, err := os.ReadFile(keygen(t, keys, fmt.Sprintf("new%d", len(newKey))))
		if err != nil {
			t.Fatal(err)
		}
		if keyIDOf(t, b) != keyIDOf(t, oldKey) {
			newKey = b
			break
		}
	}
	var hosts []*ulHost
	write := func(h *ulHost, name string, b []byte) {
		t.Helper()
		p := filepath.Join(keys, h.name+"-"+name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, ns := range nss {
		h := &ulHost{name: fmt.Sprintf("r%d", i+1), ns: ns, ip: fmt.Sprintf("192.0.2.%d", i+1), rt: rt}
		write(h, "secret", oldKey)
		write(h, "previous", nil)
		h.yaml = sealedYAML(h, 0x80+i, peersFrom(i+1, 2), []sealFence{{"blue", 1, ""}},
			filepath.Join(keys, h.name+"-secret"), filepath.Join(keys, h.name+"-previous"))
		h.start(t)
		hosts = append(hosts, h)
	}
	a, b := newVM(t, "ra", macA, ipA), newVM(t, "rb", macB, ipB)
	a.plugInto(t, hosts[0], "blue")
	b.plugInto(t, hosts[1], "blue")
	a.mustReach(t, ipB)
	const count = 1500
	ping := harness.Start(t, a.ns, "ping", "-n", "-i", "0.01", "-c", fmt.Sprint(count), "-W", "2", ipB)
	reloads := map[*ulHost]int{}
	round := func(secret, previous []byte) {
		for _, h := range hosts {
			time.Sleep(700 * time.Millisecond)
			write(h, "secret", secret)
			write(h, "previous", previous)
			reloads[h]++
			if err := h.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			harness.WaitFor(t, ulWait, h.name+" reloaded", func() bool {
				return strings.Count(h.proc.Log(), "SIGHUP: uplink keys reloaded") == reloads[h]
			})
		}
	}
	round(oldKey, newKey) // 1: the new secret is accepted everywhere
	round(newKey, oldKey) // 2: hosts send with it, one by one
	round(newKey, nil)    // 3: the old one is retired
	if err := ping.Wait(); err != nil {
		t.Fatalf("ping: %v\n%s", err, ping.Log())
	}
	if !strings.Contains(ping.Log(), fmt.Sprintf("%d packets transmitted, %d received, 0%% packet loss", count, count)) {
		t.Fatalf("echoes lost during the rotation:\n%s", lastLines(ping.Log(), 3))
	}
	for _, h := range hosts {
		st := h.status(t)
		c := st.Counters
		if c["drop_no_key"]+c["drop_auth"]+c["drop_replay"] != 0 {
			t.Errorf("%s: drop_no_key %d, drop_auth %d, drop_replay %d during the rotation", h.name, c["drop_no_key"], c["drop_auth"], c["drop_replay"])
		}
		if st.Seal == nil || st.Seal.KeyChanges != 3 || *st.Seal.Keys[1].SendKeyID != keyIDOf(t, newKey) || len(st.Seal.Keys[1].KeyIDs) != 1 {
			t.Errorf("%s: seal after the rotation: %+v", h.name, st.Seal)
		}
	}
}

// keyIDOf returns the key ID of a secret file's contents (64 hex digits).
func keyIDOf(t testing.TB, b []byte) uint8 {
	t.Helper()
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		t.Fatalf("not a secret: %v", err)
	}
	return fence.KeyID(k)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestIntegrationUnsealedNonPeer: an unsealed uplink accepts only its
// configured peers: datagrams from a third address on the segment, valid
// frames and hellos of the installation, are dropped (counted), nothing is
// delivered and nothing goes back to the sender (amplification 0).
func TestIntegrationUnsealedNonPeer(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.RuntimeDir(t)
	_, nss := hubLAN(t, "un", 3)
	var hosts []*ulHost
	for i := 0; i < 2; i++ {
		h := &ulHost{name: fmt.Sprintf("n%d", i+1), ns: nss[i], ip: fmt.Sprintf("192.0.2.%d", i+1), rt: rt}
		up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [\"192.0.2.%d:7407\"]}\n", 2-i)
		h.yaml = hostYAML(h.name, 0x90+i, up, []string{"blue"}, h)
		h.start(t)
		hosts = append(hosts, h)
	}
	harness.WaitFor(t, ulWait, "hellos", func() bool { return hosts[0].knows(t, "n2") })
	var udp *net.UDPConn
	inNS(t, nss[2], func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 3), Port: 7407})
		udp = c
		return err
	})
	defer udp.Close()
	before := hosts[0].status(t).Counters
	p := fence.Params{Installation: 1}
	inner := make([]byte, 60)
	copy(inner, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 9, 9, 0x08, 0x06})
	sent, sentBytes := 0, 0
	for i := 0; i < 200; i++ {
		src := p.OuterMAC(uint16(0x200 + i))
		var b []byte
		if i%2 == 0 {
			hb := (&fence.Hello{HostID: uint16(0x200 + i), Name: "x", Fences: []uint32{1}}).AppendTo(make([]byte, fence.EncapLen))
			b = p.Encap(hb, fence.EncapLen, len(hb)-fence.EncapLen, fence.BroadcastMAC, src, fence.HeaderFields{})
		} else {
			fb := make([]byte, fence.EncapLen+len(inner))
			copy(fb[fence.EncapLen:], inner)
			b = p.Encap(fb, fence.EncapLen, len(inner), fence.BroadcastMAC, src, fence.HeaderFields{Fence: 1})
		}
		if _, err := udp.WriteToUDPAddrPort(b, netip.MustParseAddrPort("192.0.2.1:7407")); err != nil {
			t.Fatal(err)
		}
		sent++
		sentBytes += len(b)
	}
	harness.WaitFor(t, ulWait, "drop_not_peer counts them", func() bool {
		return hosts[0].status(t).Counters["drop_not_peer"]-before["drop_not_peer"] >= uint64(sent)
	})
	st := hosts[0].status(t)
	if st.Counters["rx_frames"] != before["rx_frames"] || len(st.Peers) != 1 {
		t.Fatalf("rx_frames %d → %d, peers %d: a non-peer's frame was accepted", before["rx_frames"], st.Counters["rx_frames"], len(st.Peers))
	}
	if st.Accept != "peers" {
		t.Fatalf("accept %q, want peers", st.Accept)
	}
	udp.SetReadDeadline(time.Now().Add(time.Second))
	got := 0
	buf := make([]byte, 70000)
	for {
		n, err := udp.Read(buf)
		if err != nil {
			break
		}
		got += n
	}
	t.Logf("unknown sender: sent %d datagrams (%d bytes), got %d bytes back", sent, sentBytes, got)
	if got > sentBytes {
		t.Fatalf("amplification: %d bytes back for %d sent", got, sentBytes)
	}
	if got != 0 {
		t.Fatalf("the non-peer got %d bytes back, want none", got)
	}
}
