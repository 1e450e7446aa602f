package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Protocols of a [Forward].
const (
	TCP = "tcp"
	UDP = "udp"
)

// Errors of [Forward.Validate] and of the [Forwarder] methods; the
// returned errors wrap them with the forward at fault.
var (
	// ErrInvalid: the forward itself is malformed, or its target is
	// outside the fence's prefixes.
	ErrInvalid = errors.New("invalid forward")
	// ErrExists: the fence already has a forward with the same route
	// (protocol, listen address, sni or host).
	ErrExists = errors.New("the fence already has this forward")
	// ErrConflict: another fence has a forward with the same route.
	ErrConflict = errors.New("another fence has this forward")
	// ErrNotFound: no forward of the fence has this route.
	ErrNotFound = errors.New("no such forward")
	// ErrNoFence: the fence is not attached (its gateway is not running).
	ErrNoFence = errors.New("fence not attached")
	// ErrClosed: the Forwarder is closed.
	ErrClosed = errors.New("forwarder closed")
)

// Forward is one port forward: connections (TCP) or datagram flows (UDP)
// to Listen on the host are relayed to Target inside fence Fence, from
// the fence's gateway.
//
// A TCP forward may name the connections it takes: SNI, the server name
// of a TLS ClientHello, or Host, the host of an HTTP/1 request (without
// its port). Forwards with distinct names share one listen address, in
// one fence or in several; a forward without a name on an address that
// has named forwards is its default route: it takes the connections that
// name none of them. See the package documentation.
type Forward struct {
	Fence  uint32
	Proto  string         // TCP or UDP
	Listen netip.AddrPort // host address; port 0: a free port, reported as bound
	Target netip.AddrPort // address inside the fence
	SNI    string         // TCP only: the TLS server name this forward takes
	Host   string         // TCP only: the HTTP Host this forward takes
}

// String formats f as "tcp 127.0.0.1:8443 sni lab-a.test -> 10.0.2.15:443"
// (no fence).
func (f Forward) String() string {
	return f.Route().String() + " -> " + f.Target.String()
}

// Route returns what identifies f among the fence's forwards.
func (f Forward) Route() Route {
	return Route{Proto: f.Proto, Listen: f.Listen, SNI: f.SNI, Host: f.Host}
}

// Route identifies a forward on its listener: two forwards with the same
// Route, in one fence or in two, conflict.
type Route struct {
	Proto  string
	Listen netip.AddrPort
	SNI    string
	Host   string
}

// String formats r as "tcp 127.0.0.1:8443 sni lab-a.test".
func (r Route) String() string {
	s := r.Proto + " " + r.Listen.String()
	switch {
	case r.SNI != "":
		s += " sni " + r.SNI
	case r.Host != "":
		s += " host " + r.Host
	}
	return s
}

// Named reports whether the route takes only the connections that name
// it (sni or host).
func (r Route) Named() bool { return r.SNI != "" || r.Host != "" }

// Normalize returns f as the Forwarder keeps it: Listen and Target
// unmapped (::ffff:127.0.0.1 is 127.0.0.1), Proto, SNI and Host in lower
// case without a trailing dot.
func (f Forward) Normalize() Forward {
	f.Proto = strings.ToLower(f.Proto)
	f.Listen = netip.AddrPortFrom(f.Listen.Addr().Unmap(), f.Listen.Port())
	f.Target = netip.AddrPortFrom(f.Target.Addr().Unmap(), f.Target.Port())
	f.SNI = normName(f.SNI)
	f.Host = normName(f.Host)
	return f
}

// Validate checks f alone, after [Forward.Normalize]: not against the
// other forwards nor against the fence's prefixes ([Forwarder.Add] does
// both).
func (f Forward) Validate() error {
	f = f.Normalize()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if f.Proto != TCP && f.Proto != UDP {
		return bad("proto %q: want tcp or udp", f.Proto)
	}
	if !f.Listen.IsValid() {
		return bad("listen: missing address")
	}
	if f.Listen.Addr().Zone() != "" {
		return bad("listen %v: no zone", f.Listen)
	}
	if !f.Target.IsValid() || f.Target.Port() == 0 || f.Target.Addr().Zone() != "" {
		return bad("target %v: want address:port", f.Target)
	}
	if t := f.Target.Addr(); t.IsUnspecified() || t.IsMulticast() || t.IsLoopback() {
		return bad("target %v: want a unicast address inside the fence", f.Target)
	}
	if f.SNI != "" && f.Host != "" {
		return bad("sni %q and host %q: give one of them", f.SNI, f.Host)
	}
	if f.Proto == UDP && f.Route().Named() {
		return bad("sni and host need proto tcp (they name TLS and HTTP connections)")
	}
	if f.SNI != "" {
		if err := CheckName(f.SNI); err != nil {
			return bad("sni %q: %v", f.SNI, err)
		}
	}
	if f.Host != "" {
		if _, err := netip.ParseAddr(f.Host); err != nil {
			if err := CheckName(f.Host); err != nil {
				return bad("host %q: %v", f.Host, err)
			}
		}
	}
	return nil
}

// normName lower-cases a DNS name and drops one trailing dot.
func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// CheckName checks a DNS name as forwards match it (after lower-casing
// and dropping a trailing dot): labels of letters, digits, '-' and '_',
// 1 to 63 bytes each, 253 bytes in all. Wildcards are not names.
func CheckName(s string) error {
	s = normName(s)
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("want labels of 1 to 63 bytes between dots")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a letter, digit, '-' or '_' (no wildcards, ports or spaces)", c)
			}
		}
	}
	return nil
}
