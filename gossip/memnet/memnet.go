// Package memnet is an in-memory network for memberlist: a
// memberlist.NodeAwareTransport per node, all in one process, for tests
// and the scale simulation of package gossip.
//
// It replaces memberlist's MockNetwork, which serves small tests but not
// these: its maps are unguarded (no node may be added while others run),
// a packet to a node that stopped blocks the sender for ever (so a
// failed node stalls its prober), and it has no way to fail, partition or
// observe a node.
//
// Packets behave like UDP: delivered into a bounded queue per node,
// dropped (and counted) when the queue is full, the destination is down
// or the pair is partitioned. Streams are net.Pipe pairs; a dial to a
// node that is down or partitioned fails at once. A Hook sees every
// packet and stream byte delivered, by destination, so a test can check
// what a node received.
package memnet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// packetQueue bounds the packets waiting at one node.
const packetQueue = 512

// ErrUnreachable is returned by a dial to a node that is down or
// partitioned.
var ErrUnreachable = errors.New("memnet: destination unreachable")

// Network is a set of transports that reach each other.
type Network struct {
	// Hook, if set before the first transport is created, is called with
	// every packet delivered and every chunk of stream data written, with
	// the source and destination addresses. It must be safe for
	// concurrent use and must not keep b.
	Hook func(from, to string, b []byte)

	mu    sync.RWMutex
	nodes map[string]*Transport // +checklocks:mu
	cut   map[[2]string]bool    // +checklocks:mu
	next  int                   // +checklocks:mu

	// Dropped counts packets dropped on a full queue.
	Dropped atomic.Uint64
}

// Transport is one node's end of a Network; it implements
// memberlist.NodeAwareTransport.
type Transport struct {
	net      *Network
	addr     string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	down     atomic.Bool
	stop     chan struct{}
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// NewAddr returns a fresh address, 127.x.y.z:7946.
func (n *Network) NewAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	return fmt.Sprintf("127.%d.%d.%d:7946", n.next>>16&0xff, n.next>>8&0xff, n.next&0xff)
}

// NewTransport returns a transport at addr (from NewAddr), replacing a
// previous one there that was shut down (a restart).
func (n *Network) NewTransport(addr string) (*Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.nodes[addr]; old != nil && !old.down.Load() {
		return nil, fmt.Errorf("memnet: %s is in use", addr)
	}
	if n.nodes == nil {
		n.nodes = map[string]*Transport{}
		n.cut = map[[2]string]bool{}
	}
	t := &Transport{
		net:      n,
		addr:     addr,
		packetCh: make(chan *memberlist.Packet, packetQueue),
		streamCh: make(chan net.Conn),
		stop:     make(chan struct{}),
	}
	n.nodes[addr] = t
	return t, nil
}

// Partition cuts (or, with cut false, restores) the link between a and b
// in both directions.
func (n *Network) Partition(a, b string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut == nil {
		n.cut = map[[2]string]bool{}
	}
	if cut {
		n.cut[[2]string{a, b}], n.cut[[2]string{b, a}] = true, true
	} else {
		delete(n.cut, [2]string{a, b})
		delete(n.cut, [2]string{b, a})
	}
}

// Fail takes the node at addr down at once: it sends and receives
// nothing more, as if its host lost power.
func (n *Network) Fail(addr string) {
	n.mu.RLock()
	t := n.nodes[addr]
	n.mu.RUnlock()
	if t != nil {
		t.down.Store(true)
	}
}

// peer returns the reachable transport at addr from src.
func (n *Network) peer(src, addr string) *Transport {
	n.mu.RLock()
	defer n.mu.RUnlock()
	t := n.nodes[addr]
	if t == nil || t.down.Load() || n.cut[[2]string{src, addr}] {
		return nil
	}
	return t
}

// Addr returns the transport's address.
func (t *Transport) Addr() string { return t.addr }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(t.addr)
	if err != nil {
		return nil, 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, 0, err
	}
	return net.ParseIP(host), p, nil
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport. A packet that
// cannot be delivered is lost silently, as over UDP.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.down.Load() {
		return now, nil
	}
	dst := t.net.peer(t.addr, a.Addr)
	if dst == nil {
		return now, nil
	}
	if h := t.net.Hook; h != nil {
		h(t.addr, a.Addr, b)
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: addr(t.addr), Timestamp: now}
	select {
	case dst.packetCh <- p:
	default:
		t.net.Dropped.Add(1)
	}
	return now, nil
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(a string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: a}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst := t.net.peer(t.addr, a.Addr)
	if t.down.Load() || dst == nil {
		return nil, fmt.Errorf("memnet: dial %s: %w", a.Addr, ErrUnreachable)
	}
	c1, c2 := net.Pipe()
	var local, remote net.Conn = c2, c1
	if h := t.net.Hook; h != nil {
		local = &hookConn{Conn: c2, hook: h, from: t.addr, to: a.Addr}
		remote = &hookConn{Conn: c1, hook: h, from: a.Addr, to: t.addr}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dst.streamCh <- remote:
		return local, nil
	case <-dst.stop:
	case <-timer.C:
	}
	c1.Close()
	c2.Close()
	return nil, fmt.Errorf("memnet: dial %s: %w", a.Addr, ErrUnreachable)
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport: the node is down from now.
func (t *Transport) Shutdown() error {
	t.down.Store(true)
	t.once.Do(func() { close(t.stop) })
	return nil
}

// hookConn reports the data written on one end of a stream as received
// by the other.
type hookConn struct {
	net.Conn
	hook     func(from, to string, b []byte)
	from, to string
}

func (c *hookConn) Write(b []byte) (int, error) {
	c.hook(c.from, c.to, b)
	return c.Conn.Write(b)
}

type addr string

func (a addr) Network() string { return "memnet" }
func (a addr) String() string  { return string(a) }
