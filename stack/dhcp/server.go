package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a [Server].
type Config struct {
	// Subnet is the served IPv4 subnet.
	Subnet netip.Prefix
	// ServerID is the server's address (option 54); normally the router.
	ServerID netip.Addr
	// Router and DNS are handed to clients (options 3 and 6).
	Router, DNS netip.Addr
	// First is the first address leased; leases run up to the last
	// address before the subnet's broadcast address.
	First netip.Addr
	// LeaseTime is the lease duration (option 51).
	LeaseTime time.Duration
	// MTU is sent as option 26 when not 0 and not 1500.
	MTU int
	// Domain is sent as option 15 (domain name) and option 119 (domain
	// search list) when not "".
	Domain string
	// StateFile, when not "", is where leases are loaded from and
	// persisted to (JSON, written to a temporary file and renamed).
	StateFile string
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// OnLease, when set, is called with every lease acknowledged (a
	// REQUEST answered with ACK: a new lease or a renewal). It runs on
	// the server's goroutine and must not block.
	OnLease func(Lease)
}

// Lease is one binding of a MAC to an address.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	Expiry   time.Time  `json:"expiry"`
}

type lease struct {
	mac      [6]byte
	ip       netip.Addr
	hostname string
	expiry   time.Time // zero: offered, never acknowledged
}

// Server is a DHCPv4 server for one subnet. Leases are stable per MAC: a
// MAC keeps its address across renewals, expiry and restarts (when
// StateFile is set), unless the pool runs out and the address is
// reclaimed from the longest-expired lease.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	byMAC  map[[6]byte]*lease
	byIP   map[netip.Addr]*lease
	bcast  netip.Addr
	last   netip.Addr
	saveMu sync.Mutex

	requests atomic.Uint64
	invalid  atomic.Uint64
}

// ErrPoolExhausted is returned (and counted) when no address is free.
var ErrPoolExhausted = errors.New("dhcp: address pool exhausted")

// NewServer returns a server; it loads StateFile when it exists.
func NewServer(cfg Config) (*Server, error) {
	if !cfg.Subnet.Addr().Is4() || !cfg.Subnet.Contains(cfg.First) {
		return nil, fmt.Errorf("dhcp: first address %v not in subnet %v", cfg.First, cfg.Subnet)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		byMAC: make(map[[6]byte]*lease),
		byIP:  make(map[netip.Addr]*lease),
	}
	s.bcast = broadcastAddr(cfg.Subnet)
	s.last = s.bcast.Prev()
	if cfg.StateFile != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func broadcastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (s *Server) inPool(ip netip.Addr) bool {
	return ip.Is4() && s.cfg.Subnet.Contains(ip) && ip.Compare(s.cfg.First) >= 0 && ip.Compare(s.last) <= 0
}

// Requests returns how many valid requests the server handled.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Invalid returns how many malformed or unsupported messages it dropped.
func (s *Server) Invalid() uint64 { return s.invalid.Load() }

// NumLeases returns the number of acknowledged bindings.
func (s *Server) NumLeases() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.byMAC {
		if !l.expiry.IsZero() {
			n++
		}
	}
	return n
}

// Leases returns the acknowledged bindings, sorted by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leasesLocked()
}

func (s *Server) leasesLocked() []Lease {
	out := make([]Lease, 0, len(s.byMAC))
	for _, l := range s.byMAC {
		if l.expiry.IsZero() {
			continue
		}
		out = append(out, Lease{MAC: net.HardwareAddr(l.mac[:]).String(), IP: l.ip, Hostname: l.hostname, Expiry: l.expiry})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// Lookup returns the address of the unexpired lease whose hostname is name
// (case-insensitive).
func (s *Server) Lookup(name string, now time.Time) (netip.Addr, bool) {
	name = strings.ToLower(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *lease
	for _, l := range s.byMAC {
		if l.hostname == name && l.expiry.After(now) && (best == nil || l.expiry.After(best.expiry)) {
			best = l
		}
	}
	if best == nil {
		return netip.Addr{}, false
	}
	return best.ip, true
}

// Hostname returns the hostname of the unexpired lease of ip, "" when it
// has none.
func (s *Server) Hostname(ip netip.Addr, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byIP[ip]; l != nil && l.mac != ([6]byte{}) && l.expiry.After(now) {
		return l.hostname
	}
	return ""
}

// Serve answers requests read from pc until pc fails (closed).
func (s *Server) Serve(pc net.PacketConn) error {
	req := make([]byte, MaxMessageSize)
	resp := make([]byte, MaxMessageSize)
	for {
		n, _, err := pc.ReadFrom(req)
		if err != nil {
			return err
		}
		out, dst, ok := s.Handle(Message(req[:n]), resp, time.Now())
		if !ok {
			continue
		}
		if _, err := pc.WriteTo(out, net.UDPAddrFromAddrPort(dst)); err != nil {
			s.log.Debug("dhcp write", "err", err)
		}
	}
}

// Handle answers one request. resp is scratch of at least MaxMessageSize
// bytes; the reply is a prefix of it. ok is false when there is no reply.
func (s *Server) Handle(req Message, resp []byte, now time.Time) (reply Message, dst netip.AddrPort, ok bool) {
	if err := req.Validate(); err != nil || req.Op() != OpRequest {
		s.invalid.Add(1)
		return nil, dst, false
	}
	typ, ok := req.Type()
	if !ok {
		s.invalid.Add(1)
		return nil, dst, false
	}
	s.requests.Add(1)
	mac := req.CHAddr()
	if mac[0]&1 != 0 || mac == [6]byte{} {
		s.invalid.Add(1)
		return nil, dst, false
	}
	if sid, ok := req.AddrOption(OptServerID); ok && sid != s.cfg.ServerID {
		// The client talks to another server; it declined our offer.
		if typ == Request {
			s.dropOffer(mac)
		}
		return nil, dst, false
	}
	hostname := ""
	if h, ok := req.Option(OptHostname); ok {
		hostname = sanitizeHostname(string(h))
	}

	var (
		replyType MessageType
		yiaddr    netip.Addr
	)
	switch typ {
	case Discover:
		want, _ := req.AddrOption(OptRequestedIP)
		ip, err := s.offer(mac, want, now)
		if err != nil {
			s.log.Warn("dhcp: no address to offer", "mac", net.HardwareAddr(mac[:]).String(), "err", err)
			return nil, dst, false
		}
		replyType, yiaddr = Offer, ip
	case Request:
		want, ok := req.AddrOption(OptRequestedIP)
		if !ok {
			want = req.CIAddr()
		}
		if s.commit(mac, want, hostname, now) {
			replyType, yiaddr = Ack, want
			if s.cfg.OnLease != nil {
				s.cfg.OnLease(Lease{MAC: net.HardwareAddr(mac[:]).String(), IP: want, Hostname: hostname, Expiry: now.Add(s.cfg.LeaseTime)})
			}
		} else {
			replyType = Nak
		}
	case Release:
		s.release(mac, req.CIAddr(), now)
		return nil, dst, false
	case Decline:
		if ip, ok := req.AddrOption(OptRequestedIP); ok {
			s.decline(mac, ip, now)
		}
		return nil, dst, false
	case Inform:
		replyType = Ack
	default:
		s.invalid.Add(1)
		return nil, dst, false
	}

	out := Message(resp[:HeaderSize])
	out.Encode(&MessageFields{
		Op:     OpReply,
		XID:    req.XID(),
		Flags:  req.Flags(),
		CIAddr: req.CIAddr(),
		YIAddr: yiaddr,
		SIAddr: s.cfg.ServerID,
		GIAddr: req.GIAddr(),
		CHAddr: mac,
	})
	b := []byte(out)
	b = AppendOption(b, OptMessageType, byte(replyType))
	b = AppendAddrOption(b, OptServerID, s.cfg.ServerID)
	if replyType != Nak {
		if typ != Inform {
			secs := uint32(s.cfg.LeaseTime / time.Second)
			b = AppendUint32Option(b, OptLeaseTime, secs)
			b = AppendUint32Option(b, OptRenewalT1, secs/2)
			b = AppendUint32Option(b, OptRebindingT2, secs/8*7)
		}
		mask := net.CIDRMask(s.cfg.Subnet.Bits(), 32)
		b = AppendOption(b, OptSubnetMask, mask...)
		b = AppendAddrOption(b, OptBroadcast, s.bcast)
		if s.cfg.Router.IsValid() {
			b = AppendAddrOption(b, OptRouter, s.cfg.Router)
		}
		if s.cfg.DNS.IsValid() {
			b = AppendAddrOption(b, OptDNS, s.cfg.DNS)
		}
		if s.cfg.Domain != "" {
			b = AppendOption(b, OptDomainName, []byte(s.cfg.Domain)...)
			b = AppendDomainSearch(b, s.cfg.Domain)
		}
		if s.cfg.MTU != 0 && s.cfg.MTU != 1500 {
			b = AppendOption(b, OptMTU, byte(s.cfg.MTU>>8), byte(s.cfg.MTU))
		}
	}
	b = append(b, OptEnd)
	for len(b) < MinReplySize {
		b = append(b, OptPad)
	}

	// Destination (RFC 2131 section 4.1).
	switch {
	case req.GIAddr().IsValid() && !req.GIAddr().IsUnspecified():
		dst = netip.AddrPortFrom(req.GIAddr(), 67)
	case replyType != Nak && req.CIAddr().IsValid() && !req.CIAddr().IsUnspecified():
		dst = netip.AddrPortFrom(req.CIAddr(), 68)
	default:
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("dhcp", "req", typ.String(), "reply", replyType.String(), "mac", net.HardwareAddr(mac[:]).String(), "ip", yiaddr)
	}
	return Message(b), dst, true
}

// offer picks the address for mac: its existing binding, else want when
// free, else the lowest free address, else the longest-expired lease's.
func (s *Server) offer(mac [6]byte, want netip.Addr, now time.Time) (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.byMAC[mac]; ok {
		return l.ip, nil
	}
	ip := netip.Addr{}
	if s.inPool(want) && s.byIP[want] == nil {
		ip = want
	}
	for a := s.cfg.First; !ip.IsValid() && a.Compare(s.last) <= 0; a = a.Next() {
		if l := s.byIP[a]; l == nil || l.mac == ([6]byte{}) && l.expiry.Before(now) {
			ip = a
		}
	}
	if !ip.IsValid() {
		var oldest *lease
		for _, l := range s.byMAC {
			if l.mac != ([6]byte{}) && (oldest == nil || l.expiry.Before(oldest.expiry)) {
				oldest = l
			}
		}
		if oldest == nil || oldest.expiry.After(now) {
			return netip.Addr{}, ErrPoolExhausted
		}
		delete(s.byMAC, oldest.mac)
		delete(s.byIP, oldest.ip)
		ip = oldest.ip
	}
	l := &lease{mac: mac, ip: ip}
	s.byMAC[mac] = l
	s.byIP[ip] = l
	return ip, nil
}

// commit acknowledges ip for mac when ip is mac's binding or free.
func (s *Server) commit(mac [6]byte, ip netip.Addr, hostname string, now time.Time) bool {
	s.mu.Lock()
	l, ok := s.byMAC[mac]
	switch {
	case ok && l.ip == ip:
	case !s.inPool(ip):
		s.mu.Unlock()
		return false
	case s.byIP[ip] != nil:
		s.mu.Unlock()
		return false
	default:
		if ok {
			delete(s.byIP, l.ip)
		}
		l = &lease{mac: mac, ip: ip}
		s.byMAC[mac] = l
		s.byIP[ip] = l
	}
	l.expiry = now.Add(s.cfg.LeaseTime)
	if hostname != "" {
		l.hostname = hostname
	}
	snap := s.leasesLocked()
	s.mu.Unlock()
	s.save(snap)
	return true
}

func (s *Server) dropOffer(mac [6]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.byMAC[mac]; ok && l.expiry.IsZero() {
		delete(s.byMAC, mac)
		delete(s.byIP, l.ip)
	}
}

// release expires the lease but keeps the binding, so the MAC gets the
// same address next time.
func (s *Server) release(mac [6]byte, ip netip.Addr, now time.Time) {
	s.mu.Lock()
	l, ok := s.byMAC[mac]
	if !ok || l.ip != ip || l.expiry.IsZero() {
		s.mu.Unlock()
		return
	}
	l.expiry = now
	snap := s.leasesLocked()
	s.mu.Unlock()
	s.save(snap)
}

// decline drops mac's binding to ip and parks ip under a zero MAC for a
// lease time (someone else uses it).
func (s *Server) decline(mac [6]byte, ip netip.Addr, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.byMAC[mac]; ok && l.ip == ip {
		delete(s.byMAC, mac)
		s.byIP[ip] = &lease{ip: ip, expiry: now.Add(s.cfg.LeaseTime)}
	}
}

// sanitizeHostname makes a DNS label of a DHCP hostname: lowercase, the
// first label only, [a-z0-9-], at most 63 bytes; "" when nothing is left.
func sanitizeHostname(h string) string {
	h = strings.ToLower(h)
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	var b strings.Builder
	for i := 0; i < len(h) && b.Len() < 63; i++ {
		c := h[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
		}
	}
	return strings.Trim(b.String(), "-")
}

type stateFile struct {
	Leases []Lease `json:"leases"`
}

func (s *Server) load() error {
	data, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dhcp: load leases: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("dhcp: load leases %s: %w", s.cfg.StateFile, err)
	}
	for _, le := range st.Leases {
		hw, err := net.ParseMAC(le.MAC)
		if err != nil || len(hw) != 6 || !s.inPool(le.IP) {
			continue
		}
		mac := [6]byte(hw)
		if s.byIP[le.IP] != nil || s.byMAC[mac] != nil {
			continue
		}
		l := &lease{mac: mac, ip: le.IP, hostname: sanitizeHostname(le.Hostname), expiry: le.Expiry}
		s.byMAC[mac] = l
		s.byIP[le.IP] = l
	}
	return nil
}

// save writes the leases atomically: temporary file, fsync, rename.
func (s *Server) save(leases []Lease) {
	if s.cfg.StateFile == "" {
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := writeAtomic(s.cfg.StateFile, leases); err != nil {
		s.log.Error("dhcp: persist leases", "err", err)
	}
}

func writeAtomic(path string, leases []Lease) error {
	data, err := json.MarshalIndent(stateFile{Leases: leases}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
