package e2e

// Integration test of `corral capture` (DESIGN.md section 7) against the
// real binary: a pcap of fence A holds A's frames and none of B's, tcpdump
// reads it, and it is the golden capture testdata/capture/fence-a-4-frames.pcap.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/pcap"
	"github.com/corralnet/corral/pcap/pcaptest"
)

var update = flag.Bool("update", false, "rewrite the shared golden captures in the repository's testdata/")

func TestIntegrationCapture(t *testing.T) {
	harness.NeedRoot(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("tcpdump not installed (contrib/test-deps.sh installs it): %v", err)
	}
	dir := harness.ShortTempDir(t)
	sockA, sockB, adminSock := filepath.Join(dir, "A.sock"), filepath.Join(dir, "B.sock"), filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`fences:
  - {name: A, id: 0x0a, listen: ["unix://%s"]}
  - {name: B, id: 0x0b, listen: ["unix://%s"]}
admin: {listen: "unix://%s"}
`, sockA, sockB, adminSock)
	harness.StartCorral(t, nil, cfg)

	dial := func(name, fence, sock string, mac [6]byte) *acClient {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return newACClient(t, name, fence, mac, c, true)
	}
	a1 := dial("A/1", "A", sockA, acMAC(0x01))
	a2 := dial("A/2", "A", sockA, acMAC(0x02))
	b1 := dial("B/1", "B", sockB, acMAC(0x21))
	acWaitPorts(t, adminSock, map[uint32]int{0x0a: 2, 0x0b: 1})

	file := filepath.Join(dir, "a.pcap")
	capt := harness.Start(t, nil, harness.CorralBinary(t), "capture", "--admin", adminSock, "--fence", "A", "-c", "4", "-w", file)
	if err := capt.WaitLog("capturing fence A", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	f1 := acFrame(acBroadcast, a1.mac, "A broadcast")
	f2 := acFrame(a1.mac, a2.mac, "A 2 to 1")
	f3 := acFrame(a2.mac, a1.mac, "A 1 to 2")
	f4 := acFrame(a1.mac, a2.mac, "A 2 to 1 again")
	b1.send(t, acFrame(acBroadcast, b1.mac, "B broadcast"))
	a1.send(t, f1)
	a2.expect(t, f1, "A broadcast")
	b1.send(t, acFrame(a1.mac, b1.mac, "B to a MAC of A"))
	a2.send(t, f2)
	a1.expect(t, f2, "A unicast")
	a1.send(t, f3)
	a2.expect(t, f3, "A unicast")
	b1.send(t, acFrame(acBroadcast, b1.mac, "B broadcast again"))
	a2.send(t, f4)
	a1.expect(t, f4, "A unicast")

	harness.WaitFor(t, 30*time.Second, "corral capture -c 4 to exit", capt.Exited)
	if err := capt.Wait(); err != nil {
		t.Fatalf("corral capture: %v\n%s", err, capt.Log())
	}
	if !strings.Contains(capt.Log(), "4 frames captured, 0 dropped") {
		t.Errorf("capture summary missing: %q", capt.Log())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tcpdump", "-r", file, "-nn", "-e").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "ethertype") {
			lines = append(lines, l)
		}
	}
	m1, m2, mb := "52:54:00:00:53:01", "52:54:00:00:53:02", "52:54:00:00:53:21"
	want := []string{m1 + " > ff:ff:ff:ff:ff:ff", m2 + " > " + m1, m1 + " > " + m2, m2 + " > " + m1}
	if len(lines) != len(want) {
		t.Fatalf("tcpdump shows %d frames, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("frame %d: %q, want %q", i, lines[i], w)
		}
	}
	if strings.Contains(string(out), mb) {
		t.Errorf("fence B's MAC %s in fence A's capture:\n%s", mb, out)
	}

	// The file itself: whole frames, in order, captured just now.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	h, ps, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil || h.LinkType != pcap.LinkTypeEthernet || len(ps) != 4 {
		t.Fatalf("%s: header %+v, %d packets, %v", file, h, len(ps), err)
	}
	for i, f := range [][]byte{f1, f2, f3, f4} {
		if p := ps[i]; !bytes.Equal(p.Data, f) || p.Len != len(f) || time.Since(p.Time) > 5*time.Minute || (i > 0 && p.Time.Before(ps[i-1].Time)) {
			t.Errorf("packet %d: %d of %d bytes at %v: % x, want % x", i, len(p.Data), p.Len, p.Time, p.Data, f)
		}
	}
	pcaptest.Golden(t, b, "capture/fence-a-4-frames.pcap", *update)
}
