package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
)

// The gateway never reaches corral itself (DESIGN.md section 6): every IP
// socket this process binds, and every IP address it dials a VM at, is
// registered here, and each gateway's NAT asks IsSelf (stack.Config.IsSelf)
// before it opens a host socket for a guest. Registered:
//   - fence listeners of the tcp and udp schemes (unix, unixgram,
//     unixpacket and vsock sockets have no IP address: NAT cannot reach
//     them; stdio is no socket);
//   - fence dial targets of the tcp and udp schemes (a QEMU socket a VM of
//     some fence is attached by; reaching it would bypass the switch);
//   - the uplink's UDP socket;
//   - the metrics listener;
//   - every fence's port forwards, those of the configuration and those
//     added at run time (removed again when they are);
//   - (when they exist) the gossip listener and the SOCKS endpoint: their
//     owners call selfSockets.add.
//
// The admin API listens on a unix socket only. Configured addresses with a
// fixed port are registered before anything binds (newSelfSockets), so
// there is no window between a bind and its registration; what is bound to
// port 0 is registered once bound.
type selfSockets struct {
	mu sync.RWMutex // mu guards the following fields
	// byPort holds the registered addresses of each protocol and port,
	// with a count each (the same address may be registered twice: from
	// the configuration and once bound).
	// +checklocks:mu
	byPort map[selfPort][]selfAddr
	// isLocal reports whether an address is one of this host's (tests
	// replace it).
	isLocal func(netip.Addr) bool
}

type selfPort struct {
	proto string // "tcp" or "udp"
	port  uint16
}

type selfAddr struct {
	addr netip.Addr // unmapped, no zone; unspecified for a wildcard bind
	refs int
}

func newSelfSockets() *selfSockets {
	return &selfSockets{byPort: map[selfPort][]selfAddr{}, isLocal: kernelLocal}
}

// add registers proto ("tcp" or "udp") on ap and returns the function
// that removes that registration (safe to call more than once). A port 0
// registers nothing.
func (r *selfSockets) add(proto string, ap netip.AddrPort) (remove func()) {
	if ap.Port() == 0 || !ap.Addr().IsValid() {
		return func() {}
	}
	k := selfPort{proto, ap.Port()}
	a := ap.Addr().Unmap().WithZone("")
	r.mu.Lock()
	defer r.mu.Unlock()
	as := r.byPort[k]
	if i := slices.IndexFunc(as, func(x selfAddr) bool { return x.addr == a }); i >= 0 {
		as[i].refs++
	} else {
		r.byPort[k] = append(as, selfAddr{addr: a, refs: 1})
	}
	var once sync.Once
	return func() { once.Do(func() { r.remove(k, a) }) }
}

func (r *selfSockets) remove(k selfPort, a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	as := r.byPort[k]
	i := slices.IndexFunc(as, func(x selfAddr) bool { return x.addr == a })
	if i < 0 {
		return
	}
	if as[i].refs--; as[i].refs == 0 {
		as = slices.Delete(as, i, i+1)
	}
	if len(as) == 0 {
		delete(r.byPort, k)
	} else {
		r.byPort[k] = as
	}
}

// addString registers "host:port" of network proto, resolving a host
// name (a dial target such as localhost:5555). It returns the removers.
func (r *selfSockets) addString(ctx context.Context, proto, hostport string) ([]func(), error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return []func(){r.add(proto, ap)}, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := net.LookupPort(proto, port)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var rm []func()
	for _, a := range addrs {
		rm = append(rm, r.add(proto, netip.AddrPortFrom(a, uint16(p))))
	}
	return rm, nil
}

// IsSelf reports whether a connection to dst (proto "tcp" or "udp") would
// reach a socket registered here: one bound to dst's address, or bound to
// the unspecified address when dst is one of this host's addresses
// (loopback, unspecified, or an address of an interface: the kernel
// decides, see kernelLocal). It is stack.Config.IsSelf: fast for ports
// corral does not use (one map lookup), one socket call otherwise.
func (r *selfSockets) IsSelf(proto string, dst netip.AddrPort) bool {
	d := dst.Addr().Unmap().WithZone("")
	exact, wildcard := false, false
	r.mu.RLock()
	for _, a := range r.byPort[selfPort{proto, dst.Port()}] {
		switch {
		case a.addr == d:
			exact = true
		case a.addr.IsUnspecified():
			// A wildcard bind on either family: a dual-stack [::]
			// socket takes IPv4 too, so both count.
			wildcard = true
		}
	}
	r.mu.RUnlock()
	if exact {
		return true
	}
	return wildcard && (d.IsUnspecified() || d.IsLoopback() || r.isLocal(d))
}

// kernelLocal reports whether a is an address of this host, as the kernel
// sees it at this moment (interfaces come and go): binding a UDP socket to
// it succeeds only then. On any error but "not available" it answers yes,
// so that a failure refuses a flow rather than letting it reach corral.
func kernelLocal(a netip.Addr) bool {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err == nil {
		c.Close()
		return true
	}
	return !errors.Is(err, syscall.EADDRNOTAVAIL)
}

// entries lists the registrations as "proto addr:port", sorted (logs and
// tests).
func (r *selfSockets) entries() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for k, as := range r.byPort {
		for _, a := range as {
			out = append(out, k.proto+" "+netip.AddrPortFrom(a.addr, k.port).String())
		}
	}
	slices.Sort(out)
	return out
}
