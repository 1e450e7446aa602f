package stack

import (
	"fmt"
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
	d := dns.New(dns.Config{
		Domain:    g.cfg.Domain,
		Resolvers: resolvers,
		Lookup: func(host string) (netip.Addr, bool) {
			if host == "host" && !g.cfg.NoHostLoopback || host == "gateway" {
				// Like gvproxy's host.containers.internal: the host's
				// loopback, through the gateway's address (only while
				// the gateway maps it to the host).
				return g.gwIP, true
			}
			return srv.Lookup(host, time.Now())
		},
		Lookup6: func(host string) (netip.Addr, bool) {
			if (host == "host" && !g.cfg.NoHostLoopback || host == "gateway") && g.gw6.IsValid() {
				return g.gw6, true
			}
			return netip.Addr{}, false
		},
		Logger: g.log,
	})
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
