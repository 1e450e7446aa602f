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
			if host == "host" || host == "gateway" {
				// Like gvproxy's host.containers.internal: the host's
				// loopback, through the gateway's address.
				return g.gwIP, true
			}
			return srv.Lookup(host, time.Now())
		},
		Lookup6: func(host string) (netip.Addr, bool) {
			if (host == "host" || host == "gateway") && g.gw6.IsValid() {
				return g.gw6, true
			}
			return netip.Addr{}, false
		},
		Logger: g.log,
	})
	dnsAddr := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(g.dnsIP.As4()), Port: 53}
	pc, err := gonet.DialUDP(g.s, &dnsAddr, nil, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("dns bind udp %v:53: %w", g.dnsIP, err)
	}
	g.closers = append(g.closers, pc.Close)
	ln, err := gonet.ListenTCP(g.s, dnsAddr, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("dns listen tcp %v:53: %w", g.dnsIP, err)
	}
	g.closers = append(g.closers, ln.Close)
	g.goOwned(func() { d.ServePacket(pc) })
	g.goOwned(func() { d.ServeListener(ln) })
	g.dnsSrv = d

	if g.cfg.NoIPv6 {
		return nil
	}
	dns6 := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(g.dns6.As16()), Port: 53}
	pc6, err := gonet.DialUDP(g.s, &dns6, nil, ipv6.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("dns bind udp [%v]:53: %w", g.dns6, err)
	}
	g.closers = append(g.closers, pc6.Close)
	ln6, err := gonet.ListenTCP(g.s, dns6, ipv6.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("dns listen tcp [%v]:53: %w", g.dns6, err)
	}
	g.closers = append(g.closers, ln6.Close)
	g.goOwned(func() { d.ServePacket(pc6) })
	g.goOwned(func() { d.ServeListener(ln6) })
	g.goOwned(g.raLoop)
	return nil
}

// Leases returns the DHCP leases of the fence.
func (g *Gateway) Leases() []dhcp.Lease { return g.dhcp.srv.Leases() }
