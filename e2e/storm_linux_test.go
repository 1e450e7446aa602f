package e2e

// Issue 8 items 4–6 against the real binary: storm control drops and
// counts a port's floods beyond fences[].bum_rate, limits.max_queued_bytes
// is accepted and reported, and `corral fdb` follows the admin API's pages.
// Unix sockets only; every wait bounded.

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

func TestIntegrationStormControlAndFDBPages(t *testing.T) {
	dir := harness.ShortTempDir(t)
	sock, admin := filepath.Join(dir, "a.sock"), filepath.Join(dir, "admin.sock")
	harness.StartCorral(t, nil, fmt.Sprintf(`fences:
  - name: a
    id: 1
    listen: ["unix://%s"]
    gateway: {enabled: false}
    bum_rate: 100
limits:
  max_queued_bytes: 16777216
admin:
  listen: "unix://%s"
`, sock, admin))
	a := newBenchConn(t, benchDial(t, sock), 4)
	b := newBenchConn(t, benchDial(t, sock), 4)
	// b reads (and discards) everything.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := b.next(); err != nil {
				return
			}
		}
	}()
	// Both ports attached before a sends: a flood while b is still being
	// attached reaches nobody (and is no drop).
	acWaitPorts(t, admin, map[uint32]int{1: 2})
	// 2,000 broadcasts at once: the burst (64 at 100 frames/s) and what
	// refills while they go pass, the rest is dropped as storm.
	t0 := time.Now()
	if _, err := a.send(a.frames(2000, 64, benchMAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, benchMACA, 1)); err != nil {
		t.Fatal(err)
	}
	var st struct {
		QueuedBytes    int64 `json:"queued_bytes"`
		MaxQueuedBytes int64 `json:"max_queued_bytes"`
		Ports          []struct {
			RxFrames uint64            `json:"rx_frames"`
			TxFrames uint64            `json:"tx_frames"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"ports"`
	}
	// All 2,000 read from a, and each either written to b or dropped.
	var n int
	var storm uint64
	harness.WaitFor(t, 60*time.Second, "2000 frames read from a and counted", func() bool {
		out, err := exec.Command(harness.CorralBinary(t), "status", "--json", "--admin", admin).Output()
		if err != nil || json.Unmarshal(out, &st) != nil || len(st.Ports) != 2 {
			return false
		}
		var rx, tx uint64
		storm = 0
		for _, p := range st.Ports {
			rx += p.RxFrames
			tx += p.TxFrames
			storm += p.Drops["storm"]
		}
		n = int(tx)
		return rx >= 2000 && tx+storm >= 2000
	})
	elapsed := time.Since(t0)
	maxPass := 64 + int(elapsed.Seconds()*100) + 1
	t.Logf("2000 broadcasts in %v: %d delivered, %d dropped as storm", elapsed, n, storm)
	if n < 64 || n > maxPass || int(storm)+n != 2000 {
		t.Errorf("delivered %d (want 64 … %d), storm drops %d (want %d)", n, maxPass, storm, 2000-n)
	}
	if st.MaxQueuedBytes != 16<<20 {
		t.Errorf("max_queued_bytes: status says %d", st.MaxQueuedBytes)
	}

	// b's MAC is learned once b sends; `corral fdb --limit 1` then lists
	// both MACs over two pages, as a table and as JSON.
	if _, err := b.send(b.frames(1, 64, benchMACA, benchMACB, 1)); err != nil {
		t.Fatal(err)
	}
	var out []byte
	harness.WaitFor(t, 30*time.Second, "corral fdb to list both MACs", func() bool {
		var err error
		out, err = exec.Command(harness.CorralBinary(t), "fdb", "a", "--limit", "1", "--admin", admin).CombinedOutput()
		return err == nil && strings.Count(string(out), "a (1)") == 2
	})
	if !strings.Contains(string(out), "52:54:00:be:00:01") || !strings.Contains(string(out), "52:54:00:be:00:02") {
		t.Errorf("corral fdb:\n%s", out)
	}
	out, err := exec.Command(harness.CorralBinary(t), "fdb", "--limit", "1", "--json", "--admin", admin).Output()
	var fdb []struct {
		Fence   uint32 `json:"fence"`
		Entries []struct {
			MAC string `json:"mac"`
		} `json:"entries"`
	}
	if err != nil || json.Unmarshal(out, &fdb) != nil || len(fdb) != 1 || len(fdb[0].Entries) != 2 {
		t.Errorf("corral fdb --json: %v\n%s", err, out)
	}
	b.c.SetReadDeadline(time.Now())
	<-done
}

// TestIntegrationGlobalQueueBound: ports that never read cannot together
// queue more than limits.max_queued_bytes, though each one's own queue
// bound (8 MiB) would take more; the excess is counted as
// global_queue_full.
func TestIntegrationGlobalQueueBound(t *testing.T) {
	const bound = 1 << 20
	const stuck = 4
	dir := harness.ShortTempDir(t)
	sock, admin := filepath.Join(dir, "q.sock"), filepath.Join(dir, "admin.sock")
	harness.StartCorral(t, nil, fmt.Sprintf(`fences:
  - name: q
    id: 1
    listen: ["unix://%s"]
    gateway: {enabled: false}
limits:
  max_queued_bytes: %d
admin:
  listen: "unix://%s"
`, sock, bound, admin))
	sender := newBenchConn(t, benchDial(t, sock), 4)
	macs := make([]benchMAC, stuck)
	for i := range macs {
		macs[i] = benchMAC{0x52, 0x54, 0x00, 0x5c, 0x00, byte(i + 1)}
		c := newBenchConn(t, benchDial(t, sock), 4) // never reads
		if _, err := c.send(c.frames(1, 64, benchMACA, macs[i], 0)); err != nil {
			t.Fatal(err)
		}
	}
	type status struct {
		QueuedBytes    int64 `json:"queued_bytes"`
		MaxQueuedBytes int64 `json:"max_queued_bytes"`
		Ports          []struct {
			Drops map[string]uint64 `json:"drops"`
		} `json:"ports"`
	}
	read := func() (status, bool) {
		var st status
		out, err := exec.Command(harness.CorralBinary(t), "status", "--json", "--admin", admin).Output()
		return st, err == nil && json.Unmarshal(out, &st) == nil
	}
	harness.WaitFor(t, 30*time.Second, "the stuck ports' MACs learned", func() bool {
		out, err := exec.Command(harness.CorralBinary(t), "fdb", "q", "--admin", admin).Output()
		return err == nil && strings.Count(string(out), "52:54:00:5c:00:") == stuck
	})
	// 1500-byte frames to the stuck ports, round robin, until the bound
	// refuses some (bounded: at most 200 MiB sent).
	blob := []byte{}
	for i := 0; i < 40; i++ {
		blob = append(blob, sender.frames(1, 1500, macs[i%stuck], benchMACA, uint32(i))...)
	}
	var st status
	for i, sent := 0, 0; ; i, sent = i+1, sent+len(blob) {
		if sent > 200<<20 {
			t.Fatalf("no global_queue_full drop after %d MiB; status %+v", sent>>20, st)
		}
		sender.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := sender.send(blob); err != nil {
			t.Fatal(err)
		}
		if i%32 != 0 {
			continue
		}
		var ok bool
		if st, ok = read(); !ok {
			continue
		}
		if st.QueuedBytes > bound || st.MaxQueuedBytes != bound {
			t.Fatalf("queued %d bytes, bound %d (status says %d)", st.QueuedBytes, bound, st.MaxQueuedBytes)
		}
		var global, full uint64
		for _, p := range st.Ports {
			global += p.Drops["global_queue_full"]
			full += p.Drops["queue_full"]
		}
		if global > 0 {
			t.Logf("after %d MiB: %d bytes queued of %d, %d global_queue_full drops, %d queue_full", sent>>20, st.QueuedBytes, bound, global, full)
			if full != 0 {
				t.Errorf("%d queue_full drops: no port reached its own bound", full)
			}
			return
		}
	}
}
