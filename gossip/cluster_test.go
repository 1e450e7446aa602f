package gossip

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralnet/corral/gossip/memnet"
	"github.com/hashicorp/memberlist"
)

// cluster runs gossip nodes on one memnet.Network (the harness of the
// cluster tests and of the scale simulation).
type cluster struct {
	tb   testing.TB
	net  *memnet.Network
	key  []byte
	tune func(*memberlist.Config)
	// dilate is every node's Config.dilate (the scale simulation).
	dilate int
	log    *slog.Logger
	mu     sync.Mutex
	nodes  []*simNode
}

type simNode struct {
	i    int
	name string
	addr string
	cfg  Config
	n    *Node
}

func newCluster(tb testing.TB, hook func(from, to string, b []byte)) *cluster {
	c := &cluster{tb: tb, net: &memnet.Network{Hook: hook}, log: slog.New(slog.DiscardHandler)}
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		c.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tb.Cleanup(c.closeAll)
	return c
}

// outerMAC returns host i's outer MAC: 02:fe:0c · installation 1 · i+1.
func outerMAC(i int) [6]byte { return [6]byte{0x02, 0xfe, 0x0c, 0x01, byte((i + 1) >> 8), byte(i + 1)} }

// innerMAC returns VM MAC k of host in fence f; it names the fence and
// host so that a test can find it in raw bytes: 0e|k<<4 · c5 · fence (2,
// fences below 65536 here) · host (2).
func innerMAC(f uint32, host, k int) [6]byte {
	return [6]byte{0x0e | byte(k)<<4, 0xc5, byte(f >> 8), byte(f), byte(host >> 8), byte(host)}
}

// add creates node i (not started) with a fresh address.
func (c *cluster) add() *simNode {
	c.mu.Lock()
	i := len(c.nodes)
	s := &simNode{i: i, name: fmt.Sprintf("h%04d", i), addr: c.net.NewAddr()}
	c.nodes = append(c.nodes, s)
	c.mu.Unlock()
	return s
}

// start starts node s, joining join.
func (c *cluster) start(s *simNode, join []string) {
	c.tb.Helper()
	tr, err := c.net.NewTransport(s.addr)
	if err != nil {
		c.tb.Fatal(err)
	}
	s.cfg = Config{
		Name:         s.name,
		OuterMAC:     outerMAC(s.i),
		Installation: 1,
		DataAddrs:    nil,
		Join:         join,
		JoinBackoff:  100 * time.Millisecond,
		SecretKey:    c.key,
		Transport:    tr,
		Logger:       c.log.With("node", s.name),
		tune:         c.tune,
		dilate:       c.dilate,
	}
	n, err := New(s.cfg)
	if err != nil {
		c.tb.Fatalf("start %s: %v", s.name, err)
	}
	s.n = n
}

// fail takes s down without a goodbye and stops it.
func (c *cluster) fail(s *simNode) {
	c.net.Fail(s.addr)
	s.n.Close()
}

func (c *cluster) closeAll() {
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range nodes {
		if s.n != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.net.Fail(s.addr); s.n.Close() }()
		}
	}
	wg.Wait()
}

// running returns the nodes that run.
func (c *cluster) running() []*simNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []*simNode
	for _, s := range c.nodes {
		if s.n != nil && !s.n.closed.Load() {
			l = append(l, s)
		}
	}
	return l
}

// waitFor polls cond every 20 ms until it holds or d passes; it returns
// how long it took and whether it held.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// knows reports whether every running node other than s sees s up with
// fences want (nil: any).
func (c *cluster) knownByAll(s *simNode, up bool) bool {
	for _, o := range c.running() {
		if o == s {
			continue
		}
		m, ok := o.n.Snapshot().Member(outerMAC(s.i))
		if ok != up || (ok && !m.State.up()) {
			return false
		}
	}
	return true
}

// fenceMix assigns each of nf fences to between lo and hi random hosts of
// nh, deterministically from seed; it returns each host's fences.
func fenceMix(nh, nf, lo, hi int, seed uint64) [][]uint32 {
	r := rand.New(rand.NewPCG(seed, 1))
	hosts := make([][]uint32, nh)
	for f := 1; f <= nf; f++ {
		k := min(nh, lo+r.IntN(hi-lo+1))
		for _, h := range r.Perm(nh)[:k] {
			hosts[h] = append(hosts[h], uint32(f))
		}
	}
	return hosts
}
