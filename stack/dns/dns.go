// Package dns is a fence gateway's DNS server: it answers the names of the
// fence's own DHCP leases under a domain and forwards every other query to
// upstream resolvers. It serves a net.PacketConn and a net.Listener, so it
// runs on plain sockets in tests and on gVisor sockets in package stack.
package dns

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultTimeout bounds one upstream exchange.
const DefaultTimeout = 3 * time.Second

// maxInFlight bounds concurrent forwarded queries; more get SERVFAIL.
const maxInFlight = 256

// ttl of answers for lease names, in seconds.
const leaseTTL = 60

// Config configures a [Server].
type Config struct {
	// Domain is the zone of lease names ("corral.internal"); names under
	// it are answered locally and never forwarded.
	Domain string
	// Resolvers are the upstream servers, tried in order.
	Resolvers []netip.AddrPort
	// Lookup returns the IPv4 address of a lease's hostname (one label).
	Lookup func(host string) (netip.Addr, bool)
	// Lookup6, when set, returns the IPv6 address of a name (AAAA).
	Lookup6 func(host string) (netip.Addr, bool)
	// Timeout bounds one upstream exchange; 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Server is the DNS server. Create it with [New].
type Server struct {
	cfg    Config
	log    *slog.Logger
	suffix string // "." + domain + "."

	inFlight atomic.Int64
	queries  atomic.Uint64
	failures atomic.Uint64
}

// New returns a server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Domain = strings.Trim(strings.ToLower(cfg.Domain), ".")
	return &Server{cfg: cfg, log: cfg.Logger, suffix: "." + cfg.Domain + "."}
}

// Queries returns the number of queries answered.
func (s *Server) Queries() uint64 { return s.queries.Load() }

// Failures returns the number of forwarded queries that failed.
func (s *Server) Failures() uint64 { return s.failures.Load() }

// ServePacket answers queries on pc until pc is closed.
func (s *Server) ServePacket(pc net.PacketConn) error {
	srv := &mdns.Server{PacketConn: pc, Handler: s, Net: "udp"}
	return s.serve(srv)
}

// ServeListener answers queries over TCP connections from ln until ln is
// closed.
func (s *Server) ServeListener(ln net.Listener) error {
	srv := &mdns.Server{Listener: ln, Handler: s, Net: "tcp"}
	return s.serve(srv)
}

func (s *Server) serve(srv *mdns.Server) error {
	err := srv.ActivateAndServe()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	s.queries.Add(1)
	resp := s.answer(r, w.LocalAddr().Network())
	if resp != nil {
		w.WriteMsg(resp)
	}
}

func (s *Server) answer(r *mdns.Msg, network string) *mdns.Msg {
	if len(r.Question) != 1 || r.Opcode != mdns.OpcodeQuery {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeNotImplemented)
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if s.cfg.Domain != "" && (name == s.suffix[1:] || strings.HasSuffix(name, s.suffix)) {
		return s.local(r, q, strings.TrimSuffix(name, s.suffix))
	}
	return s.forward(r, network)
}

// local answers a name under the domain from the leases.
func (s *Server) local(r *mdns.Msg, q mdns.Question, host string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	var ip netip.Addr
	found := false
	if !strings.Contains(host, ".") && s.cfg.Lookup != nil {
		ip, found = s.cfg.Lookup(host)
	}
	var ip6 netip.Addr
	found6 := false
	if !strings.Contains(host, ".") && s.cfg.Lookup6 != nil {
		ip6, found6 = s.cfg.Lookup6(host)
	}
	if !found && !found6 {
		m.Rcode = mdns.RcodeNameError
		return m
	}
	if found && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY) {
		m.Answer = append(m.Answer, &mdns.A{
			Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: leaseTTL},
			A:   ip.AsSlice(),
		})
	}
	if found6 && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY) {
		m.Answer = append(m.Answer, &mdns.AAAA{
			Hdr:  mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: leaseTTL},
			AAAA: ip6.AsSlice(),
		})
	}
	return m
}

// forward relays r to the resolvers in turn; SERVFAIL when all fail.
func (s *Server) forward(r *mdns.Msg, network string) *mdns.Msg {
	if s.inFlight.Add(1) > maxInFlight {
		s.inFlight.Add(-1)
		s.failures.Add(1)
		return servfail(r)
	}
	defer s.inFlight.Add(-1)
	c := &mdns.Client{Net: "udp", Timeout: s.cfg.Timeout}
	if strings.HasPrefix(network, "tcp") {
		c.Net = "tcp"
	}
	for _, up := range s.cfg.Resolvers {
		resp, _, err := c.Exchange(r, up.String())
		if err == nil && resp != nil {
			return resp
		}
	}
	s.failures.Add(1)
	return servfail(r)
}

func servfail(r *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	return m
}

// ResolvConf returns the nameservers of a resolv.conf file as addresses
// with port.
func ResolvConf(path string) ([]netip.AddrPort, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, srv := range cc.Servers {
		a, err := netip.ParseAddr(srv)
		if err != nil {
			continue
		}
		port := uint16(53)
		if p, err := netip.ParseAddrPort(net.JoinHostPort(srv, cc.Port)); err == nil {
			port = p.Port()
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), port))
	}
	return out, nil
}
