package e2e

// TestIntegrationEvents (issue 11 item 7), with the real binary: `corral
// events` streams, as JSON lines, a port attaching, the lease its guest
// gets from the gateway, a MAC moving to a second port and both ports
// detaching; a connection closed before its first byte (a liveness
// probe) is no event.

import (
	"bufio"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/stack/dhcp/dhcptest"
)

type e2eEvent struct {
	Kind      string `json:"kind"`
	FenceName string `json:"fence_name"`
	Port      string `json:"port"`
	MAC       string `json:"mac"`
	IP        string `json:"ip"`
	Hostname  string `json:"hostname"`
	From, To  string
}

func TestIntegrationEvents(t *testing.T) {
	rt := harness.RuntimeDir(t)
	sock := filepath.Join(rt, "lab.sock")
	adminSock := filepath.Join(rt, "admin.sock")
	harness.StartCorral(t, nil, `fences:
  - {name: lab, id: 1, listen: ["unix://`+sock+`"], gateway: {enabled: true}}
admin: {listen: "unix://`+adminSock+`"}
`)
	cmd := exec.Command(harness.CorralBinary(t), "events", "--admin", adminSock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var (
		mu  sync.Mutex
		got []e2eEvent
	)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e e2eEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				mu.Lock()
				got = append(got, e)
				mu.Unlock()
			}
		}
	}()
	has := func(match func(e2eEvent) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range got {
			if match(e) {
				return true
			}
		}
		return false
	}
	// The stream is up once a port's attach shows: attach a first port
	// until one does (the subscription races the first connection).
	var first net.Conn
	harness.WaitFor(t, 60*time.Second, "a port_attach event", func() bool {
		if first != nil {
			first.Close()
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		first = c
		// Quiet: announced (port_attach) once the probe grace has passed.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if has(func(e e2eEvent) bool { return e.Kind == "port_attach" && e.FenceName == "lab" }) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	mac := [6]byte{0x52, 0x54, 0, 0xee, 0, 1}
	l, err := dhcptest.StreamLease(first, mac, "guest1", 60*time.Second)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	harness.WaitFor(t, 60*time.Second, "a lease_granted event", func() bool {
		return has(func(e e2eEvent) bool {
			return e.Kind == "lease_granted" && e.MAC == "52:54:00:ee:00:01" && e.IP == l.IP.String() && e.Hostname == "guest1"
		})
	})
	// The same MAC from a second port: it moves.
	second, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 4+60)
	frame[3] = 60
	copy(frame[4:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[10:], mac[:])
	frame[16], frame[17] = 0x88, 0xb5
	harness.WaitFor(t, 60*time.Second, "a mac_move event", func() bool {
		second.Write(frame)
		return has(func(e e2eEvent) bool { return e.Kind == "mac_move" && e.MAC == "52:54:00:ee:00:01" })
	})
	// A probe: no event.
	probe, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	first.Close()
	second.Close()
	harness.WaitFor(t, 60*time.Second, "port_detach events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		attach, detach := 0, 0
		for _, e := range got {
			if !strings.HasPrefix(e.Port, "unix://") {
				continue // the gateway's port stays
			}
			switch e.Kind {
			case "port_attach":
				attach++
			case "port_detach":
				detach++
			}
		}
		return detach > 0 && detach == attach
	})
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, e := range got {
		if e.Kind == "port_attach" && strings.HasPrefix(e.Port, "unix://") {
			n++
		}
	}
	// first (maybe more than once while the stream came up) and second;
	// never the probe, whose attach would also need a detach.
	if n < 2 {
		t.Fatalf("%d port_attach events: %+v", n, got)
	}
}
