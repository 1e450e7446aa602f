// Package dns is a fence gateway's DNS server. It answers, with authority,
// the fence's own names — the names its gateway defines ("host",
// "gateway", "dns"), the hostnames of its DHCP leases, and the static
// records of its configuration — under a domain ("corral.internal"), and
// as single-label short names ("vm1" as well as "vm1.corral.internal", the
// way a resolver's search list expands them); it answers reverse lookups
// of the fence's own addresses, and forwards every other query to upstream
// resolvers. It serves a net.PacketConn and a net.Listener, so it runs on
// plain sockets in tests and on gVisor sockets in package stack.
//
// A name that exists but has no record of the type asked for gets an
// empty NOERROR answer (NODATA), never another type's address: a guest
// asking for AAAA of a name reachable over IPv4 only learns that there is
// none, and uses IPv4.
package dns

import (
	"context"
	"errors"
	"fmt"
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

// localTTL is the TTL of answers for names the gateway defines and for
// lease names, in seconds.
const localTTL = 60

// negativeTTL is the TTL (and SOA minimum) of negative answers in the
// domain, in seconds: short, so a guest that asked before another VM took
// its lease soon sees the new name.
const negativeTTL = 5

// maxCNAMEChain bounds how many CNAMEs one answer follows.
const maxCNAMEChain = 8

// Config configures a [Server].
type Config struct {
	// Domain is the zone of the fence's names ("corral.internal"); ""
	// means DefaultDomain. Names under it are answered locally and never
	// forwarded.
	Domain string
	// Resolvers are the upstream servers, tried in order.
	Resolvers []netip.AddrPort
	// Lookup returns the addresses of host, a single label under Domain
	// (a lease's hostname, or a name the gateway defines). A valid v4 is
	// the A answer, a valid v6 the AAAA answer; the name exists when
	// either is valid. Nil: only Records are local.
	Lookup func(host string) (v4, v6 netip.Addr)
	// Reverse, when set, names the fence's own addresses for PTR queries:
	// local reports whether ip belongs to the fence (its subnet or IPv6
	// prefix; those queries are never forwarded), host is its label under
	// Domain, "" when the address has no name (NXDOMAIN).
	Reverse func(ip netip.Addr) (host string, local bool)
	// Aliases maps other absolute names to labels under Domain, e.g.
	// "host.lima.internal" → "host". Names are case-insensitive.
	Aliases map[string]string
	// Records are static records, checked by ValidateRecords; they take
	// precedence over Lookup for the same name.
	Records []Record
	// Timeout bounds one upstream exchange; 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Server is the DNS server. Create it with [New].
type Server struct {
	cfg     Config
	log     *slog.Logger
	domain  string // "corral.internal." (lower case, fully qualified)
	suffix  string // ".corral.internal."
	records map[string][]mdns.RR
	aliases map[string]string // fully qualified, lower case → label

	inFlight atomic.Int64
	queries  atomic.Uint64
	failures atomic.Uint64
}

// New returns a server; it fails only on invalid Records.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Domain = domainOrDefault(cfg.Domain)
	s := &Server{cfg: cfg, log: cfg.Logger, domain: fqdn(cfg.Domain), aliases: map[string]string{}}
	s.suffix = "." + s.domain
	var err error
	if s.records, err = buildRecords(s.domain, cfg.Records); err != nil {
		return nil, err
	}
	for name, label := range cfg.Aliases {
		s.aliases[fqdn(strings.ToLower(name))] = strings.ToLower(label)
	}
	return s, nil
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
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout*time.Duration(max(1, len(s.cfg.Resolvers))))
	defer cancel()
	resp := s.answer(ctx, r, w.LocalAddr().Network())
	if resp != nil {
		w.WriteMsg(resp)
	}
}

func (s *Server) answer(ctx context.Context, r *mdns.Msg, network string) *mdns.Msg {
	if len(r.Question) != 1 || r.Opcode != mdns.OpcodeQuery {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeNotImplemented)
		return m
	}
	q := r.Question[0]
	if q.Qclass == mdns.ClassINET || q.Qclass == mdns.ClassANY {
		if m := s.local(ctx, r, q, network); m != nil {
			return m
		}
	}
	return s.forward(ctx, r, network)
}

// result is what a local lookup found.
type result uint8

const (
	notLocal result = iota // not a name of the fence: forward
	noName                 // a name of the fence's zone that does not exist: NXDOMAIN
	found                  // answers (maybe none: NODATA)
)

// local answers q when its name is the fence's; nil otherwise.
func (s *Server) local(ctx context.Context, r *mdns.Msg, q mdns.Question, network string) *mdns.Msg {
	name := strings.ToLower(q.Name)
	ans, res, next := s.lookup(q.Name, name, q.Qtype, 0)
	if res == notLocal {
		return nil
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Answer = ans
	if next != "" {
		// A CNAME of the fence that points outside it: resolve the target
		// upstream and add what it answers.
		fq := new(mdns.Msg)
		fq.SetQuestion(next, q.Qtype)
		fq.RecursionDesired = true
		if up := s.forward(ctx, fq, network); up.Rcode == mdns.RcodeSuccess {
			m.Answer = append(m.Answer, up.Answer...)
		}
	}
	if res == noName {
		m.Rcode = mdns.RcodeNameError
	}
	if len(m.Answer) == 0 && s.inZone(name) {
		m.Ns = []mdns.RR{s.soa()}
	}
	return m
}

// inZone reports whether name (lower case, fully qualified) is the domain
// or under it.
func (s *Server) inZone(name string) bool {
	return name == s.domain || strings.HasSuffix(name, s.suffix)
}

func (s *Server) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.domain, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: negativeTTL},
		Ns:      "dns" + s.suffix,
		Mbox:    "hostmaster" + s.suffix,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  negativeTTL,
	}
}

// lookup resolves name (lower case, fully qualified) locally for qtype,
// answering with owner as the records' name. next is the target of a
// local CNAME that is not itself local, to be resolved upstream.
func (s *Server) lookup(owner, name string, qtype uint16, depth int) (ans []mdns.RR, res result, next string) {
	if depth > maxCNAMEChain {
		return nil, found, ""
	}
	if rrs, ok := s.records[name]; ok {
		// Static records answer the types they have; the others fall
		// through to the names the gateway defines (a TXT record on
		// "host" leaves its address alone), else NODATA.
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if t == qtype || qtype == mdns.TypeANY || t == mdns.TypeCNAME {
				c := mdns.Copy(rr)
				c.Header().Name = owner
				ans = append(ans, c)
			}
			if cn, ok := rr.(*mdns.CNAME); ok && qtype != mdns.TypeCNAME && qtype != mdns.TypeANY {
				more, res, next := s.lookup(cn.Target, cn.Target, qtype, depth+1)
				if res == notLocal {
					return ans, found, cn.Target
				}
				return append(ans, more...), found, next
			}
		}
		if len(ans) > 0 && qtype != mdns.TypeANY {
			return ans, found, ""
		}
		more, _, _ := s.lookupName(owner, name, qtype, depth)
		return append(ans, more...), found, ""
	}
	return s.lookupName(owner, name, qtype, depth)
}

// lookupName is lookup for a name without static records of the type.
func (s *Server) lookupName(owner, name string, qtype uint16, depth int) (ans []mdns.RR, res result, next string) {
	if label, ok := s.aliases[name]; ok {
		return s.lookup(owner, label+s.suffix, qtype, depth+1)
	}
	if s.inZone(name) {
		return s.zoneName(owner, name, qtype)
	}
	if host, ok := strings.CutSuffix(name, "."); ok && host != "" && !strings.Contains(host, ".") {
		// A short name: expanded with the domain, as a guest's search
		// list would. Only names that exist are answered here; others go
		// upstream (a single label may be a top-level domain).
		if ans, res, next := s.lookup(owner, host+s.suffix, qtype, depth+1); res == found {
			return ans, res, next
		}
		return nil, notLocal, ""
	}
	if ip, ok := reverseAddr(name); ok && s.cfg.Reverse != nil {
		host, local := s.cfg.Reverse(ip)
		switch {
		case !local:
			return nil, notLocal, ""
		case host == "":
			return nil, noName, ""
		case qtype == mdns.TypePTR || qtype == mdns.TypeANY:
			return []mdns.RR{&mdns.PTR{
				Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: localTTL},
				Ptr: host + s.suffix,
			}}, found, ""
		}
		return nil, found, ""
	}
	return nil, notLocal, ""
}

// zoneName answers a name under the domain from Lookup.
func (s *Server) zoneName(owner, name string, qtype uint16) ([]mdns.RR, result, string) {
	if name == s.domain {
		if qtype == mdns.TypeSOA || qtype == mdns.TypeANY {
			soa := s.soa()
			soa.Hdr.Name = owner
			return []mdns.RR{soa}, found, ""
		}
		return nil, found, ""
	}
	host := strings.TrimSuffix(name, s.suffix)
	if strings.Contains(host, ".") || s.cfg.Lookup == nil {
		return nil, noName, ""
	}
	v4, v6 := s.cfg.Lookup(host)
	if !v4.IsValid() && !v6.IsValid() {
		return nil, noName, ""
	}
	var ans []mdns.RR
	if v4.IsValid() && (qtype == mdns.TypeA || qtype == mdns.TypeANY) {
		ans = append(ans, &mdns.A{
			Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: localTTL},
			A:   v4.AsSlice(),
		})
	}
	if v6.IsValid() && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY) {
		ans = append(ans, &mdns.AAAA{
			Hdr:  mdns.RR_Header{Name: owner, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: localTTL},
			AAAA: v6.AsSlice(),
		})
	}
	return ans, found, ""
}

// reverseAddr parses a reverse-lookup name (lower case, fully qualified):
// "15.2.0.10.in-addr.arpa." or the 32 nibbles under "ip6.arpa.".
func reverseAddr(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		p := strings.Split(v4, ".")
		if len(p) != 4 {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(p[3] + "." + p[2] + "." + p[1] + "." + p[0])
		return ip, err == nil
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		p := strings.Split(v6, ".")
		if len(p) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, nib := range p {
			if len(nib) != 1 {
				return netip.Addr{}, false
			}
			var v byte
			switch c := nib[0]; {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// p[0] is the lowest nibble of the address.
			j := 31 - i
			if j%2 == 0 {
				b[j/2] |= v << 4
			} else {
				b[j/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// forward relays r to the resolvers in turn; SERVFAIL when all fail.
func (s *Server) forward(ctx context.Context, r *mdns.Msg, network string) *mdns.Msg {
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
		resp, _, err := c.ExchangeContext(ctx, r, up.String())
		if err == nil && resp != nil {
			return resp
		}
		if ctx.Err() != nil {
			break
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

// ErrNotFound is returned by [Server.LookupNetIP] for a name without
// addresses.
var ErrNotFound = errors.New("dns: no such host")

// LookupNetIP resolves name the way a guest's query would be answered
// (the fence's names, short names, then the resolvers), IPv4 addresses
// first. A CNAME chain in the answer is followed.
func (s *Server) LookupNetIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip}, nil
	}
	if _, ok := mdns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	s.queries.Add(1)
	var out []netip.Addr
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), qt)
		q.RecursionDesired = true
		r := s.answer(ctx, q, "udp")
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *mdns.A:
				if ip, ok := netip.AddrFromSlice(rr.A); ok {
					out = append(out, ip.Unmap())
				}
			case *mdns.AAAA:
				if ip, ok := netip.AddrFromSlice(rr.AAAA); ok {
					out = append(out, ip)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return out, nil
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
