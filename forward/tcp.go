package forward

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inetaf/tcpproxy"
)

// How a TCP listener works (one per host address):
//
//   - Its accept loop accepts host connections and counts them. While the
//     listener has no named route, each goes to the plain proxy, whose
//     only route is the listener's default route: nothing is read before
//     the connection is relayed (server-first protocols such as SSH work).
//   - Once the listener has a named route, each connection gets a read
//     deadline (Config.SniffTimeout), is counted against
//     Config.MaxSniffing, and goes to the named proxy, whose routes are,
//     in order: tcpproxy's SNI route (a TLS ClientHello's server name),
//     its HTTP Host route, and the default route. tcpproxy peeks at the
//     first bytes without consuming them and replays them to the target.
//   - Both proxies are tcpproxy.Proxy values fed by the accept loop
//     through a channel listener, so the route set can change at run time
//     (tcpproxy fixes a Proxy's routes at Start): the routes they consult
//     are the listener's current table (an atomic snapshot).
//   - A matched connection is relayed by tcpproxy.DialProxy, dialing the
//     target through the fence's Dialer; both directions half-close as
//     they end.

// tcpListener is one host TCP socket and its routes.
type tcpListener struct {
	f      *Forwarder
	addr   netip.AddrPort
	ln     net.Listener
	routes atomic.Pointer[routeTable] // replaced under f.mu
	// release ends the socket's Config.Reserve registration.
	release func()

	plainFeed, namedFeed *feed
	plain, named         *tcpproxy.Proxy

	sniffing atomic.Int64 // connections being sniffed
	pending  connSet      // accepted, not yet handed to a route
	wg       sync.WaitGroup
	stopped  chan struct{}
}

// tcpRoute is one TCP forward.
type tcpRoute struct {
	f      Forward // as bound
	fence  *fence
	l      *tcpListener
	ctx    context.Context // canceled when the forward is removed
	cancel context.CancelFunc
	conns  connSet        // host and fence sides of its connections
	wg     sync.WaitGroup // running connection handlers
}

// routeTable is the immutable set of a TCP listener's routes.
type routeTable struct {
	def  *tcpRoute
	sni  map[string]*tcpRoute
	host map[string]*tcpRoute
}

func (t *routeTable) named() bool { return len(t.sni)+len(t.host) > 0 }

func (t *routeTable) len() int {
	n := len(t.sni) + len(t.host)
	if t.def != nil {
		n++
	}
	return n
}

func (t *routeTable) all() []*tcpRoute {
	var out []*tcpRoute
	if t.def != nil {
		out = append(out, t.def)
	}
	for _, r := range t.sni {
		out = append(out, r)
	}
	for _, r := range t.host {
		out = append(out, r)
	}
	return out
}

func (t *routeTable) lookup(r Route) *tcpRoute {
	switch {
	case r.SNI != "":
		return t.sni[r.SNI]
	case r.Host != "":
		return t.host[r.Host]
	}
	return t.def
}

// with returns a copy of t with r set for r.f's route (nil: removed).
func (t *routeTable) with(k Route, r *tcpRoute) *routeTable {
	n := &routeTable{def: t.def, sni: make(map[string]*tcpRoute, len(t.sni)), host: make(map[string]*tcpRoute, len(t.host))}
	for k, v := range t.sni {
		n.sni[k] = v
	}
	for k, v := range t.host {
		n.host[k] = v
	}
	set := func(m map[string]*tcpRoute, name string) {
		if r == nil {
			delete(m, name)
		} else {
			m[name] = r
		}
	}
	switch {
	case k.SNI != "":
		set(n.sni, k.SNI)
	case k.Host != "":
		set(n.host, k.Host)
	default:
		n.def = r
	}
	return n
}

// addTCPLocked adds fw to the listener of its address, opening it when
// there is none.
func (f *Forwarder) addTCPLocked(fe *fence, fw Forward) (Forward, error) {
	l := f.tcp[fw.Listen]
	opened := false
	if fw.Listen.Port() == 0 || l == nil {
		var err error
		if l, err = f.listenTCP(fw.Listen); err != nil {
			return fw, fmt.Errorf("forward %v: %w", fw, err)
		}
		fw.Listen, opened = l.addr, true
	} else if have := l.table().lookup(fw.Route()); have != nil {
		return fw, conflict(fw.Route(), have.fence, fe.id)
	}
	r := &tcpRoute{f: fw, fence: fe, l: l}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	l.routes.Store(l.table().with(fw.Route(), r))
	if opened {
		f.tcp[l.addr] = l
		l.start() // once the route is in the table
	}
	return fw, nil
}

// removeTCPLocked takes r off its listener (closing the listener when it
// was the last route) and returns what stops it, to call without f.mu.
func (f *Forwarder) removeTCPLocked(l *tcpListener, r *tcpRoute) func() {
	t := l.table().with(r.f.Route(), nil)
	l.routes.Store(t)
	f.nroutes--
	last := t.len() == 0
	if last {
		delete(f.tcp, l.addr)
	}
	return func() {
		r.cancel()
		if last {
			l.close()
		}
		r.conns.closeAll()
		r.wg.Wait()
	}
}

func (l *tcpListener) table() *routeTable { return l.routes.Load() }

// listenTCP binds addr with no routes; start starts accepting.
func (f *Forwarder) listenTCP(addr netip.AddrPort) (_ *tcpListener, err error) {
	release := f.reserve(TCP, addr)
	defer func() {
		if err != nil {
			release()
		}
	}()
	ln, err := net.Listen(network(TCP, addr), addr.String())
	if err != nil {
		return nil, err
	}
	bound := ln.Addr().(*net.TCPAddr).AddrPort()
	l := &tcpListener{
		f:       f,
		addr:    netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()),
		ln:      ln,
		stopped: make(chan struct{}),
	}
	if addr.Port() == 0 {
		release = f.reserve(TCP, l.addr)
	}
	l.release = release
	l.routes.Store(&routeTable{})
	l.plainFeed = newFeed(ln.Addr())
	l.namedFeed = newFeed(ln.Addr())
	key := l.addr.String() // tcpproxy's name for the listener
	l.plain = &tcpproxy.Proxy{ListenFunc: func(string, string) (net.Listener, error) { return l.plainFeed, nil }}
	l.plain.AddRoute(key, l)
	l.named = &tcpproxy.Proxy{ListenFunc: func(string, string) (net.Listener, error) { return l.namedFeed, nil }}
	l.named.AddSNIRouteFunc(key, l.sniRoute)
	l.named.AddHTTPHostMatchRoute(key, l.hostRouted, hostTarget{l})
	l.named.AddRoute(key, l) // last: the default route, or close
	if err := l.plain.Start(); err != nil {
		ln.Close()
		return nil, err
	}
	if err := l.named.Start(); err != nil {
		l.plain.Close()
		ln.Close()
		return nil, err
	}
	return l, nil
}

// start starts the accept loop.
func (l *tcpListener) start() {
	l.wg.Add(1)
	go l.acceptLoop()
}

// close stops accepting, closes the connections not yet routed and waits
// for the accept loop and them.
func (l *tcpListener) close() {
	close(l.stopped)
	l.ln.Close()
	l.plain.Close() // closes the feeds: the proxies' loops end
	l.named.Close()
	l.plain.Wait()
	l.named.Wait()
	l.pending.closeAll()
	l.wg.Wait()
	l.release()
}

// Backoff after a failed Accept (e.g. EMFILE), as net/http's server does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func (l *tcpListener) acceptLoop() {
	defer l.wg.Done()
	f := l.f
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if isClosedErr(err) {
				return
			}
			f.acceptErrors.Add(1)
			if backoff == 0 {
				backoff = acceptBackoffMin
				f.log.Warn("port forward accept failing, backing off", "listen", l.addr.String(), "err", err)
			} else {
				backoff = min(2*backoff, acceptBackoffMax)
			}
			select {
			case <-l.stopped:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		f.accepted.Add(1)
		hc := &hostConn{relayConn: relayConn{c}, l: l}
		to := l.plainFeed
		if l.table().named() {
			if l.sniffing.Add(1) > int64(f.cfg.MaxSniffing) {
				l.sniffing.Add(-1)
				f.sniffRefused.Add(1)
				c.Close()
				continue
			}
			hc.sniffing = true
			c.SetReadDeadline(time.Now().Add(f.cfg.SniffTimeout))
			to = l.namedFeed
		}
		if !l.pending.enter(&l.wg, hc) {
			hc.routedNoDone()
			c.Close()
			return
		}
		select {
		case to.ch <- hc:
		case <-to.done:
			hc.routed()
			c.Close()
		}
	}
}

// sniRoute is the named proxy's SNI route: the route named by a TLS
// ClientHello's server name.
func (l *tcpListener) sniRoute(_ context.Context, name string) (tcpproxy.Target, bool) {
	r := l.table().sni[normName(name)]
	if r == nil {
		return nil, false
	}
	return r, true
}

// hostRouted is the matcher of the named proxy's HTTP Host route.
func (l *tcpListener) hostRouted(_ context.Context, host string) bool {
	return l.table().host[hostOnly(host)] != nil
}

// hostOnly returns an HTTP Host header's host, normalized: without its
// port and IPv6 brackets.
func hostOnly(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return normName(h)
}

// hostTarget is the target of the HTTP Host route: the route the
// request's Host names (tcpproxy passes it in Conn.HostName).
type hostTarget struct{ l *tcpListener }

// HandleConn implements tcpproxy.Target.
func (t hostTarget) HandleConn(c net.Conn) {
	var r *tcpRoute
	if pc, ok := c.(*tcpproxy.Conn); ok {
		r = t.l.table().host[hostOnly(pc.HostName)]
	}
	if r == nil { // removed since it matched
		r = t.l.table().def
	}
	t.l.dispatch(c, r)
}

// HandleConn implements tcpproxy.Target: the default route.
func (l *tcpListener) HandleConn(c net.Conn) { l.dispatch(c, l.table().def) }

// HandleConn implements tcpproxy.Target: the SNI route's target.
func (r *tcpRoute) HandleConn(c net.Conn) { r.l.dispatch(c, r) }

// dispatch hands a host connection that tcpproxy matched to route r (nil:
// none matched).
func (l *tcpListener) dispatch(c net.Conn, r *tcpRoute) {
	hc, _ := tcpproxy.UnderlyingConn(c).(*hostConn)
	if hc == nil { // not ours: cannot happen
		c.Close()
		return
	}
	hc.routed()
	if r == nil || !r.conns.enter(&r.wg, hc) {
		l.f.unrouted.Add(1)
		name := ""
		if pc, ok := c.(*tcpproxy.Conn); ok {
			name = pc.HostName
		}
		l.f.logLimited("port forward connection matched no route, closed", "listen", l.addr.String(), "name", name)
		c.Close()
		return
	}
	defer r.wg.Done()
	r.relay(c, hc)
}

// relay relays host connection c (hc unwrapped) to the route's target
// through tcpproxy.DialProxy, until both directions have ended.
func (r *tcpRoute) relay(c net.Conn, hc *hostConn) {
	f := r.l.f
	f.tcpConns.Add(1)
	defer f.tcpConns.Add(-1)
	var dst net.Conn
	dp := &tcpproxy.DialProxy{
		Addr:        r.f.Target.String(), // for tcpproxy's messages; DialContext ignores it
		DialTimeout: f.cfg.DialTimeout,
		// The host side keeps the kernel's keep-alives from net.Listen;
		// the fence side is the gateway's (tcpproxy only sets them on a
		// *net.TCPConn).
		KeepAlivePeriod: -1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(r.ctx, cancel)() // removing the forward cancels the dial
			gc, err := r.fence.Dialer.DialTCP(ctx, r.f.Target)
			if err != nil {
				return nil, err
			}
			fc := &relayConn{gc}
			if !r.conns.add(fc) {
				gc.Close()
				return nil, net.ErrClosed
			}
			dst = fc
			return fc, nil
		},
		OnDialError: func(src net.Conn, err error) {
			f.dialErrors.Add(1)
			f.logLimited("port forward dial failed, connection closed", "fence", r.fence.Name, "forward", r.f.String(), "err", err)
			src.Close()
		},
	}
	dp.HandleConn(c) // closes both sides before it returns
	r.conns.remove(hc)
	if dst != nil {
		r.conns.remove(dst)
	}
}

// relayConn is one side of a relayed connection: half-close passes
// through (tcpproxy half-closes through CloseWrite and CloseRead), and
// ReadFrom copies through a pooled copyBufSize buffer (io.Copy's is 32
// KiB: more syscalls and more trips through the gateway's stack).
type relayConn struct {
	net.Conn
}

// CloseWrite half-closes, or closes when the connection cannot.
func (c *relayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// CloseRead shuts the read side when the connection can.
func (c *relayConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}

// copyBufSize is the buffer of each direction of a relayed connection.
const copyBufSize = 128 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// ReadFrom implements io.ReaderFrom.
func (c *relayConn) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(bp)
	// Hide ReadFrom and WriteTo so that the buffer is used.
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, struct{ io.Reader }{r}, bp[:])
}

// hostConn is an accepted host connection: pending on its listener until
// a route takes it.
type hostConn struct {
	relayConn
	l        *tcpListener
	sniffing bool // counted in l.sniffing, with a read deadline
	once     sync.Once
}

// routed ends the connection's pending state (once): it leaves the
// listener's pending set and sniffing count, and loses its deadline.
func (c *hostConn) routed() {
	c.once.Do(func() {
		c.routedNoDone()
		c.l.pending.remove(c)
		c.l.wg.Done()
	})
}

func (c *hostConn) routedNoDone() {
	if c.sniffing {
		c.l.sniffing.Add(-1)
		c.Conn.SetReadDeadline(time.Time{})
	}
}

// feed is a net.Listener whose Accept returns what the accept loop sends
// it: the listener of a tcpproxy.Proxy.
type feed struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newFeed(addr net.Addr) *feed {
	return &feed{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept implements net.Listener.
func (q *feed) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (q *feed) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr implements net.Listener.
func (q *feed) Addr() net.Addr { return q.addr }
