package stack

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// stallGap is the longest a bulk transfer may go without moving a byte
// before the tests call it a stall: far above scheduling delays, below
// the retransmission and zero-window-probe timers (1 s and up, doubling)
// a lost ACK or window update costs.
const stallGap = 5 * time.Second

// bulkServer accepts connections on 127.0.0.1 and, on each, sends payload
// then half-closes while it reads everything the peer sends, and reports
// the SHA-256 of what it read.
type bulkServer struct {
	ln   net.Listener
	sums chan [32]byte
	wg   sync.WaitGroup
}

func newBulkServer(t *testing.T, payload []byte) *bulkServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &bulkServer{ln: ln, sums: make(chan [32]byte, 100)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				wrote := make(chan struct{})
				go func() {
					c.Write(payload)
					c.(*net.TCPConn).CloseWrite()
					close(wrote)
				}()
				h := sha256.New()
				io.Copy(h, c)
				<-wrote // close only once the write is done
				var sum [32]byte
				copy(sum[:], h.Sum(nil))
				s.sums <- sum
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// transfer is one bulk transfer's outcome.
type transfer struct {
	took   time.Duration
	maxGap time.Duration // longest time without a byte read, either way
}

// bulkThroughNAT connects from the guest to srv through the gateway's
// address, moves payload both ways and checks the bytes.
func bulkThroughNAT(t *testing.T, g *Gateway, gs *guest, srv *bulkServer, payload []byte, sum [32]byte) transfer {
	t.Helper()
	start := time.Now()
	ctx := ctxT(t, 60*time.Second)
	c, err := gonet.DialContextTCP(ctx, gs.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Addr().As4()),
		Port: uint16(srv.ln.Addr().(*net.TCPAddr).Port)}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var lastRead atomic.Int64
	lastRead.Store(time.Now().UnixNano())
	var maxGap atomic.Int64
	note := func() {
		now := time.Now().UnixNano()
		if gap := now - lastRead.Swap(now); gap > maxGap.Load() {
			maxGap.Store(gap)
		}
	}
	werr := make(chan error, 1)
	go func() {
		// The guest's writes: progress is what the host reads, seen here
		// as the write returning; the host→guest side is timed below.
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var got int
	for {
		n, err := c.Read(buf)
		note()
		h.Write(buf[:n])
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("host→guest after %d of %d bytes (longest gap %v): %v; gateway %+v", got, len(payload),
				time.Duration(maxGap.Load()), err, g.Stats())
		}
	}
	if !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatal("host→guest bytes differ")
	}
	if err := <-werr; err != nil {
		t.Fatalf("guest→host write: %v", err)
	}
	select {
	case s := <-srv.sums:
		if s != sum {
			t.Fatal("guest→host bytes differ")
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("guest→host transfer did not finish; gateway %+v", g.Stats())
	}
	return transfer{took: time.Since(start), maxGap: time.Duration(maxGap.Load())}
}

func bulkPayload(size int) ([]byte, [32]byte) {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i*7 + i>>11)
	}
	return p, sha256.Sum256(p)
}

// checkNoOutDrops fails when either link endpoint dropped outbound
// packets, and logs the backpressure and the wires' drops.
func checkNoOutDrops(t *testing.T, g *Gateway, gs *guest) {
	t.Helper()
	t.Logf("gateway: out waits %d, drops %d; guest: out waits %d, drops %d; wires (switch) dropped %d to the guest, %d to the gateway",
		g.ep.out.waits.Load(), g.ep.outDrops.Load(), gs.ep.out.waits.Load(), gs.ep.outDrops.Load(),
		gs.toGuest.drops.Load(), gs.toGateway.drops.Load())
	if d := g.ep.outDrops.Load() + gs.ep.outDrops.Load(); d != 0 {
		t.Fatalf("%d outbound packets dropped", d)
	}
}

// TestNATReaderPausesNoStall: the switch stops reading the gateway (and
// the guest) for 50 ms at a time during bulk transfers both ways: the
// outbound queues fill, the stacks wait for room instead of dropping ACKs
// and window updates, and no transfer stalls.
func TestNATReaderPausesNoStall(t *testing.T) {
	payload, sum := bulkPayload(8 << 20)
	srv := newBulkServer(t, payload)
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	stop := make(chan struct{})
	paused := make(chan struct{})
	go func() {
		defer close(paused)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			gs.fromGateway.pause.Store(true)
			gs.fromGuest.pause.Store(true)
			time.Sleep(50 * time.Millisecond)
			gs.fromGateway.pause.Store(false)
			gs.fromGuest.pause.Store(false)
		}
	}()
	for i := 0; i < 3; i++ {
		tr := bulkThroughNAT(t, g, gs, srv, payload, sum)
		t.Logf("transfer %d: %v, longest gap %v", i, tr.took, tr.maxGap)
		if tr.maxGap >= stallGap {
			t.Fatalf("transfer %d stalled for %v", i, tr.maxGap)
		}
	}
	close(stop)
	<-paused
	// Whether a queue filled (out waits, logged) depends on how far the
	// windows have grown; TestOutQueueBackpressure tests the waiting.
	checkNoOutDrops(t, g, gs)
}

// TestNATBulkUnderContention: with one OS thread for Go (GOMAXPROCS=1)
// and two CPU-bound goroutines competing with the stacks, 50 transfers of
// 8 MiB each way through the NAT: none stalls, no outbound packet is
// dropped. Under the race detector (about ten times slower) it makes 6
// transfers; run it without -race for the full 50:
//
//	go test -run TestNATBulkUnderContention -v ./stack/
func TestNATBulkUnderContention(t *testing.T) {
	transfers := 50
	if raceEnabled {
		transfers = 6
		t.Logf("race detector on: %d transfers instead of 50 (run without -race for 50)", transfers)
	}
	payload, sum := bulkPayload(8 << 20)
	srv := newBulkServer(t, payload)
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)

	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sink atomic.Uint64
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(i)
			for {
				select {
				case <-stop:
					sink.Add(x)
					return
				default:
				}
				for j := 0; j < 1<<20; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var total time.Duration
	var worst transfer
	for i := 0; i < transfers; i++ {
		tr := bulkThroughNAT(t, g, gs, srv, payload, sum)
		total += tr.took
		if tr.maxGap > worst.maxGap {
			worst.maxGap = tr.maxGap
		}
		if tr.took > worst.took {
			worst.took = tr.took
		}
		if tr.maxGap >= stallGap {
			t.Fatalf("transfer %d stalled for %v", i, tr.maxGap)
		}
	}
	t.Log(fmt.Sprintf("%d transfers of 8 MiB each way: mean %v, slowest %v, longest gap %v",
		transfers, total/time.Duration(transfers), worst.took, worst.maxGap))
	checkNoOutDrops(t, g, gs)
}

// TestForwardReaderPausesNoStall is TestTCPForwardHalfCloseAndBulk with a
// switch that stops reading both ports for 200 ms at a time: the guest's
// echo writes 4 KiB at a time, so its queue fills with many small packets
// (the old 1,024-packet queue then dropped data, ACKs and window
// updates); now the stacks wait, nothing is dropped, nothing stalls.
func TestForwardReaderPausesNoStall(t *testing.T) {
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	bigGuestWindow(t, gs) // the test guest's gVisor, not the gateway, stalls otherwise (see bigGuestWindow)
	guestEcho(t, gs, 8080, "")
	f := addTCPForward(t, newForwarder(t, g), g, "127.0.0.1:0", 8080)
	stop := make(chan struct{})
	paused := make(chan struct{})
	go func() {
		defer close(paused)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			gs.fromGateway.pause.Store(true)
			gs.fromGuest.pause.Store(true)
			time.Sleep(200 * time.Millisecond)
			gs.fromGateway.pause.Store(false)
			gs.fromGuest.pause.Store(false)
		}
	}()
	defer func() {
		close(stop)
		<-paused
	}()
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		data, _ := bulkPayload(4 << 20)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		var got []byte
		buf := make([]byte, 256<<10)
		last, maxGap := time.Now(), time.Duration(0)
		for {
			n, err := c.Read(buf)
			now := time.Now()
			maxGap = max(maxGap, now.Sub(last))
			last = now
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("transfer %d: echoed %d of %d bytes (longest gap %v): %v; gateway %+v", i, len(got), len(data), maxGap, err, g.Stats())
			}
		}
		if werr := <-errc; werr != nil {
			t.Fatalf("write: %v", werr)
		}
		c.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("transfer %d: echoed %d of %d bytes, differ", i, len(got), len(data))
		}
		t.Logf("transfer %d: longest gap %v", i, maxGap)
		if maxGap >= stallGap {
			t.Fatalf("transfer %d stalled for %v", i, maxGap)
		}
	}
	checkNoOutDrops(t, g, gs)
}

// TestCloseWithFullOutQueue: the switch stops reading the gateway while
// hosts stream into the guest: the outbound queue fills, the stack's
// goroutines wait for room; Close still returns.
func TestCloseWithFullOutQueue(t *testing.T) {
	// A host server that streams until the connection closes; stopped
	// after the gateway (cleanups run last registered first).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		chunk := make([]byte, 64<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	g := newTestGateway(t, Config{})
	// A smaller queue, so that what the connections have in flight
	// surely exceeds it once the switch stops reading.
	g.ep.out.mu.Lock()
	g.ep.out.maxBytes = 256 << 10
	g.ep.out.mu.Unlock()
	gs := newGuest(t, g, guestMAC, guestIP)
	for i := 0; i < 8; i++ {
		nc, err := dialNAT(t, g, gs, uint16(ln.Addr().(*net.TCPAddr).Port))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		go io.Copy(io.Discard, nc)
	}
	waitStats(t, g, "traffic", func(s Stats) bool { return s.OutFrames > 20000 })
	gs.fromGateway.pause.Store(true)
	w0 := g.Stats().OutWaits
	waitStats(t, g, "the outbound queue full, the stack waiting", func(s Stats) bool { return s.OutWaits > w0 && s.OutQueued > 0 })
	time.Sleep(10 * time.Millisecond) // not an assertion: more goroutines may come to wait
	t.Logf("queued before Close: %d packets", g.ep.out.queued.Load())
	done := make(chan struct{})
	go func() {
		g.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs with the stack waiting for room in the outbound queue")
	}
	if d := g.ep.outDrops.Load(); d == 0 {
		t.Error("packets queued at Close not counted as dropped")
	}
}
