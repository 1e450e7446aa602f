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
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// tcpDialTimeout bounds a NATed connection's dial on the host.
	tcpDialTimeout = 10 * time.Second
	// tcpMaxInFlight bounds the fence's connections being set up (a SYN
	// taken, the host being dialed); SYNs beyond it are dropped and
	// counted (RefusedSYNBacklog), and the guest retransmits them.
	tcpMaxInFlight = 256
	// tcpMaxInFlightPerGuest is one guest's share of them (beyond it,
	// RefusedSYNBacklog too).
	tcpMaxInFlightPerGuest = tcpMaxInFlight / 4
	// udpBufSize is a UDP flow's datagram buffer.
	udpBufSize = 65535
)

// copyBufSize is the buffer of each direction of a spliced TCP connection.
const copyBufSize = 128 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// accepted is the Refusal of a flow that is not refused.
const accepted Refusal = 255

// guestUse is what one guest (a source MAC) holds of the fence's NAT.
type guestUse struct {
	syn, tcp, udp, echo int
}

// natState is the NAT of guest flows to host sockets.
//
// Guests: every NATed flow is charged to the source MAC of the frame that
// opened it (the link header of the SYN or of the flow's first datagram,
// which the stack keeps with the packet), so the per-guest limits hold
// whatever source IP a guest puts in its packets. For TCP, the MAC is
// taken from the SYN in the stack's receive path (handleTCPPacket) and
// kept with the connection's 4-tuple until the connection is set up.
type natState struct {
	g  *Gateway
	tf *tcp.Forwarder

	// tcpConns and udpFlows count the fence's open NATed connections and
	// flows, port forwards' included; tcpRefused and udpRefused count the
	// port forwards' refusals (forward.go), RefusedForwardLimit.
	tcpConns   atomic.Int64
	tcpRefused atomic.Uint64
	udpFlows   atomic.Int64
	udpRefused atomic.Uint64

	tcpRefusals, udpRefusals refusalCounters

	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	open map[io.Closer]struct{}
	// guests holds an entry per guest holding anything; deleted at zero,
	// so it is bounded by the flows.
	// +checklocks:mu
	guests map[[6]byte]*guestUse
	// pending maps the 4-tuple of each TCP connection being set up to
	// the MAC that sent its SYN; it holds every request gVisor's
	// forwarder has in flight (an entry is added before the SYN reaches
	// the forwarder and removed after the request completes), so
	// len(pending) bounds the forwarder's in-flight set.
	// +checklocks:mu
	pending map[stack.TransportEndpointID][6]byte
}

func (n *natState) init(g *Gateway) {
	n.g = g
	n.open = make(map[io.Closer]struct{})
	n.guests = make(map[[6]byte]*guestUse)
	n.pending = make(map[stack.TransportEndpointID][6]byte)
	// The forwarder's own in-flight bound is never reached: pending
	// (bounded by tcpMaxInFlight) holds a superset of its requests.
	n.tf = tcp.NewForwarder(g.s, 0, tcpMaxInFlight, n.handleTCP)
	g.s.SetTransportProtocolHandler(tcp.ProtocolNumber, n.handleTCPPacket)
	g.s.SetTransportProtocolHandler(udp.ProtocolNumber, n.handleUDPPacket)
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

// guest returns mac's entry, creating it.
//
// +checklocks:n.mu
func (n *natState) guest(mac [6]byte) *guestUse {
	u := n.guests[mac]
	if u == nil {
		u = new(guestUse)
		n.guests[mac] = u
	}
	return u
}

// forgetIdle deletes mac's entry when it holds nothing.
//
// +checklocks:n.mu
func (n *natState) forgetIdle(mac [6]byte, u *guestUse) {
	if *u == (guestUse{}) {
		delete(n.guests, mac)
	}
}

// numGuests returns how many guests hold NAT state.
func (n *natState) numGuests() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.guests)
}

// acquireTCP takes a connection slot of the fence and of guest mac.
func (n *natState) acquireTCP(mac [6]byte) Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	u := n.guest(mac)
	if u.tcp >= n.g.cfg.MaxTCPConnsPerGuest {
		n.forgetIdle(mac, u)
		return RefusedLimitGuest
	}
	if n.tcpConns.Add(1) > int64(n.g.cfg.MaxTCPConns) {
		n.tcpConns.Add(-1)
		n.forgetIdle(mac, u)
		return RefusedLimitFence
	}
	u.tcp++
	return accepted
}

func (n *natState) releaseTCP(mac [6]byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tcpConns.Add(-1)
	if u := n.guests[mac]; u != nil {
		u.tcp--
		n.forgetIdle(mac, u)
	}
}

// acquireUDP takes a flow slot of the fence and of guest mac.
func (n *natState) acquireUDP(mac [6]byte) Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	u := n.guest(mac)
	if u.udp >= n.g.cfg.MaxUDPFlowsPerGuest {
		n.forgetIdle(mac, u)
		return RefusedLimitGuest
	}
	if n.udpFlows.Add(1) > int64(n.g.cfg.MaxUDPFlows) {
		n.udpFlows.Add(-1)
		n.forgetIdle(mac, u)
		return RefusedLimitFence
	}
	u.udp++
	return accepted
}

func (n *natState) releaseUDP(mac [6]byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.udpFlows.Add(-1)
	if u := n.guests[mac]; u != nil {
		u.udp--
		n.forgetIdle(mac, u)
	}
}

// srcMAC returns the source MAC of an inbound packet's Ethernet header
// (kept by the stack in the link header); zero when it has none.
func srcMAC(pkt *stack.PacketBuffer) [6]byte {
	lh := pkt.LinkHeader().Slice()
	if len(lh) < header.EthernetMinimumSize {
		return [6]byte{}
	}
	return [6]byte(lh[6:12])
}

// natTarget maps a guest's destination to the host address to dial, or
// says why not: the gateway's address is the host's loopback (unless
// Config.NoHostLoopback); addresses inside the fence's subnet, broadcast,
// multicast, loopback, link-local and unspecified are refused, and so are
// destinations the policy refuses and, for TCP and UDP, this process's own
// sockets (Config.IsSelf). proto is "tcp", "udp" or "icmp" (port 0).
func (g *Gateway) natTarget(proto string, a tcpip.Address, port uint16) (netip.AddrPort, Refusal) {
	ip, ok := netip.AddrFromSlice(a.AsSlice())
	if !ok || port == 0 && proto != "icmp" {
		return netip.AddrPort{}, RefusedUnroutable
	}
	ip = ip.Unmap()
	switch {
	case ip == g.gwIP || g.gw6.IsValid() && ip == g.gw6:
		if g.cfg.NoHostLoopback {
			return netip.AddrPort{}, RefusedHostLoopbackOff
		}
		if ip.Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else {
			ip = netip.IPv6Loopback()
		}
	case g.cfg.Subnet.Contains(ip), ip.IsMulticast(), ip.IsUnspecified(),
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		ip.IsLinkLocalUnicast(), ip.IsLoopback(),
		!g.cfg.NoIPv6 && g.cfg.IPv6Prefix.Contains(ip):
		return netip.AddrPort{}, RefusedUnroutable
	}
	if !g.policyAllows(ip) {
		return netip.AddrPort{}, RefusedPolicy
	}
	dst := netip.AddrPortFrom(ip, port)
	if proto != "icmp" && g.cfg.IsSelf != nil && g.cfg.IsSelf(proto, dst) {
		return netip.AddrPort{}, RefusedSelf
	}
	return dst, accepted
}

// sourceOK reports whether a guest's source address belongs to the fence:
// its IPv4 subnet or IPv6 prefix.
func (g *Gateway) sourceOK(a tcpip.Address) bool {
	ip, ok := netip.AddrFromSlice(a.AsSlice())
	if !ok {
		return false
	}
	ip = ip.Unmap()
	return g.cfg.Subnet.Contains(ip) || !g.cfg.NoIPv6 && g.cfg.IPv6Prefix.Contains(ip)
}

// check decides, before any host socket, whether a new flow id of proto
// may be NATed: its source, then its destination.
func (g *Gateway) check(proto string, id stack.TransportEndpointID) (netip.AddrPort, Refusal) {
	if !g.sourceOK(id.RemoteAddress) {
		return netip.AddrPort{}, RefusedSource
	}
	return g.natTarget(proto, id.LocalAddress, id.LocalPort)
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

// handleTCPPacket is the stack's handler of TCP packets no endpoint took,
// on the receive path (Write's goroutine). A SYN that opens a connection
// is admitted against the fence's and the guest's bounds on connections
// being set up, and its MAC recorded for handleTCP; then the forwarder
// takes the packet (it answers only SYNs; the stack resets the rest).
func (n *natState) handleTCPPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) >= header.TCPMinimumSize && th.Flags()&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagRst) == header.TCPFlagSyn {
		if !pkt.RXChecksumValidated {
			// Reassembled from fragments (csum.go): check it here, as
			// the forwarder would, before it is admitted.
			net := pkt.Network()
			if !th.IsChecksumValid(net.SourceAddress(), net.DestinationAddress(), pkt.Data().Checksum(), uint16(pkt.Data().Size())) {
				n.g.ep.inBadCsum.Add(1)
				return true
			}
		}
		if r := n.admitSYN(id, srcMAC(pkt)); r != accepted {
			n.tcpRefusals.add(r)
			return true // dropped: the guest retransmits
		}
	}
	return n.tf.HandlePacket(id, pkt)
}

// admitSYN records a SYN of a connection to be set up.
func (n *natState) admitSYN(id stack.TransportEndpointID, mac [6]byte) Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.pending[id]; ok {
		return accepted // a retransmission: the forwarder ignores it
	}
	if len(n.pending) >= tcpMaxInFlight {
		return RefusedSYNBacklog
	}
	u := n.guest(mac)
	if u.syn >= tcpMaxInFlightPerGuest {
		n.forgetIdle(mac, u)
		return RefusedSYNBacklog
	}
	u.syn++
	n.pending[id] = mac
	return accepted
}

// pendingMAC returns the MAC recorded for id's SYN.
func (n *natState) pendingMAC(id stack.TransportEndpointID) ([6]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	mac, ok := n.pending[id]
	return mac, ok
}

// donePending forgets id's SYN, after its request completed.
func (n *natState) donePending(id stack.TransportEndpointID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	mac, ok := n.pending[id]
	if !ok {
		return
	}
	delete(n.pending, id)
	if u := n.guests[mac]; u != nil {
		u.syn--
		n.forgetIdle(mac, u)
	}
}

// handleTCP runs on a goroutine gVisor starts per SYN it takes.
func (n *natState) handleTCP(r *tcp.ForwarderRequest) {
	g := n.g
	id := r.ID()
	// complete ends the request; the SYN's record goes after it, so that
	// pending always holds every request of the forwarder.
	complete := func(reset bool) {
		r.Complete(reset)
		n.donePending(id)
	}
	if !g.enter() {
		complete(true)
		return
	}
	defer g.wg.Done()
	refuse := func(why Refusal) {
		n.tcpRefusals.add(why)
		complete(true)
	}
	mac, ok := n.pendingMAC(id)
	if !ok {
		// Not admitted by handleTCPPacket: cannot happen, as every SYN
		// reaches the forwarder through it.
		refuse(RefusedSYNBacklog)
		return
	}
	dst, why := g.check("tcp", id)
	if why != accepted {
		refuse(why)
		return
	}
	if why := n.acquireTCP(mac); why != accepted {
		refuse(why)
		return
	}
	defer n.releaseTCP(mac)

	ctx, cancel := context.WithTimeout(g.ctx, tcpDialTimeout)
	var d net.Dialer
	hc, err := d.DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		refuse(RefusedDialFailed)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		refuse(RefusedHandshake)
		return
	}
	complete(false)
	gc := gonet.NewTCPConn(&wq, ep)
	n.splice(gc, hc)
}

// splice copies both ways between a and b, and closes both when
//   - both directions have ended cleanly (EOF, passed on as a half-close),
//   - either side fails (a reset, a write error): the other is closed at
//     once, so a guest that resets, or goes away mid-connection, frees its
//     slot;
//   - nothing has moved either way for Config.TCPIdleTimeout, or for
//     min(TCPIdleTimeout, TCPHalfClosedTimeout) once one direction ended.
func (n *natState) splice(a, b net.Conn) {
	if !n.track(a, b) {
		a.Close()
		b.Close()
		return
	}
	defer n.untrack(a, b)
	idle := n.g.cfg.TCPIdleTimeout
	if idle <= 0 {
		idle = DefaultTCPIdleTimeout
	}
	halfIdle := min(idle, TCPHalfClosedTimeout)
	var (
		last      atomic.Int64 // unix nanoseconds of the last bytes moved
		halfDone  atomic.Bool  // one direction ended cleanly
		stopped   atomic.Bool  // splice returned: the timer stays stopped
		abortOnce sync.Once
	)
	abort := func() {
		abortOnce.Do(func() {
			resetOnClose(a)
			resetOnClose(b)
			a.Close()
			b.Close()
		})
	}
	last.Store(time.Now().UnixNano())
	var timer *time.Timer
	var tmu sync.Mutex // orders timer.Reset against its creation
	check := func() {
		if stopped.Load() {
			return
		}
		limit := idle
		if halfDone.Load() {
			limit = halfIdle
		}
		since := time.Since(time.Unix(0, last.Load()))
		if since >= limit {
			abort()
			return
		}
		tmu.Lock()
		timer.Reset(limit - since)
		tmu.Unlock()
	}
	tmu.Lock()
	timer = time.AfterFunc(idle, check)
	tmu.Unlock()
	defer func() {
		stopped.Store(true)
		timer.Stop()
	}()

	cp := func(dst, src net.Conn) {
		bp := copyBufs.Get().(*[copyBufSize]byte)
		defer copyBufs.Put(bp)
		for {
			nr, rerr := src.Read(bp[:])
			if nr > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(bp[:nr]); werr != nil {
					abort()
					return
				}
			}
			switch {
			case rerr == io.EOF:
				if !halfDone.Swap(true) {
					// The other direction may now idle out sooner.
					tmu.Lock()
					timer.Reset(0)
					tmu.Unlock()
				}
				if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
					abort()
				}
				return
			case rerr != nil:
				abort()
				return
			}
		}
	}
	done := make(chan struct{})
	go func() {
		cp(a, b)
		close(done)
	}()
	cp(b, a)
	<-done
	a.Close()
	b.Close()
}

// resetOnClose makes a host TCP connection's Close send a reset (a guest
// or host that failed mid-connection sees it fail, not end cleanly).
func resetOnClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// handleUDPPacket is the stack's handler of UDP datagrams no endpoint
// took: the first datagram of a flow, on the receive path. It must not
// block. A refused datagram is dropped and counted (broadcasts from
// guests are common).
func (n *natState) handleUDPPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	g := n.g
	if !pkt.RXChecksumValidated {
		// Reassembled from fragments (csum.go): the stack checks the
		// checksum only once an endpoint has the datagram, too late.
		net := pkt.Network()
		lenOK, csumOK := header.UDPValid(header.UDP(pkt.TransportHeader().Slice()), func() uint16 { return pkt.Data().Checksum() },
			uint16(pkt.Data().Size()), pkt.NetworkProtocolNumber, net.SourceAddress(), net.DestinationAddress(), false)
		if !lenOK {
			return false // the stack counts it as malformed
		}
		if !csumOK {
			g.ep.inBadCsum.Add(1)
			return true
		}
	}
	dst, why := g.check("udp", id)
	if why != accepted {
		n.udpRefusals.add(why)
		return true
	}
	mac := srcMAC(pkt)
	if why := n.acquireUDP(mac); why != accepted {
		n.udpRefusals.add(why)
		return true
	}
	hc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		n.releaseUDP(mac)
		n.udpRefusals.add(RefusedDialFailed)
		return true
	}
	// The endpoint takes its own reference on pkt (the flow's first
	// datagram), which the stack owns during this call.
	var wq waiter.Queue
	ep, terr := udp.NewForwarderRequest(g.s, id, pkt).CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		n.releaseUDP(mac)
		n.udpRefusals.add(RefusedDialFailed)
		return true
	}
	gc := gonet.NewUDPConn(&wq, ep)
	if !g.enter() {
		gc.Close()
		hc.Close()
		n.releaseUDP(mac)
		return true
	}
	go func() {
		defer g.wg.Done()
		defer n.releaseUDP(mac)
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
