package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [Config].
const (
	// DefaultSniffTimeout bounds the wait for a connection's first bytes
	// on a listener with named routes.
	DefaultSniffTimeout = 5 * time.Second
	// DefaultMaxSniffing bounds the connections of one listener whose
	// first bytes are awaited at once.
	DefaultMaxSniffing = 256
	// DefaultDialTimeout bounds a connection's dial into its fence.
	DefaultDialTimeout = 10 * time.Second
	// DefaultUDPIdleTimeout ends a UDP flow without traffic.
	DefaultUDPIdleTimeout = 60 * time.Second
)

// Dialer connects into one fence; a fence's gateway implements it
// (*stack.Gateway). The connections it returns count against the fence's
// limits until they are closed, and close when the gateway closes.
// Its methods are safe for concurrent use.
type Dialer interface {
	// DialTCP connects to addr inside the fence. The connection supports
	// CloseWrite (half-close).
	DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	// DialUDP opens a UDP flow to addr inside the fence: Write sends one
	// datagram, Read returns one.
	DialUDP(addr netip.AddrPort) (net.Conn, error)
}

// Fence is what the Forwarder needs of a fence: how to reach inside it.
type Fence struct {
	// Name names the fence in logs and errors.
	Name string
	// Dialer connects into the fence (required).
	Dialer Dialer
	// Prefixes are the fence's subnets; a forward's target must be inside
	// one of them. Empty: any target.
	Prefixes []netip.Prefix
	// UDPIdleTimeout ends a UDP flow without traffic either way; 0 means
	// DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
}

// Config configures a [Forwarder]. The zero value is valid.
type Config struct {
	// SniffTimeout bounds the wait for the first bytes of a connection
	// to a listener with named routes (its TLS ClientHello or HTTP
	// request head); then it goes to the default route, or is closed. 0
	// means DefaultSniffTimeout.
	SniffTimeout time.Duration
	// MaxSniffing bounds the connections of one listener whose first
	// bytes are awaited at once; more are closed and counted
	// (Stats.SniffRefused). 0 means DefaultMaxSniffing.
	MaxSniffing int
	// DialTimeout bounds a connection's dial into its fence; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Reserve, when set, is told of every host socket the Forwarder binds
	// (proto TCP or UDP): before the bind for a fixed port, right after it
	// for port 0 (then with the port the kernel chose). The returned
	// release is called once the socket is closed, or when the bind
	// fails. cmd uses it so that no gateway NATs a guest to a forward's
	// socket (DESIGN.md section 6).
	Reserve func(proto string, addr netip.AddrPort) (release func())
	// Logger receives the Forwarder's logs; nil discards them.
	Logger *slog.Logger
}

// reserve calls Config.Reserve for a socket about to be bound (fixed
// port) or just bound (port 0); it never returns nil.
func (f *Forwarder) reserve(proto string, addr netip.AddrPort) func() {
	if f.cfg.Reserve == nil || !addr.IsValid() || addr.Port() == 0 {
		return func() {}
	}
	return f.cfg.Reserve(proto, addr)
}

// Stats are a Forwarder's counters.
type Stats struct {
	Listeners int    // host sockets bound now
	Routes    int    // forwards now
	TCPConns  int64  // forwarded connections open now (host side)
	Accepted  uint64 // connections accepted
	// Unrouted counts connections that named no route of their listener
	// (and found no default route), or whose route went away before
	// they were handed to it: closed.
	Unrouted uint64
	// SniffRefused counts connections closed because MaxSniffing
	// connections of their listener were being sniffed.
	SniffRefused uint64
	// DialErrors counts connections and UDP flows whose fence refused or
	// failed the dial (the fence's limit, no answer, …): closed or
	// dropped. The fence's gateway counts its refusals too.
	DialErrors uint64
	// AcceptErrors counts failed accepts (e.g. out of file descriptors;
	// the listener backs off and goes on).
	AcceptErrors uint64
	UDPFlows     int64 // UDP flows open now
}

// Listener is a host socket that forwards have bound.
type Listener struct {
	Proto string         // TCP or UDP
	Addr  netip.AddrPort // as bound (port 0 resolved)
}

// Forwarder owns the host sockets of port forwards and routes what they
// receive into fences. Listen addresses belong to the process, not to one
// fence: forwards of several fences share a TCP listener when they name
// distinct TLS server names or HTTP hosts.
//
// Its methods are safe for concurrent use.
type Forwarder struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool                            // guarded by mu
	fences  map[uint32]*fence               // guarded by mu
	tcp     map[netip.AddrPort]*tcpListener // guarded by mu
	udp     map[netip.AddrPort]*udpListener // guarded by mu
	nroutes int                             // guarded by mu

	// bound is a snapshot of the bound listeners for Bound (lock-free).
	bound atomic.Pointer[boundSet]

	accepted, unrouted, sniffRefused, dialErrors, acceptErrors atomic.Uint64
	tcpConns, udpFlows                                         atomic.Int64

	// logLimited's state: the last time it logged, unix nanoseconds, and
	// the messages it dropped since.
	lastLog    atomic.Int64
	logDropped atomic.Uint64
}

// logInterval is the least time between two logs of events that hosts'
// clients can cause (failed dials, unrouted connections).
const logInterval = 10 * time.Second

// logLimited logs msg at Info at most once per logInterval; the others
// are counted and reported with the next one (STYLE 5.3).
func (f *Forwarder) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := f.lastLog.Load()
	if now-last < int64(logInterval) || !f.lastLog.CompareAndSwap(last, now) {
		f.logDropped.Add(1)
		return
	}
	if n := f.logDropped.Swap(0); n > 0 {
		args = append(args, "similar_logs_dropped", n)
	}
	f.log.Info(msg, args...)
}

// fence is an attached fence.
type fence struct {
	id uint32
	Fence
}

// New returns a Forwarder with no fences and no forwards.
func New(cfg Config) *Forwarder {
	if cfg.SniffTimeout <= 0 {
		cfg.SniffTimeout = DefaultSniffTimeout
	}
	if cfg.MaxSniffing <= 0 {
		cfg.MaxSniffing = DefaultMaxSniffing
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:    cfg,
		log:    cfg.Logger,
		fences: map[uint32]*fence{},
		tcp:    map[netip.AddrPort]*tcpListener{},
		udp:    map[netip.AddrPort]*udpListener{},
	}
	f.bound.Store(&boundSet{})
	return f
}

// AttachFence makes fence id reachable: forwards into it can be added.
// A fence is attached once; DetachFence it first to attach it again.
func (f *Forwarder) AttachFence(id uint32, fc Fence) error {
	if fc.Dialer == nil {
		return fmt.Errorf("%w: fence %d: no dialer", ErrInvalid, id)
	}
	if fc.UDPIdleTimeout <= 0 {
		fc.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if fc.Name == "" {
		fc.Name = fmt.Sprint(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if f.fences[id] != nil {
		return fmt.Errorf("fence %d (%s) is already attached", id, fc.Name)
	}
	f.fences[id] = &fence{id: id, Fence: fc}
	return nil
}

// DetachFence removes every forward of fence id, closing their
// connections, and forgets the fence. It returns when they are closed.
func (f *Forwarder) DetachFence(id uint32) {
	f.mu.Lock()
	delete(f.fences, id)
	var stops []func()
	for _, l := range f.tcp {
		for _, r := range l.table().all() {
			if r.fence.id == id {
				stops = append(stops, f.removeTCPLocked(l, r))
			}
		}
	}
	for _, l := range f.udp {
		if l.r.fence.id == id {
			stops = append(stops, f.removeUDPLocked(l))
		}
	}
	f.publishLocked()
	f.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// Add starts forward fw and returns it as running: normalized, its listen
// port bound when it was 0. Its errors wrap [ErrInvalid], [ErrExists],
// [ErrConflict], [ErrNoFence] or [ErrClosed], or the listen socket's
// error (syscall.EADDRINUSE, …).
func (f *Forwarder) Add(fw Forward) (Forward, error) {
	fw = fw.Normalize()
	if err := fw.Validate(); err != nil {
		return fw, fmt.Errorf("forward %v: %w", fw, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fw, ErrClosed
	}
	fe := f.fences[fw.Fence]
	if fe == nil {
		return fw, fmt.Errorf("forward %v: fence %d: %w", fw, fw.Fence, ErrNoFence)
	}
	if err := checkTarget(fe, fw.Target); err != nil {
		return fw, fmt.Errorf("forward %v: %w", fw, err)
	}
	var err error
	switch fw.Proto {
	case TCP:
		fw, err = f.addTCPLocked(fe, fw)
	default:
		fw, err = f.addUDPLocked(fe, fw)
	}
	if err != nil {
		return fw, err
	}
	f.nroutes++
	f.publishLocked()
	f.log.Info("port forward added", "fence", fe.Name, "forward", fw.String())
	return fw, nil
}

// checkTarget refuses a target outside the fence's prefixes.
func checkTarget(fe *fence, t netip.AddrPort) error {
	if len(fe.Prefixes) == 0 {
		return nil
	}
	for _, p := range fe.Prefixes {
		if p.Contains(t.Addr()) {
			return nil
		}
	}
	return fmt.Errorf("%w: target %v is outside fence %s's subnets %v", ErrInvalid, t, fe.Name, fe.Prefixes)
}

// conflict returns the error for route r, held by have, when fence id
// asks for it.
func conflict(r Route, have *fence, id uint32) error {
	if have.id == id {
		return fmt.Errorf("forward %v: %w", r, ErrExists)
	}
	return fmt.Errorf("forward %v: %w: fence %s forwards it", r, ErrConflict, have.Name)
}

// Remove stops the forward of fence fw.Fence with fw's route (Proto,
// Listen, SNI, Host; Target is ignored) and closes its connections; it
// returns when they are closed. A listener left without forwards is
// closed. An unknown forward is an error wrapping [ErrNotFound].
func (f *Forwarder) Remove(fw Forward) error {
	fw = fw.Normalize()
	f.mu.Lock()
	var stop func()
	switch fw.Proto {
	case TCP:
		if l := f.tcp[fw.Listen]; l != nil {
			if r := l.table().lookup(fw.Route()); r != nil && r.fence.id == fw.Fence {
				stop = f.removeTCPLocked(l, r)
			}
		}
	case UDP:
		if l := f.udp[fw.Listen]; l != nil && !fw.Route().Named() && l.r.fence.id == fw.Fence {
			stop = f.removeUDPLocked(l)
		}
	}
	if stop == nil {
		f.mu.Unlock()
		return fmt.Errorf("forward %v: %w", fw.Route(), ErrNotFound)
	}
	f.publishLocked()
	f.mu.Unlock()
	stop()
	f.log.Info("port forward removed", "fence", fw.Fence, "forward", fw.Route().String())
	return nil
}

// Forwards returns the forwards of fence id, sorted by route.
func (f *Forwarder) Forwards(id uint32) []Forward {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Forward
	for _, l := range f.tcp {
		for _, r := range l.table().all() {
			if r.fence.id == id {
				out = append(out, r.f)
			}
		}
	}
	for _, l := range f.udp {
		if l.r.fence.id == id {
			out = append(out, l.r.f)
		}
	}
	slices.SortFunc(out, compareForwards)
	return out
}

func compareForwards(a, b Forward) int {
	return cmp.Or(
		cmp.Compare(a.Proto, b.Proto),
		a.Listen.Compare(b.Listen),
		cmp.Compare(a.SNI, b.SNI),
		cmp.Compare(a.Host, b.Host),
	)
}

// Listeners returns the host sockets bound by forwards now, sorted (for
// the gateways' refusal of flows to corral's own sockets).
func (f *Forwarder) Listeners() []Listener {
	b := f.bound.Load()
	return slices.Clone(b.list)
}

// Bound reports whether a forward has a socket of proto that receives
// what is sent to addr: bound to addr itself, or to the unspecified
// address of addr's family on addr's port (an IPv6 one, [::], receives
// IPv4 too). It takes no lock and does not allocate.
func (f *Forwarder) Bound(proto string, addr netip.AddrPort) bool {
	return f.bound.Load().has(proto, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()))
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	st := Stats{Listeners: len(f.tcp) + len(f.udp), Routes: f.nroutes}
	f.mu.Unlock()
	st.TCPConns = f.tcpConns.Load()
	st.UDPFlows = f.udpFlows.Load()
	st.Accepted = f.accepted.Load()
	st.Unrouted = f.unrouted.Load()
	st.SniffRefused = f.sniffRefused.Load()
	st.DialErrors = f.dialErrors.Load()
	st.AcceptErrors = f.acceptErrors.Load()
	return st
}

// Close removes every forward, closes every listener and connection, and
// waits for them. Add fails with [ErrClosed] afterwards. It is safe to
// call more than once.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	var stops []func()
	for _, l := range f.tcp {
		for _, r := range l.table().all() {
			stops = append(stops, f.removeTCPLocked(l, r))
		}
	}
	for _, l := range f.udp {
		stops = append(stops, f.removeUDPLocked(l))
	}
	clear(f.fences)
	f.publishLocked()
	f.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	return nil
}

// publishLocked stores the snapshot Bound and Listeners read.
func (f *Forwarder) publishLocked() {
	b := &boundSet{m: make(map[Listener]struct{}, len(f.tcp)+len(f.udp))}
	for a := range f.tcp {
		b.add(Listener{TCP, a})
	}
	for a := range f.udp {
		b.add(Listener{UDP, a})
	}
	slices.SortFunc(b.list, func(x, y Listener) int {
		return cmp.Or(cmp.Compare(x.Proto, y.Proto), x.Addr.Compare(y.Addr))
	})
	f.bound.Store(b)
}

// boundSet is an immutable set of bound listeners.
type boundSet struct {
	m    map[Listener]struct{}
	list []Listener
	// wild4, wild6: ports bound on 0.0.0.0 and on [::], by protocol.
	wild4, wild6 map[Listener]struct{}
}

func (b *boundSet) add(l Listener) {
	b.m[l] = struct{}{}
	b.list = append(b.list, l)
	a := l.Addr.Addr()
	if !a.IsUnspecified() {
		return
	}
	key := Listener{l.Proto, netip.AddrPortFrom(netip.Addr{}, l.Addr.Port())}
	if a.Is4() {
		if b.wild4 == nil {
			b.wild4 = map[Listener]struct{}{}
		}
		b.wild4[key] = struct{}{}
	} else {
		if b.wild6 == nil {
			b.wild6 = map[Listener]struct{}{}
		}
		b.wild6[key] = struct{}{}
	}
}

func (b *boundSet) has(proto string, a netip.AddrPort) bool {
	if _, ok := b.m[Listener{proto, a}]; ok {
		return true
	}
	key := Listener{proto, netip.AddrPortFrom(netip.Addr{}, a.Port())}
	if _, ok := b.wild6[key]; ok {
		return true
	}
	if a.Addr().Is4() {
		_, ok := b.wild4[key]
		return ok
	}
	return false
}

// connSet tracks open connections so that they can all be closed.
type connSet struct {
	mu     sync.Mutex
	closed bool                  // guarded by mu
	m      map[net.Conn]struct{} // guarded by mu
}

// add tracks cs; false (nothing tracked) once closeAll ran.
func (s *connSet) add(cs ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	for _, c := range cs {
		s.m[c] = struct{}{}
	}
	return true
}

// enter tracks c and adds one to wg, under the set's lock so that no
// Add follows a closeAll; false once closeAll ran.
func (s *connSet) enter(wg *sync.WaitGroup, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	s.m[c] = struct{}{}
	wg.Add(1)
	return true
}

func (s *connSet) remove(cs ...net.Conn) {
	s.mu.Lock()
	for _, c := range cs {
		delete(s.m, c)
	}
	s.mu.Unlock()
}

// closeAll closes every tracked connection; later adds fail.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for c := range m {
		c.Close()
	}
}

// network is the network to listen on addr with proto: an IPv4 address
// binds an IPv4 socket ("tcp" would make 0.0.0.0 a dual-stack [::]); an
// IPv6 one binds as the system does ([::] is dual-stack on Linux unless
// net.ipv6.bindv6only is set).
func network(proto string, addr netip.AddrPort) string {
	if addr.Addr().Is4() {
		return proto + "4"
	}
	return proto
}

// isClosedErr reports whether err means the socket was closed (by us).
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
