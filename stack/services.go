package stack

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/corralnet/corral/stack/dhcp"
	"github.com/corralnet/corral/stack/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

type dhcpService struct {
	srv *dhcp.Server
}

// leaseFile returns the lease file of the fence, "" without a StateDir.
func (g *Gateway) leaseFile() string {
	if g.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(g.cfg.StateDir, "leases-"+strconv.FormatUint(uint64(g.cfg.Fence), 10)+".json")
}

// startServices starts DHCP on :67 and DNS on .3:53 (UDP and TCP) inside
// the stack.
func (g *Gateway) startServices() error {
	srv, err := dhcp.NewServer(dhcp.Config{
		Subnet:    g.cfg.Subnet,
		ServerID:  g.gwIP,
		Router:    g.gwIP,
		DNS:       g.dnsIP,
		First:     hostAddr(g.cfg.Subnet, dhcpFirstHost),
		LeaseTime: g.cfg.LeaseTime,
		MTU:       g.cfg.MTU,
		Domain:    g.cfg.Domain,
		StateFile: g.leaseFile(),
		Logger:    g.log,
		OnLease:   g.cfg.OnLease,
	})
	if err != nil {
		return err
	}
	g.dhcp = &dhcpService{srv: srv}

	// DHCP: bound to any address so broadcasts reach it, broadcast on so
	// replies can go to 255.255.255.255.
	var wq waiter.Queue
	ep, terr := g.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return fmt.Errorf("dhcp endpoint: %v", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(tcpip.FullAddress{NIC: nicID, Port: 67}); terr != nil {
		ep.Close()
		return fmt.Errorf("dhcp bind :67: %v", terr)
	}
	dhcpConn := gonet.NewUDPConn(&wq, ep)
	g.closers = append(g.closers, dhcpConn.Close)
	g.goOwned(func() { srv.Serve(dhcpConn) })

	resolvers := g.cfg.Resolvers
	if len(resolvers) == 0 {
		resolvers, err = dns.ResolvConf("/etc/resolv.conf")
		if err != nil {
			g.log.Warn("dns: no upstream resolvers", "err", err)
		}
	}
	d, err := dns.New(dns.Config{
		Domain:    g.cfg.Domain,
		Resolvers: resolvers,
		Lookup:    g.dnsLookup,
		Reverse:   g.dnsReverse,
		Aliases:   hostAliases,
		Records:   g.cfg.DNSRecords,
		Logger:    g.log,
	})
	if err != nil {
		return err
	}
	if err := g.serveDNS(d, g.dnsIP, ipv4.ProtocolNumber); err != nil {
		return err
	}
	g.dnsSrv = d

	if g.cfg.NoIPv6 {
		return nil
	}
	if err := g.serveDNS(d, g.dns6, ipv6.ProtocolNumber); err != nil {
		return err
	}
	g.goOwned(g.raLoop)
	return nil
}

// hostAliases are the names other VM tools give the host and the gateway
// (gvproxy and podman: host.containers.internal; Docker Desktop:
// host.docker.internal; Lima: host.lima.internal), answered as the fence's
// own "host" and "gateway" so that guest images made for those tools work
// unchanged.
var hostAliases = map[string]string{
	"host.containers.internal":    "host",
	"host.docker.internal":        "host",
	"host.lima.internal":          "host",
	"gateway.containers.internal": "gateway",
	"gateway.docker.internal":     "gateway",
}

// dnsLookup answers the names the gateway defines under its domain, then
// the hostnames of DHCP leases:
//   - host: the gateway's address, which the NAT maps to the host's
//     loopback; AAAA (::2, mapped to ::1) only when the host has an IPv6
//     loopback, so a guest never prefers an IPv6 address that reaches
//     nothing;
//   - gateway: the gateway's own addresses (::2 whenever IPv6 is on);
//   - dns: the DNS server's addresses (.3, ::3).
//
// Leases have no AAAA: guests choose their SLAAC addresses themselves.
func (g *Gateway) dnsLookup(host string) (v4, v6 netip.Addr) {
	switch host {
	case "host":
		if g.cfg.NoHostLoopback {
			return netip.Addr{}, netip.Addr{} // 10.0.2.2 and ::2 reach nothing on the host
		}
		if g.hostIPv6Loopback {
			return g.gwIP, g.gw6
		}
		return g.gwIP, netip.Addr{}
	case "gateway":
		return g.gwIP, g.gw6
	case "dns":
		return g.dnsIP, g.dns6
	}
	ip, _ := g.dhcp.srv.Lookup(host, time.Now())
	return ip, netip.Addr{}
}

// dnsReverse names the fence's own addresses for PTR queries.
func (g *Gateway) dnsReverse(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	if !g.cfg.Subnet.Contains(ip) && (g.cfg.NoIPv6 || !g.cfg.IPv6Prefix.Contains(ip)) {
		return "", false
	}
	switch {
	case ip == g.gwIP || ip == g.gw6:
		return "gateway", true
	case ip == g.dnsIP || ip == g.dns6:
		return "dns", true
	}
	return g.dhcp.srv.Hostname(ip, time.Now()), true
}

// hasIPv6Loopback reports whether this host can listen on ::1: only then
// does the gateway's ::2 reach the host (nat.go maps it to ::1).
func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// serveDNS serves d over UDP and TCP on port 53 of ip, an address of the
// gateway's NIC (proto is its network protocol). The sockets close with
// the gateway.
func (g *Gateway) serveDNS(d *dns.Server, ip netip.Addr, proto tcpip.NetworkProtocolNumber) error {
	at := netip.AddrPortFrom(ip, 53)
	addr := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ip.AsSlice()), Port: 53}
	pc, err := gonet.DialUDP(g.s, &addr, nil, proto)
	if err != nil {
		return fmt.Errorf("dns bind udp %v: %w", at, err)
	}
	g.closers = append(g.closers, pc.Close)
	ln, err := gonet.ListenTCP(g.s, addr, proto)
	if err != nil {
		return fmt.Errorf("dns listen tcp %v: %w", at, err)
	}
	g.closers = append(g.closers, ln.Close)
	g.goOwned(func() { d.ServePacket(pc) })
	g.goOwned(func() { d.ServeListener(ln) })
	return nil
}

// Leases returns the DHCP leases of the fence.
func (g *Gateway) Leases() []dhcp.Lease { return g.dhcp.srv.Leases() }
