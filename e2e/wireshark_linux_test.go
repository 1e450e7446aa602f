package e2e

// The Wireshark dissector of contrib/wireshark (issue 9 item 7) decodes
// the uplink wire format: tshark reads a capture of the golden frames of
// package fence (fence/testdata/*.hex: a whole frame, a flooded frame in
// two fragments, a sealed frame, a hello) with the Lua script loaded, once
// as outer Ethernet frames (raw uplink, `corral capture --uplink`) and once
// as UDP datagrams to port 7407 (the UDP uplink on the wire), and the
// decoded fields must be those DESIGN.md section 3 and fence/doc.go give.

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/pcap"
)

// dissectorFields are the fields the test asks tshark for, in order.
var dissectorFields = []string{
	"corral.version", "corral.ft", "corral.seq", "corral.fence", "corral.opi",
	"corral.src.installation", "corral.src.host_id", "corral.key_id", "corral.counter",
	"corral.hello.host_id", "corral.hello.name", "corral.hello.fence", "corral.hello.gateway",
	"ip.dst", "udp.dstport",
}

// dissectorWant is what tshark must print per golden frame (tab-separated
// dissectorFields; the last two belong to the inner frame of whole.hex).
var dissectorWant = []struct{ file, fields string }{
	// 192.0.2.1:4000 → 192.0.2.2:5000 inside fence 1, from host 0x02c2 of installation 1.
	{"whole.hex", "1\t0\t0\t1\t0x01000001\t1\t0x02c2\t\t\t\t\t\t\t192.0.2.2\t5000"},
	// A 1500-byte frame of fence 0x100 flooded in two fragments, Seq 3.
	{"frag-first.hex", "1\t1\t3\t256\t0x01000100\t1\t0x02c2\t\t\t\t\t\t\t\t"},
	{"frag-last.hex", "1\t2\t3\t256\t0x01000100\t1\t0x02c2\t\t\t\t\t\t\t\t"},
	// Sealed (version 2): key ID 1, counter 1000; the inner frame stays opaque.
	{"sealed.hex", "2\t0\t0\t1\t0x01000001\t1\t0x02c2\t1\t1000\t\t\t\t\t\t"},
	// The hello of host lab1 (0x02c2): fences 1, 2, 0xabcdef; gateway of fence 1.
	{"hello.hex", "1\t0\t0\t0\t0x01000000\t1\t0x02c2\t\t\t0x02c2\tlab1\t1,2,11259375\t1\t\t"},
}

func TestIntegrationWiresharkDissector(t *testing.T) {
	harness.NeedRoot(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark not installed (contrib/test-deps.sh installs it): %v", err)
	}
	root := harness.RepoRoot(t)
	script := filepath.Join(root, "contrib", "wireshark", "corral.lua")
	dir := t.TempDir()

	var frames [][]byte
	for _, w := range dissectorWant {
		b, err := os.ReadFile(filepath.Join(root, "fence", "testdata", w.file))
		if err != nil {
			t.Fatal(err)
		}
		f, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			t.Fatalf("%s: %v", w.file, err)
		}
		frames = append(frames, f)
	}

	for _, c := range []struct {
		name string
		lt   pcap.LinkType
		wrap func([]byte) []byte
	}{
		{"ethernet", pcap.LinkTypeEthernet, func(f []byte) []byte { return f }},
		{"udp", pcap.LinkTypeEthernet, udpUplinkDatagram},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.name+".pcap")
			var buf bytes.Buffer
			w, err := pcap.NewWriter(&buf, 65535, c.lt)
			if err != nil {
				t.Fatal(err)
			}
			ts := time.Unix(1700000000, 0)
			for i, f := range frames {
				p := c.wrap(f)
				if err := w.WritePacket(ts.Add(time.Duration(i)*time.Millisecond), len(p), p); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"-X", "lua_script:" + script, "-r", file, "-T", "fields", "-E", "separator=/t"}
			for _, f := range dissectorFields {
				args = append(args, "-e", f)
			}
			cmd := exec.Command(tshark, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, stderr.String())
			}
			if strings.Contains(stderr.String(), "Lua: Error") || strings.Contains(stderr.String(), "lua_script") {
				t.Fatalf("tshark could not load the dissector:\n%s", stderr.String())
			}
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if len(lines) != len(dissectorWant) {
				t.Fatalf("tshark printed %d lines, want %d:\n%s", len(lines), len(dissectorWant), out)
			}
			for i, w := range dissectorWant {
				got := lines[i]
				want := w.fields
				if c.name == "udp" {
					// The outer IPv4/UDP of the uplink comes first in ip.dst and udp.dstport.
					want = udpWant(want)
				}
				if got != want {
					t.Errorf("%s: tshark fields\n got %q\nwant %q", w.file, got, want)
				}
			}
		})
	}
}

// udpUplinkDatagram wraps an encapsulated frame as the UDP uplink carries
// it: Ethernet, IPv4 192.0.2.101 → 192.0.2.102, UDP 7407 → 7407, payload
// the whole encapsulated frame (DESIGN.md 3.1).
func udpUplinkDatagram(f []byte) []byte {
	b := make([]byte, 0, 14+20+8+len(f))
	b = append(b, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x02, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x08, 0x00)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 101, 192, 0, 2, 102}
	total := 20 + 8 + len(f)
	ip[2], ip[3] = byte(total>>8), byte(total)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	ip[10], ip[11] = byte(cs>>8), byte(cs)
	b = append(b, ip...)
	ul := 8 + len(f)
	b = append(b, 0x1c, 0xef, 0x1c, 0xef, byte(ul>>8), byte(ul), 0, 0) // checksum 0: none (IPv4)
	return append(b, f...)
}

// udpWant adds the outer datagram's ip.dst and udp.dstport in front of
// the inner frame's (tshark lists every occurrence of a field).
func udpWant(want string) string {
	f := strings.Split(want, "\t")
	n := len(f)
	ipDst, port := f[n-2], f[n-1]
	f[n-2] = joinNonEmpty("192.0.2.102", ipDst)
	f[n-1] = joinNonEmpty("7407", port)
	return strings.Join(f, "\t")
}

func joinNonEmpty(a, b string) string {
	if b == "" {
		return a
	}
	return a + "," + b
}

// TestIntegrationWiresharkUplinkCapture: tshark with the dissector reads
// a real `corral capture --uplink` of a sealed and of an unsealed uplink
// (two hosts, a VM on each pinging the other) and decodes the fields:
// version, fence, key ID and counter (sealed: the key ID is the secret's,
// no counter twice from one host), the inner ICMP only when unsealed.
func TestIntegrationWiresharkUplinkCapture(t *testing.T) {
	harness.NeedRoot(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark not installed (contrib/test-deps.sh installs it): %v", err)
	}
	script := filepath.Join(harness.RepoRoot(t), "contrib", "wireshark", "corral.lua")
	for _, sealedUplink := range []bool{true, false} {
		name := map[bool]string{true: "sealed", false: "unsealed"}[sealedUplink]
		t.Run(name, func(t *testing.T) {
			rt := harness.RuntimeDir(t)
			_, nss := hubLAN(t, "w"+name[:1], 2)
			keys := harness.ShortTempDir(t)
			secret := keygen(t, keys, "installation.key")
			var hosts []*ulHost
			for i, ns := range nss {
				h := &ulHost{name: fmt.Sprintf("w%d", i+1), ns: ns, rt: rt}
				if sealedUplink {
					h.yaml = sealedYAML(h, 0xa0+i, peersFrom(i+1, 2), []sealFence{{"blue", 1, ""}}, secret, "")
				} else {
					up := fmt.Sprintf("  udp: {listen: \"0.0.0.0:7407\", peers: [\"192.0.2.%d:7407\"]}\n", 2-i)
					h.yaml = hostYAML(h.name, 0xa0+i, up, []string{"blue"}, h)
				}
				h.start(t)
				hosts = append(hosts, h)
			}
			a, b := newVM(t, "w"+name[:1]+"a", macA, ipA), newVM(t, "w"+name[:1]+"b", macB, ipB)
			a.plugInto(t, hosts[0], "blue")
			b.plugInto(t, hosts[1], "blue")
			a.mustReach(t, ipB)
			file := filepath.Join(harness.ShortTempDir(t), "uplink.pcap")
			capt := harness.Start(t, nil, harness.CorralBinary(t), "capture", "--admin", hosts[0].admin(), "--uplink", "-c", "40", "-w", file)
			if err := capt.WaitLog("capturing the uplink", ulWait); err != nil {
				t.Fatal(err)
			}
			ping := harness.Start(t, a.ns, "ping", "-n", "-i", "0.05", "-c", "40", ipB)
			harness.WaitFor(t, ulWait, "corral capture -c 40 to exit", capt.Exited)
			if err := capt.Wait(); err != nil {
				t.Fatalf("corral capture: %v\n%s", err, capt.Log())
			}
			ping.Kill()
			fields := []string{"corral.version", "corral.fence", "corral.key_id", "corral.counter", "corral.src.host_id", "icmp.type"}
			args := []string{"-X", "lua_script:" + script, "-r", file, "-T", "fields", "-E", "separator=/t"}
			for _, f := range fields {
				args = append(args, "-e", f)
			}
			cmd := exec.Command(tshark, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || strings.Contains(stderr.String(), "Lua: Error") {
				t.Fatalf("tshark: %v\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if len(lines) != 40 {
				t.Fatalf("tshark decoded %d frames, want 40:\n%s", len(lines), out)
			}
			wantID := ""
			if sealedUplink {
				b, err := os.ReadFile(secret)
				if err != nil {
					t.Fatal(err)
				}
				wantID = fmt.Sprint(keyIDOf(t, b))
			}
			lastCounter := map[string]uint64{}
			seen := map[string]bool{}
			fencesSeen := map[string]int{}
			icmp := 0
			for _, l := range lines {
				f := strings.Split(l, "\t")
				if len(f) != len(fields) {
					t.Fatalf("tshark line %q", l)
				}
				version, fenceID, keyID, counter, host, icmpType := f[0], f[1], f[2], f[3], f[4], f[5]
				fencesSeen[fenceID]++
				if icmpType != "" {
					icmp++
				}
				if host != "0x00a0" && host != "0x00a1" {
					t.Fatalf("sender host ID %q, want 0x00a0 or 0x00a1: %q", host, l)
				}
				if !sealedUplink {
					if version != "1" || keyID != "" || counter != "" {
						t.Fatalf("unsealed frame decoded as %q", l)
					}
					continue
				}
				if version != "2" || keyID != wantID || counter == "" {
					t.Fatalf("sealed frame decoded as %q (want version 2, key ID %s, a counter)", l, wantID)
				}
				var c uint64
				if _, err := fmt.Sscan(counter, &c); err != nil || c == 0 {
					t.Fatalf("counter %q", counter)
				}
				// A counter is a nonce: never twice from one host. (The
				// control and send paths seal concurrently, so the
				// capture's order need not be the counters'.)
				if seen[host+"/"+counter] {
					t.Fatalf("host %s used counter %d twice", host, c)
				}
				seen[host+"/"+counter] = true
				lastCounter[host] = max(lastCounter[host], c)
			}
			if fencesSeen["1"] == 0 {
				t.Fatalf("no fence-1 frame in the capture: %v", fencesSeen)
			}
			if sealedUplink && icmp != 0 {
				t.Fatalf("tshark decoded %d ICMP messages inside sealed frames", icmp)
			}
			if !sealedUplink && icmp == 0 {
				t.Fatalf("tshark decoded no ICMP inside the unsealed frames")
			}
			t.Logf("%s: %d frames, by fence %v, %d ICMP decoded, counters %v", name, len(lines), fencesSeen, icmp, lastCounter)
		})
	}
}
