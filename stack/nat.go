package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// tcpDialTimeout bounds a NATed connection's dial on the host.
	tcpDialTimeout = 10 * time.Second
	// tcpMaxInFlight bounds SYNs being dialed at once (gVisor drops and
	// counts SYNs beyond it: TCP.ForwardMaxInFlightDrop).
	tcpMaxInFlight = 256
	// udpBufSize is a UDP flow's datagram buffer.
	udpBufSize = 65535
)

// copyBufSize is the buffer of each direction of a spliced TCP connection.
const copyBufSize = 128 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// natState is the NAT of guest flows to host sockets.
type natState struct {
	g *Gateway

	tcpConns   atomic.Int64
	tcpRefused atomic.Uint64
	udpFlows   atomic.Int64
	udpRefused atomic.Uint64

	mu     sync.Mutex
	closed bool
	open   map[io.Closer]struct{}
}

func (n *natState) init(g *Gateway) {
	n.g = g
	n.open = make(map[io.Closer]struct{})
	tf := tcp.NewForwarder(g.s, 0, tcpMaxInFlight, n.handleTCP)
	g.s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(g.s, n.handleUDP)
	g.s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
}

// track registers closers to close on shutdown; false when shut down.
func (n *natState) track(cs ...io.Closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	for _, c := range cs {
		n.open[c] = struct{}{}
	}
	return true
}

func (n *natState) untrack(cs ...io.Closer) {
	n.mu.Lock()
	for _, c := range cs {
		delete(n.open, c)
	}
	n.mu.Unlock()
}

func (n *natState) closeAll() {
	n.mu.Lock()
	n.closed = true
	open := n.open
	n.open = map[io.Closer]struct{}{}
	n.mu.Unlock()
	for c := range open {
		c.Close()
	}
}

// natTarget maps a guest's destination to the host address to dial: the
// gateway's address is the host's loopback; addresses inside the fence's
// subnet, broadcast, multicast and unspecified are refused.
func (g *Gateway) natTarget(a tcpip.Address, port uint16) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(a.AsSlice())
	if !ok || port == 0 {
		return netip.AddrPort{}, false
	}
	ip = ip.Unmap()
	switch {
	case ip == g.gwIP:
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsValid() && ip == g.gw6:
		ip = netip.IPv6Loopback()
	case g.cfg.Subnet.Contains(ip), ip.IsMulticast(), ip.IsUnspecified(),
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		ip.IsLinkLocalUnicast(), ip.IsLoopback(),
		!g.cfg.NoIPv6 && g.cfg.IPv6Prefix.Contains(ip):
		return netip.AddrPort{}, false
	}
	if !g.policyAllows(ip) {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, port), true
}

// policyAllows applies Config.Allow and Config.Deny to a host destination.
func (g *Gateway) policyAllows(ip netip.Addr) bool {
	for _, p := range g.cfg.Deny {
		if p.Contains(ip) {
			return false
		}
	}
	if len(g.cfg.Allow) == 0 {
		return true
	}
	for _, p := range g.cfg.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// handleTCP runs on a goroutine gVisor starts per SYN.
func (n *natState) handleTCP(r *tcp.ForwarderRequest) {
	g := n.g
	if !g.enter() {
		r.Complete(true)
		return
	}
	defer g.wg.Done()
	id := r.ID()
	dst, ok := g.natTarget(id.LocalAddress, id.LocalPort)
	if !ok {
		n.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	if n.tcpConns.Add(1) > int64(g.cfg.MaxTCPConns) {
		n.tcpConns.Add(-1)
		n.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	defer n.tcpConns.Add(-1)

	ctx, cancel := context.WithTimeout(g.ctx, tcpDialTimeout)
	var d net.Dialer
	hc, err := d.DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		n.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		n.tcpRefused.Add(1)
		r.Complete(true)
		return
	}
	r.Complete(false)
	gc := gonet.NewTCPConn(&wq, ep)
	n.splice(gc, hc)
}

// splice copies both ways until both directions end, half-closing as each
// ends, then closes both connections.
func (n *natState) splice(a, b net.Conn) {
	if !n.track(a, b) {
		a.Close()
		b.Close()
		return
	}
	defer n.untrack(a, b)
	done := make(chan struct{}, 1)
	cp := func(dst, src net.Conn) {
		bp := copyBufs.Get().(*[copyBufSize]byte)
		// Hide ReadFrom/WriteTo so the larger buffer is used (fewer
		// syscalls and stack calls than io.Copy's 32 KiB).
		io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, bp[:])
		copyBufs.Put(bp)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go func() {
		cp(a, b)
		done <- struct{}{}
	}()
	cp(b, a)
	<-done
	a.Close()
	b.Close()
}

// handleUDP runs synchronously in the stack's receive path for the first
// datagram of a flow; it must not block.
func (n *natState) handleUDP(r *udp.ForwarderRequest) bool {
	g := n.g
	id := r.ID()
	dst, ok := g.natTarget(id.LocalAddress, id.LocalPort)
	if !ok {
		n.udpRefused.Add(1)
		return true // drop silently: broadcasts from guests are common
	}
	if n.udpFlows.Add(1) > int64(g.cfg.MaxUDPFlows) {
		n.udpFlows.Add(-1)
		n.udpRefused.Add(1)
		return true
	}
	hc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		n.udpFlows.Add(-1)
		n.udpRefused.Add(1)
		return true
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		n.udpFlows.Add(-1)
		n.udpRefused.Add(1)
		return true
	}
	gc := gonet.NewUDPConn(&wq, ep)
	if !g.enter() {
		gc.Close()
		hc.Close()
		n.udpFlows.Add(-1)
		return true
	}
	go func() {
		defer g.wg.Done()
		defer n.udpFlows.Add(-1)
		n.relayUDP(gc, hc, g.cfg.UDPIdleTimeout)
	}()
	return true
}

// relayUDP copies datagrams both ways between two connected sockets until
// neither direction has carried a datagram for idle.
func (n *natState) relayUDP(a, b net.Conn, idle time.Duration) {
	if !n.track(a, b) {
		a.Close()
		b.Close()
		return
	}
	defer n.untrack(a, b)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 1)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, udpBufSize)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			nr, err := src.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue
				}
				if errors.As(err, &ne) && ne.Timeout() {
					// Idle: end both directions.
					dst.Close()
					src.Close()
				}
				return
			}
			last.Store(time.Now().UnixNano())
			dst.Write(buf[:nr])
		}
	}
	go func() {
		cp(a, b)
		done <- struct{}{}
	}()
	cp(b, a)
	a.Close()
	b.Close()
	<-done
}
