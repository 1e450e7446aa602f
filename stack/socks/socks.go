// Package socks is a SOCKS5 server (RFC 1928) that reaches only what its
// dial functions let it reach. Package stack gives it dialers into one
// fence through that fence's gateway, so host tools (ssh ProxyCommand,
// curl --socks5-hostname, browsers) reach the fence's guests without a
// port forward.
//
// It serves CONNECT and UDP ASSOCIATE (when Config.DialUDP is set) with
// the "no authentication" method only: it is meant to listen on loopback,
// where only local users reach it. Domain names in requests (socks5h) are
// resolved by Config.Resolve, the fence's own DNS. BIND is not supported.
//
// Every client costs one slot of Config.MaxConns while it is connected;
// clients beyond it are closed at once and counted. The greeting and
// request must arrive within Config.HandshakeTimeout.
package socks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of [Config].
const (
	DefaultMaxConns         = 256
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	// DefaultMaxUDPTargets bounds the destinations of one UDP association.
	DefaultMaxUDPTargets = 64
)

// Protocol constants (RFC 1928).
const (
	version5 = 5

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xff

	cmdConnect      = 1
	cmdBind         = 2
	cmdUDPAssociate = 3

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4

	repSucceeded          = 0
	repGeneralFailure     = 1
	repNotAllowed         = 2
	repNetworkUnreachable = 3
	repHostUnreachable    = 4
	repConnectionRefused  = 5
	repCommandUnsupported = 7
	repAddressUnsupported = 8
)

// ErrRefused is what a dial function returns for a destination it does
// not serve (outside the fence); the client gets "connection not allowed
// by ruleset" and the refusal is counted.
var ErrRefused = errors.New("socks: destination not allowed")

// Config configures a [Server].
type Config struct {
	// Dial connects to dst over TCP, or returns an error wrapping
	// ErrRefused for a destination it does not serve. Required.
	Dial func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// DialUDP returns a connected UDP socket to dst (or ErrRefused); nil
	// refuses UDP ASSOCIATE as an unsupported command.
	DialUDP func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// Resolve resolves a domain name of a request; nil refuses names
	// (address type not supported).
	Resolve func(ctx context.Context, name string) ([]netip.Addr, error)
	// MaxConns bounds concurrent clients; 0 means DefaultMaxConns.
	MaxConns int
	// HandshakeTimeout bounds the greeting and the request; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DialTimeout bounds resolving and connecting; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxUDPTargets bounds the destinations of one UDP association;
	// datagrams to more are dropped and counted. 0 means
	// DefaultMaxUDPTargets.
	MaxUDPTargets int
	// Reserve, when set, is told of every UDP relay socket the server
	// binds for an association (before the client learns its port) and
	// returns what ends that registration, called once the socket is
	// closed: so that no guest's NAT reaches a relay (DESIGN.md 6).
	Reserve func(proto string, addr netip.AddrPort) (release func())
	// Logger receives debug logs of failed requests; nil discards them.
	Logger *slog.Logger
}

// Stats are the server's counters.
type Stats struct {
	Accepted    uint64 // clients accepted
	Active      int64  // clients connected now
	OverLimit   uint64 // clients closed at once: MaxConns reached
	Connects    uint64 // CONNECT requests that reached their destination
	Associates  uint64 // UDP associations opened
	Refused     uint64 // requests for destinations outside what the dialers serve
	Failed      uint64 // requests whose name did not resolve or whose dial failed
	BadRequests uint64 // malformed greetings and requests, unsupported methods, commands or address types, handshake timeouts
	UDPDropped  uint64 // UDP datagrams dropped (malformed, fragmented, refused, too many targets, foreign source)
}

// Server is a SOCKS5 server. Create it with [New], run it with [Server.Serve].
type Server struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[io.Closer]struct{} // +checklocks:mu

	accepted, overLimit, connects, associates atomic.Uint64
	refused, failed, badRequests, udpDropped  atomic.Uint64
	active                                    atomic.Int64
}

// New returns a server.
func New(cfg Config) *Server {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxUDPTargets <= 0 {
		cfg.MaxUDPTargets = DefaultMaxUDPTargets
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, lns: map[net.Listener]struct{}{}, conns: map[io.Closer]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted: s.accepted.Load(), Active: s.active.Load(), OverLimit: s.overLimit.Load(),
		Connects: s.connects.Load(), Associates: s.associates.Load(), Refused: s.refused.Load(),
		Failed: s.failed.Load(), BadRequests: s.badRequests.Load(), UDPDropped: s.udpDropped.Load(),
	}
}

// Serve accepts clients on ln until ln fails or the server is closed; it
// returns nil after Close. The server owns ln from now on.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, true) {
		ln.Close()
		return nil
	}
	defer s.untrack(ln, true)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off instead of spinning.
			select {
			case <-s.ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.accepted.Add(1)
		if s.active.Add(1) > int64(s.cfg.MaxConns) {
			s.active.Add(-1)
			s.overLimit.Add(1)
			c.Close()
			continue
		}
		if !s.track(c, false) {
			s.active.Add(-1)
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.active.Add(-1)
			defer s.untrack(c, false)
			defer c.Close()
			s.serveConn(c)
		}()
	}
}

// Close stops every Serve, closes every client connection and waits for
// their goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var cs []io.Closer
	for ln := range s.lns {
		cs = append(cs, ln)
	}
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range cs {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

// track registers a listener or connection for Close; false once closed.
// Connections also join the wait group's scope (the caller's goroutine).
func (s *Server) track(c io.Closer, listener bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if listener {
		s.lns[c.(net.Listener)] = struct{}{}
	} else {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *Server) untrack(c io.Closer, listener bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if listener {
		delete(s.lns, c.(net.Listener))
	} else {
		delete(s.conns, c)
	}
}

// request is a parsed SOCKS request.
type request struct {
	cmd  byte
	addr netip.AddrPort // when the request names an address
	name string         // when it names a domain
	port uint16
}

func (r request) String() string {
	if r.name != "" {
		return net.JoinHostPort(r.name, fmt.Sprint(r.port))
	}
	return r.addr.String()
}

// serveConn runs one client: greeting, request, then the command.
func (s *Server) serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	req, ok := s.handshake(c)
	if !ok {
		s.badRequests.Add(1)
		return
	}
	switch req.cmd {
	case cmdConnect:
		s.connect(c, req)
	case cmdUDPAssociate:
		if s.cfg.DialUDP == nil {
			s.badRequests.Add(1)
			writeReply(c, repCommandUnsupported, netip.AddrPort{})
			return
		}
		s.associate(c, req)
	default:
		s.badRequests.Add(1)
		writeReply(c, repCommandUnsupported, netip.AddrPort{})
	}
}

// handshake reads the greeting, answers it and reads the request. A
// request whose address type is unknown is answered here; ok is false
// for every failure.
func (s *Server) handshake(c net.Conn) (req request, ok bool) {
	var b [2 + 255]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != version5 || b[1] == 0 {
		return req, false
	}
	methods := b[2 : 2+int(b[1])]
	if _, err := io.ReadFull(c, methods); err != nil {
		return req, false
	}
	noAuth := false
	for _, m := range methods {
		noAuth = noAuth || m == methodNoAuth
	}
	if !noAuth {
		c.Write([]byte{version5, methodNoAcceptable})
		return req, false
	}
	if _, err := c.Write([]byte{version5, methodNoAuth}); err != nil {
		return req, false
	}
	// VER CMD RSV ATYP
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[0] != version5 {
		return req, false
	}
	req.cmd = b[1]
	switch b[3] {
	case atypIPv4, atypIPv6:
		n := 4
		if b[3] == atypIPv6 {
			n = 16
		}
		if _, err := io.ReadFull(c, b[:n+2]); err != nil {
			return req, false
		}
		a, _ := netip.AddrFromSlice(b[:n])
		req.addr = netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n:]))
		req.port = req.addr.Port()
	case atypDomain:
		if _, err := io.ReadFull(c, b[:1]); err != nil || b[0] == 0 {
			return req, false
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n+2]); err != nil {
			return req, false
		}
		req.name = string(b[:n])
		req.port = binary.BigEndian.Uint16(b[n:])
		if s.cfg.Resolve == nil {
			writeReply(c, repAddressUnsupported, netip.AddrPort{})
			return req, false
		}
	default:
		writeReply(c, repAddressUnsupported, netip.AddrPort{})
		return req, false
	}
	return req, true
}

// targets resolves a request's destination into candidate addresses.
func (s *Server) targets(ctx context.Context, req request) ([]netip.AddrPort, error) {
	if req.name == "" {
		return []netip.AddrPort{netip.AddrPortFrom(req.addr.Addr().Unmap(), req.port)}, nil
	}
	ips, err := s.cfg.Resolve(ctx, req.name)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), req.port))
	}
	return out, nil
}

// connect serves CONNECT: the first candidate address that the dialer
// reaches wins; the reply carries the dialed connection's local address.
func (s *Server) connect(c net.Conn, req request) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
	dsts, err := s.targets(ctx, req)
	if err != nil || len(dsts) == 0 {
		cancel()
		s.failed.Add(1)
		s.log.Debug("socks: resolve", "dst", req.String(), "err", err)
		writeReply(c, repHostUnreachable, netip.AddrPort{})
		return
	}
	var (
		up      net.Conn
		lastErr error
		refused = true
	)
	for _, dst := range dsts {
		up, lastErr = s.cfg.Dial(ctx, dst)
		if lastErr == nil {
			break
		}
		refused = refused && errors.Is(lastErr, ErrRefused)
	}
	cancel()
	if lastErr != nil {
		s.log.Debug("socks: connect", "dst", req.String(), "err", lastErr)
		if refused {
			s.refused.Add(1)
			writeReply(c, repNotAllowed, netip.AddrPort{})
			return
		}
		s.failed.Add(1)
		writeReply(c, replyFor(lastErr), netip.AddrPort{})
		return
	}
	if !s.track(up, false) {
		up.Close()
		return
	}
	defer s.untrack(up, false)
	defer up.Close()
	if err := writeReply(c, repSucceeded, addrPortOf(up.LocalAddr())); err != nil {
		return
	}
	s.connects.Add(1)
	c.SetDeadline(time.Time{})
	splice(c, up)
}

// replyFor maps a dial error to a reply code.
func replyFor(err error) byte {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), isGVisorErr(err, "connection was refused"):
		return repConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH), isGVisorErr(err, "network is unreachable"):
		return repNetworkUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.EHOSTUNREACH), isGVisorErr(err, "no route to host"):
		return repHostUnreachable
	}
	return repGeneralFailure
}

// isGVisorErr matches the text of a gVisor error that a net.OpError
// carries (tcpip.Error values are not comparable through errors.Is).
func isGVisorErr(err error, text string) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == text {
			return true
		}
	}
	return false
}

// addrPortOf returns a's address and port, or the zero AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// writeReply writes VER REP RSV ATYP BND.ADDR BND.PORT; bnd may be zero
// (0.0.0.0:0).
func writeReply(w io.Writer, rep byte, bnd netip.AddrPort) error {
	b := make([]byte, 0, 4+16+2)
	b = append(b, version5, rep, 0)
	b = appendAddr(b, bnd)
	_, err := w.Write(b)
	return err
}

// appendAddr appends ATYP ADDR PORT for a (IPv4 when a is zero or IPv4).
func appendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	switch {
	case ip.Is6():
		s := ip.As16()
		b = append(append(b, atypIPv6), s[:]...)
	case ip.Is4():
		s := ip.As4()
		b = append(append(b, atypIPv4), s[:]...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.Port())
}

// copyBufSize is the buffer of each direction of a spliced connection.
const copyBufSize = 64 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// splice copies both ways, half-closing each direction as it ends, until
// both have ended.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	cp := func(dst, src net.Conn) {
		bp := copyBufs.Get().(*[copyBufSize]byte)
		io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, bp[:])
		copyBufs.Put(bp)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go func() {
		defer close(done)
		cp(a, b)
	}()
	cp(b, a)
	<-done
}
