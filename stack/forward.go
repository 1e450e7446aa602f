package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/inetaf/tcpproxy"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// forwardKey identifies a forward by what it binds on the host.
type forwardKey struct {
	proto  string
	listen netip.AddrPort
}

type forwardEntry struct {
	f      Forward
	closer func() // stops the listener and its connections, waits
}

type forwardTable struct {
	mu     sync.Mutex
	closed bool
	m      map[forwardKey]*forwardEntry
}

func (t *forwardTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	m := t.m
	t.m = nil
	t.mu.Unlock()
	for _, e := range m {
		e.closer()
	}
}

// Forwards returns the active port forwards, sorted.
func (g *Gateway) Forwards() []Forward {
	g.fwd.mu.Lock()
	defer g.fwd.mu.Unlock()
	out := make([]Forward, 0, len(g.fwd.m))
	for _, e := range g.fwd.m {
		out = append(out, e.f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// AddForward starts a port forward: it listens on f.Listen on the host and
// relays every connection (TCP) or datagram flow (UDP) to f.Target inside
// the fence, from the gateway's address. A forward whose Listen port is 0
// is given a free port; Forwards reports it.
func (g *Gateway) AddForward(f Forward) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Target.Addr().Unmap().Is6() && g.cfg.NoIPv6 {
		return fmt.Errorf("%w: forward target %v: IPv6 is off", ErrInvalidConfig, f.Target)
	}
	g.fwd.mu.Lock()
	defer g.fwd.mu.Unlock()
	if g.fwd.closed {
		return ErrClosed
	}
	if g.fwd.m == nil {
		g.fwd.m = make(map[forwardKey]*forwardEntry)
	}
	if f.Listen.Port() != 0 {
		if _, ok := g.fwd.m[forwardKey{f.Proto, f.Listen}]; ok {
			return fmt.Errorf("%w: %v", ErrForwardExists, f)
		}
	}
	var (
		e   *forwardEntry
		err error
	)
	switch f.Proto {
	case "tcp":
		e, err = g.startTCPForward(f)
	default:
		e, err = g.startUDPForward(f)
	}
	if err != nil {
		return fmt.Errorf("forward %v: %w", f, err)
	}
	g.fwd.m[forwardKey{e.f.Proto, e.f.Listen}] = e
	g.log.Info("port forward added", "forward", e.f.String())
	return nil
}

// RemoveForward stops the forward listening on f.Proto and f.Listen and
// closes its connections (Target is ignored).
func (g *Gateway) RemoveForward(f Forward) error {
	g.fwd.mu.Lock()
	e, ok := g.fwd.m[forwardKey{f.Proto, f.Listen}]
	if ok {
		delete(g.fwd.m, forwardKey{f.Proto, f.Listen})
	}
	g.fwd.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %v", ErrForwardNotFound, f)
	}
	e.closer()
	g.log.Info("port forward removed", "forward", e.f.String())
	return nil
}

// targetAddr converts a forward's target for the stack, with its network
// protocol.
func (g *Gateway) targetAddr(t netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := t.Addr().Unmap()
	if a.Is4() {
		return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.As4()), Port: t.Port()}, ipv4.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(a.As16()), Port: t.Port()}, ipv6.ProtocolNumber
}

// startTCPForward serves a TCP forward with a tcpproxy.Proxy whose only
// route hands every connection to a tcpproxy.DialProxy dialing f.Target
// through the gateway's stack. The gateway opens the host listener itself
// (Proxy.ListenFunc hands it over), so a busy address fails here and port
// 0 is reported as bound. Around tcpproxy it keeps what the gateway needs:
// the MaxTCPConns limit and counters (shared with the NAT), closing every
// open connection on removal, and waiting for the connection goroutines.
func (g *Gateway) startTCPForward(f Forward) (*forwardEntry, error) {
	ln, err := net.Listen("tcp", f.Listen.String())
	if err != nil {
		return nil, err
	}
	f.Listen = ln.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithCancel(g.ctx)
	fw := &tcpForward{g: g, f: f, ctx: ctx}
	fw.conns.g = g
	fw.conns.open = make(map[io.Closer]struct{})
	fl := &forwardListener{Listener: ln, fw: fw}
	dp := &tcpproxy.DialProxy{
		Addr:        f.Target.String(), // for tcpproxy's messages; DialContext ignores it
		DialTimeout: tcpDialTimeout,
		// The host side keeps the listener's default keep-alives; the
		// guest side is a gVisor endpoint (tcpproxy only sets them on
		// *net.TCPConn, which the wrapped connections are not).
		KeepAlivePeriod: -1,
		DialContext:     fw.dial,
		OnDialError:     fw.dialError,
	}
	p := &tcpproxy.Proxy{ListenFunc: func(string, string) (net.Listener, error) { return fl, nil }}
	p.AddRoute(f.Listen.String(), forwardTarget{fw: fw, dp: dp})
	if err := p.Start(); err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	return &forwardEntry{f: f, closer: func() {
		cancel()
		p.Close() // closes fl: Accept fails, no new connections
		p.Wait()  // the accept loop has returned
		fw.conns.closeAll()
		fw.wg.Wait() // every accepted connection's handler has returned
	}}, nil
}

// tcpForward is the state of one TCP forward around its tcpproxy.Proxy.
type tcpForward struct {
	g     *Gateway
	f     Forward         // with the bound listen address
	ctx   context.Context // canceled when the forward is removed
	conns natState        // open connections (both sides), closed on removal
	wg    sync.WaitGroup  // accepted connections whose handler runs
}

// dial connects to the forward's target inside the fence through the
// gateway's stack (tcpproxy.DialProxy.DialContext); removing the forward
// cancels it.
func (fw *tcpForward) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(fw.ctx, cancel)
	defer stop()
	to, proto := fw.g.targetAddr(fw.f.Target)
	gc, err := gonet.DialContextTCP(ctx, fw.g.s, to, proto)
	if err != nil {
		return nil, err
	}
	c := &forwardConn{Conn: gc, n: &fw.conns}
	if !fw.conns.track(c) {
		gc.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

// dialError is tcpproxy.DialProxy.OnDialError: log and close the host side.
func (fw *tcpForward) dialError(src net.Conn, err error) {
	fw.g.log.Debug("port forward dial", "forward", fw.f.String(), "err", err)
	src.Close()
}

// forwardTarget is the Proxy's route target: the DialProxy, plus the
// accounting of the connection forwardListener accepted.
type forwardTarget struct {
	fw *tcpForward
	dp *tcpproxy.DialProxy
}

// HandleConn implements tcpproxy.Target. DialProxy.HandleConn returns once
// both directions have ended and both connections are closed.
func (t forwardTarget) HandleConn(c net.Conn) {
	defer t.fw.wg.Done()
	defer t.fw.g.nat.tcpConns.Add(-1)
	t.dp.HandleConn(c)
}

// forwardListener is the host listener handed to tcpproxy. Accept applies
// MaxTCPConns (refusals are counted and the connection closed) and tracks
// what it returns; it survives transient errors (e.g. out of file
// descriptors) instead of ending the forward.
type forwardListener struct {
	net.Listener
	fw *tcpForward
}

func (l *forwardListener) Accept() (net.Conn, error) {
	fw := l.fw
	g := fw.g
	failing := false
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || fw.ctx.Err() != nil {
				return nil, err
			}
			if !failing {
				g.log.Warn("port forward accept", "forward", fw.f.String(), "err", err)
				failing = true
			}
			t := time.NewTimer(acceptBackoff)
			select {
			case <-fw.ctx.Done():
				t.Stop()
				return nil, net.ErrClosed
			case <-t.C:
			}
			continue
		}
		failing = false
		if g.nat.tcpConns.Add(1) > int64(g.cfg.MaxTCPConns) {
			g.nat.tcpConns.Add(-1)
			g.nat.tcpRefused.Add(1)
			g.log.Debug("port forward refused: MaxTCPConns", "forward", fw.f.String(), "from", c.RemoteAddr().String())
			c.Close()
			continue
		}
		fc := &forwardConn{Conn: c, n: &fw.conns}
		if !fw.conns.track(fc) {
			g.nat.tcpConns.Add(-1)
			c.Close()
			return nil, net.ErrClosed
		}
		fw.wg.Add(1)
		return fc, nil
	}
}

// acceptBackoff is the pause after a failed Accept that is not a close.
const acceptBackoff = 100 * time.Millisecond

// forwardConn is one side of a forwarded connection: tracked so removing
// the forward closes it, with half-close passed through (tcpproxy
// half-closes through CloseWrite/CloseRead) and the NAT's copy buffer
// (ReadFrom; io.Copy would use 32 KiB).
type forwardConn struct {
	net.Conn
	n    *natState
	once sync.Once
}

func (c *forwardConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.n.untrack(c)
		err = c.Conn.Close()
	})
	return err
}

// CloseWrite half-closes, or closes when the connection cannot.
func (c *forwardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// CloseRead shuts the read side when the connection can.
func (c *forwardConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}

// ReadFrom copies r to c through a pooled copyBufSize buffer.
func (c *forwardConn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(bp)
	// Hide ReadFrom/WriteTo so the buffer is used.
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, struct{ io.Reader }{r}, bp[:])
}

func (g *Gateway) startUDPForward(f Forward) (*forwardEntry, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(f.Listen))
	if err != nil {
		return nil, err
	}
	f.Listen = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var n natState
	n.g = g
	n.open = make(map[io.Closer]struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	flows := make(map[netip.AddrPort]*gonet.UDPConn)
	target, proto := g.targetAddr(f.Target)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, udpBufSize)
		for {
			nr, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			mu.Lock()
			gc, ok := flows[from]
			mu.Unlock()
			if !ok {
				if g.nat.udpFlows.Add(1) > int64(g.cfg.MaxUDPFlows) {
					g.nat.udpFlows.Add(-1)
					g.nat.udpRefused.Add(1)
					continue
				}
				gc, err = gonet.DialUDP(g.s, nil, &target, proto)
				if err != nil {
					g.nat.udpFlows.Add(-1)
					g.nat.udpRefused.Add(1)
					continue
				}
				if !n.track(gc) {
					gc.Close()
					g.nat.udpFlows.Add(-1)
					return
				}
				mu.Lock()
				flows[from] = gc
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer g.nat.udpFlows.Add(-1)
					rb := make([]byte, udpBufSize)
					for {
						gc.SetReadDeadline(time.Now().Add(g.cfg.UDPIdleTimeout))
						m, err := gc.Read(rb)
						if err != nil {
							break
						}
						pc.WriteToUDPAddrPort(rb[:m], from)
					}
					mu.Lock()
					delete(flows, from)
					mu.Unlock()
					n.untrack(gc)
					gc.Close()
				}()
			}
			gc.Write(buf[:nr])
		}
	}()
	return &forwardEntry{f: f, closer: func() {
		pc.Close()
		n.closeAll()
		wg.Wait()
	}}, nil
}
