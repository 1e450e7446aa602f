package e2e

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/e2e/harness"
)

// Gossip topology: 16 corral hosts g1…g16, each in its own namespace on
// one bridge (192.0.2.1…16), each configured with one seed only (g1 joins
// g2, the others g1). Fence lab (ID 1) has a port on g1…g5; every other
// host has a port in fence other (ID 2). Ports are stream clients of the
// test (acClient) on each host's unix socket.

const (
	gsHosts    = 16
	gsLab      = 5 // g1…g5 have fence lab
	gsWait     = 60 * time.Second
	gsFenceLab = 1
)

type gsHost struct {
	ulHost
	i    int
	lab  bool
	port *acClient
}

func (h *gsHost) yaml() string {
	seed := "192.0.2.1:7946"
	if h.i == 1 {
		seed = "192.0.2.2:7946"
	}
	fence, id := "other", 2
	if h.lab {
		fence, id = "lab", gsFenceLab
	}
	return fmt.Sprintf(`host: {name: %s, installation: 1, id: %d}
uplink:
  mtu: 1500
  udp: {listen: "%s:7407"}
  gossip: {listen: "%s:7946", join: [%q]}
fences:
  - {name: %s, id: %d, listen: ["unix://%s"], gateway: {enabled: false}}
admin: {listen: %q}
log: {level: debug}
`, h.name, h.i, h.ip, h.ip, seed, fence, id, h.sock(fence), h.admin())
}

// dial connects the host's test port (a stream client with its own MAC).
func (h *gsHost) dial(t *testing.T) {
	t.Helper()
	fence := "other"
	if h.lab {
		fence = "lab"
	}
	c, err := net.Dial("unix", h.sock(fence))
	if err != nil {
		t.Fatalf("%s: dial %s: %v", h.name, fence, err)
	}
	h.port = newACClient(t, h.name+"/"+fence, fence, acMAC(byte(h.i)), c, true)
}

// gossip reads the host's gossip view (corral peers --json).
func (h *gsHost) gossip(t *testing.T) (*admin.GossipStatus, admin.PeersResponse) {
	t.Helper()
	st := h.status(t)
	if st.Gossip == nil {
		t.Fatalf("%s: corral peers --json has no gossip section", h.name)
	}
	return st.Gossip, st
}

// members returns the names of the members in state.
func members(g *admin.GossipStatus, state string) []string {
	var out []string
	for _, m := range g.Members {
		if m.State == state && !m.Self {
			out = append(out, m.Name)
		}
	}
	return out
}

func fenceHosts(g *admin.GossipStatus, id uint32) []string {
	for _, f := range g.Fences {
		if f.ID == id {
			return slices.Sorted(slices.Values(f.Hosts))
		}
	}
	return nil
}

// all reports whether f holds for every host (asked one by one: f may
// fail the test).
func all(hs []*gsHost, f func(h *gsHost) bool) bool {
	for _, h := range hs {
		if !f(h) {
			return false
		}
	}
	return true
}

// TestIntegrationGossip16 (issue 10, item 5): 16 real corral processes in
// namespaces with one seed each: every member sees the other 15; a
// broadcast in the fence of 5 hosts reaches exactly its 4 other hosts'
// ports (and the uplinks of no other host); a unicast to a MAC only
// gossip knows goes straight to its host; a killed host is withdrawn,
// and after a restart it rejoins and is back in its fence.
func TestIntegrationGossip16(t *testing.T) {
	harness.NeedRoot(t)
	rt := harness.ShortTempDir(t)
	_, nss := hubLAN(t, "gs", gsHosts)
	hosts := make([]*gsHost, gsHosts)
	for i := range hosts {
		hosts[i] = &gsHost{ulHost: ulHost{name: fmt.Sprintf("g%d", i+1), ns: nss[i], ip: fmt.Sprintf("192.0.2.%d", i+1), rt: rt},
			i: i + 1, lab: i < gsLab}
		hosts[i].ulHost.yaml = hosts[i].yaml()
	}
	start := time.Now()
	for _, h := range hosts {
		h.start(t)
	}
	t.Logf("16 processes ready in %v", time.Since(start).Round(time.Millisecond))
	for _, h := range hosts {
		h.dial(t)
	}
	lab, others := hosts[:gsLab], hosts[gsLab:]
	names := func(hs []*gsHost, except *gsHost) []string {
		var out []string
		for _, h := range hs {
			if h != except {
				out = append(out, h.name)
			}
		}
		return slices.Sorted(slices.Values(out))
	}

	// Every member sees the other 15, alive; each lab host sees the other
	// four in the fence and has them as uplink peers.
	harness.WaitFor(t, gsWait, "every member sees the other 15 alive, lab hosts their fence", func() bool {
		return all(hosts, func(h *gsHost) bool {
			g, st := h.gossip(t)
			good := len(members(g, "alive")) == gsHosts-1
			if h.lab {
				good = good && slices.Equal(fenceHosts(g, gsFenceLab), names(lab, h)) && len(st.Peers) == gsLab-1
			}
			return good
		})
	})
	t.Logf("membership converged %v after the start", time.Since(start).Round(time.Millisecond))
	for _, h := range hosts {
		if st := h.status(t); st.Counters["tx_hellos"] != 0 {
			t.Errorf("%s sent %d hellos with gossip", h.name, st.Counters["tx_hellos"])
		}
	}

	// A broadcast in lab reaches exactly the 4 other lab hosts' ports.
	rxLab := func(h *gsHost) uint64 { return h.status(t).RxByFence[gsFenceLab] }
	bcast := acFrame(acBroadcast, lab[0].port.mac, "lab broadcast from g1")
	lab[0].port.send(t, bcast)
	for _, h := range lab[1:] {
		h.port.expect(t, bcast, "g1's broadcast")
	}
	acQuiet(t, "after g1's broadcast", lab[0].port)
	acQuiet(t, "after g1's broadcast", portsOf(others)...)
	for _, h := range others {
		if n := rxLab(h); n != 0 {
			t.Errorf("%s's uplink received %d frames of fence lab", h.name, n)
		}
	}

	// A unicast to a MAC that only gossip announces goes straight to its
	// host. g4 gets a second port (4b); 4a floods once (everyone learns
	// 4a), 4b answers 4a locally: only g4 holds 4b, and gossip tells the
	// other lab hosts.
	g4 := lab[3]
	c, err := net.Dial("unix", g4.sock("lab"))
	if err != nil {
		t.Fatal(err)
	}
	p4b := newACClient(t, "g4/lab-b", "lab", acMAC(0x40), c, true)
	hello := acFrame(p4b.mac, g4.port.mac, "4a to 4b (flood)")
	// The new port is attached shortly after the dial returns: send until
	// it gets the frame.
	harness.WaitFor(t, gsWait, "4b attached and reached by 4a's flood", func() bool {
		g4.port.send(t, hello)
		select {
		case got := <-p4b.rx:
			return string(got) == string(hello)
		case <-time.After(500 * time.Millisecond):
			return false
		}
	})
	for _, h := range []*gsHost{lab[0], lab[1], lab[2], lab[4]} {
		drainUntil(t, h.port, hello)
	}
	answer := acFrame(g4.port.mac, p4b.mac, "4b to 4a (local)")
	p4b.drain()
	p4b.send(t, answer)
	drainUntil(t, g4.port, answer)
	time.Sleep(acQuietWait) // copies of 4a's flood still on their way
	for _, h := range lab {
		h.port.drain()
	}
	harness.WaitFor(t, gsWait, "g1 learns 4b's MAC through gossip", func() bool {
		g, _ := lab[0].gossip(t)
		for _, f := range g.Fences {
			if f.ID == gsFenceLab {
				return f.RemoteMACs >= 2 // 4a and 4b (only ports that sent are learned)
			}
		}
		return false
	})
	before := lab[0].status(t).Counters["tx_directory_unicast"]
	uni := acFrame(p4b.mac, lab[0].port.mac, "g1 to 4b, unknown to g1's switch")
	lab[0].port.send(t, uni)
	p4b.expect(t, uni, "g1's unicast")
	acQuiet(t, "g1's unicast to 4b", lab[1].port, lab[2].port, lab[4].port, g4.port)
	if after := lab[0].status(t).Counters["tx_directory_unicast"]; after <= before {
		t.Errorf("g1 tx_directory_unicast %d → %d: the unicast was not sent straight to g4", before, after)
	}
	p4b.conn.Close()

	// Kill g3 (no goodbye): every other member declares it dead; the lab
	// hosts withdraw it from the fence.
	g3 := lab[2]
	g3.proc.Kill()
	killed := time.Now()
	rest := slices.DeleteFunc(slices.Clone(hosts), func(h *gsHost) bool { return h == g3 })
	harness.WaitFor(t, gsWait, "g3 dead everywhere and out of fence lab", func() bool {
		return all(rest, func(h *gsHost) bool {
			g, _ := h.gossip(t)
			good := !slices.Contains(members(g, "alive"), "g3") && !slices.Contains(members(g, "suspect"), "g3")
			if h.lab {
				good = good && !slices.Contains(fenceHosts(g, gsFenceLab), "g3")
			}
			return good
		})
	})
	t.Logf("g3 withdrawn everywhere %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	b2 := acFrame(acBroadcast, lab[0].port.mac, "lab broadcast without g3")
	lab[0].port.send(t, b2)
	for _, h := range []*gsHost{lab[1], lab[3], lab[4]} {
		h.port.expect(t, b2, "g1's broadcast without g3")
	}

	// Restart g3: it rejoins and is back in fence lab within seconds.
	restarted := time.Now()
	g3.start(t)
	g3.dial(t)
	harness.WaitFor(t, gsWait, "g3 alive everywhere and back in fence lab", func() bool {
		return all(hosts, func(h *gsHost) bool {
			g, st := h.gossip(t)
			good := len(members(g, "alive")) == gsHosts-1
			if h.lab {
				// The uplink peers too: each host accepts frames only
				// from the members it has as peers.
				good = good && slices.Equal(fenceHosts(g, gsFenceLab), names(lab, h)) && len(st.Peers) == gsLab-1
			}
			return good
		})
	})
	t.Logf("g3 back in its fence everywhere %v after its restart", time.Since(restarted).Round(time.Millisecond))
	b3 := acFrame(acBroadcast, lab[0].port.mac, "lab broadcast with g3 back")
	lab[0].port.send(t, b3)
	for _, h := range lab[1:] {
		drainUntil(t, h.port, b3)
	}
	if t.Failed() {
		for _, h := range hosts {
			if h.proc != nil {
				t.Logf("%s log tail:\n%s", h.name, tail(h.proc.Log(), 40))
			}
		}
	}
}

// drainUntil waits for frame want, skipping others (floods of earlier
// steps).
func drainUntil(t *testing.T, c *acClient, want []byte) {
	t.Helper()
	deadline := time.After(acDeliverTimeout)
	for {
		select {
		case got, ok := <-c.rx:
			if !ok {
				t.Fatalf("%s: connection ended (%v)", c.name, c.err())
			}
			if string(got) == string(want) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: frame %q not delivered within %v", c.name, want[14:40], acDeliverTimeout)
		}
	}
}

func portsOf(hs []*gsHost) []*acClient {
	var out []*acClient
	for _, h := range hs {
		out = append(out, h.port)
	}
	return out
}
