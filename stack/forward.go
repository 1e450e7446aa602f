package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// Connections into the fence, for port forwards (package forward owns the
// host sockets and routes; the gateway is its forward.Dialer): DialTCP and
// DialUDP reach an address inside the fence from the gateway's address,
// count against the NAT's limits (MaxTCPConns, MaxUDPFlows, shared with
// the guests' outgoing flows) and close when the gateway closes.

// ErrLimit is wrapped by DialTCP and DialUDP when MaxTCPConns or
// MaxUDPFlows connections are open; the refusal is counted.
var ErrLimit = errors.New("stack: connection limit reached")

// Prefixes returns where the fence's guests are: its IPv4 subnet and,
// unless IPv6 is off, its IPv6 prefix.
func (g *Gateway) Prefixes() []netip.Prefix {
	if g.cfg.NoIPv6 {
		return []netip.Prefix{g.cfg.Subnet}
	}
	return []netip.Prefix{g.cfg.Subnet, g.cfg.IPv6Prefix}
}

// fenceAddr converts an address inside the fence for the stack, with its
// network protocol.
func (g *Gateway) fenceAddr(t netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	a := t.Addr().Unmap()
	switch {
	case !t.IsValid() || t.Port() == 0:
		return tcpip.FullAddress{}, 0, fmt.Errorf("%w: dial %v: want address:port", ErrInvalidConfig, t)
	case a.Is4():
		return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.As4()), Port: t.Port()}, ipv4.ProtocolNumber, nil
	case g.cfg.NoIPv6:
		return tcpip.FullAddress{}, 0, fmt.Errorf("%w: dial %v: IPv6 is off", ErrInvalidConfig, t)
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(a.As16()), Port: t.Port()}, ipv6.ProtocolNumber, nil
}

// DialTCP connects to addr inside the fence, from the gateway's address,
// as a port forward does (it implements forward.Dialer). The connection
// counts against MaxTCPConns until it is closed (beyond it DialTCP fails
// with ErrLimit and counts the refusal in Stats.TCPRefused); it supports
// CloseWrite and CloseRead; the gateway's Close closes it, and cancels a
// dial in progress.
func (g *Gateway) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	to, proto, err := g.fenceAddr(addr)
	if err != nil {
		return nil, err
	}
	if g.nat.tcpConns.Add(1) > int64(g.cfg.MaxTCPConns) {
		g.nat.tcpConns.Add(-1)
		g.nat.tcpRefused.Add(1)
		return nil, fmt.Errorf("dial %v: %w (max_tcp_conns %d)", addr, ErrLimit, g.cfg.MaxTCPConns)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(g.ctx, cancel)()
	gc, err := gonet.DialContextTCP(ctx, g.s, to, proto)
	if err != nil {
		g.nat.tcpConns.Add(-1)
		if g.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("dial %v: %w", addr, err)
	}
	c := &fenceTCPConn{TCPConn: gc, g: g}
	if !g.nat.track(c) {
		gc.Close()
		g.nat.tcpConns.Add(-1)
		return nil, ErrClosed
	}
	return c, nil
}

// DialUDP opens a UDP flow to addr inside the fence, from the gateway's
// address (it implements forward.Dialer): Write sends a datagram, Read
// returns one from addr. The flow counts against MaxUDPFlows until it is
// closed (beyond it DialUDP fails with ErrLimit and counts the refusal in
// Stats.UDPRefused); the gateway's Close closes it.
func (g *Gateway) DialUDP(addr netip.AddrPort) (net.Conn, error) {
	to, proto, err := g.fenceAddr(addr)
	if err != nil {
		return nil, err
	}
	if g.nat.udpFlows.Add(1) > int64(g.cfg.MaxUDPFlows) {
		g.nat.udpFlows.Add(-1)
		g.nat.udpRefused.Add(1)
		return nil, fmt.Errorf("dial udp %v: %w (max_udp_flows %d)", addr, ErrLimit, g.cfg.MaxUDPFlows)
	}
	gc, err := gonet.DialUDP(g.s, nil, &to, proto)
	if err != nil {
		g.nat.udpFlows.Add(-1)
		return nil, fmt.Errorf("dial udp %v: %w", addr, err)
	}
	c := &fenceUDPConn{UDPConn: gc, g: g}
	if !g.nat.track(c) {
		gc.Close()
		g.nat.udpFlows.Add(-1)
		return nil, ErrClosed
	}
	return c, nil
}

// fenceTCPConn is a connection DialTCP returned: closing it releases its
// place under MaxTCPConns, once.
type fenceTCPConn struct {
	*gonet.TCPConn
	g    *Gateway
	once sync.Once
}

// Close implements net.Conn.
func (c *fenceTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(func() {
		c.g.nat.untrack(c)
		c.g.nat.tcpConns.Add(-1)
	})
	return err
}

// fenceUDPConn is a flow DialUDP returned: closing it releases its place
// under MaxUDPFlows, once.
type fenceUDPConn struct {
	*gonet.UDPConn
	g    *Gateway
	once sync.Once
}

// Close implements net.Conn.
func (c *fenceUDPConn) Close() error {
	err := c.UDPConn.Close()
	c.once.Do(func() {
		c.g.nat.untrack(c)
		c.g.nat.udpFlows.Add(-1)
	})
	return err
}
