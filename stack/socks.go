package stack

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/corralnet/corral/stack/socks"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// The SOCKS5 endpoint of a fence (Config.Socks): a host socket served by
// package socks, whose dialers open connections from the gateway's
// address through the fence's stack, so host tools reach any guest of the
// fence, and nothing else.

// startSocks listens on Config.Socks and serves SOCKS5 until Close.
func (g *Gateway) startSocks() error {
	ln, err := net.Listen("tcp", g.cfg.Socks.String())
	if err != nil {
		return fmt.Errorf("socks listen %v: %w", g.cfg.Socks, err)
	}
	g.socksAddr = ln.Addr().(*net.TCPAddr).AddrPort()
	g.socks = socks.New(socks.Config{
		Dial:     g.dialFenceTCP,
		DialUDP:  g.dialFenceUDP,
		Resolve:  g.dnsSrv.LookupNetIP,
		MaxConns: g.cfg.SocksMaxConns,
		Reserve:  g.cfg.Reserve,
		Logger:   g.log.With("socks", g.socksAddr.String()),
	})
	g.closers = append(g.closers, g.socks.Close)
	g.goOwned(func() { g.socks.Serve(ln) })
	if g.socksAddr.Addr().IsLoopback() {
		g.log.Info("socks5 endpoint listening", "addr", g.socksAddr)
	} else {
		g.log.Warn("socks5 endpoint listening on a non-loopback address: anyone who can reach it reaches every guest of the fence", "addr", g.socksAddr)
	}
	return nil
}

// SocksAddr returns the address of the fence's SOCKS5 endpoint, or the
// zero AddrPort when it has none.
func (g *Gateway) SocksAddr() netip.AddrPort { return g.socksAddr }

// inFence reports whether a SOCKS client may reach a: a guest address of
// the fence's subnet or IPv6 prefix, not the subnet's network or
// broadcast address and not one of the gateway's own addresses (which
// stand for the host, or are its services).
func (g *Gateway) inFence(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.Zone() != "", a.IsMulticast(), a == g.gwIP, a == g.dnsIP:
		return false
	case a.Is4():
		return g.cfg.Subnet.Contains(a) && a != g.cfg.Subnet.Addr() && a != lastAddr(g.cfg.Subnet)
	}
	return !g.cfg.NoIPv6 && g.cfg.IPv6Prefix.Contains(a) && a != g.gw6 && a != g.dns6 && a != g.cfg.IPv6Prefix.Addr()
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	return hostAddr(p, uint32(1)<<(32-p.Bits())-1)
}

// fenceAddr converts a destination in the fence for the stack.
func fenceAddr(dst netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := dst.Addr().Unmap()
	if a.Is4() {
		return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.As4()), Port: dst.Port()}, ipv4.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(a.As16()), Port: dst.Port()}, ipv6.ProtocolNumber
}

// dialFenceTCP connects to a guest of the fence through the stack.
func (g *Gateway) dialFenceTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if !g.inFence(dst.Addr()) || dst.Port() == 0 {
		return nil, fmt.Errorf("%v: %w", dst, socks.ErrRefused)
	}
	to, proto := fenceAddr(dst)
	c, err := gonet.DialContextTCP(ctx, g.s, to, proto)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dialFenceUDP returns a UDP socket of the stack connected to a guest.
func (g *Gateway) dialFenceUDP(_ context.Context, dst netip.AddrPort) (net.Conn, error) {
	if !g.inFence(dst.Addr()) || dst.Port() == 0 {
		return nil, fmt.Errorf("%v: %w", dst, socks.ErrRefused)
	}
	to, proto := fenceAddr(dst)
	c, err := gonet.DialUDP(g.s, nil, &to, proto)
	if err != nil {
		return nil, err
	}
	return c, nil
}
