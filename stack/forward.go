package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// forwardKey identifies a forward by what it binds on the host.
type forwardKey struct {
	proto  string
	listen netip.AddrPort
}

type forwardEntry struct {
	f      Forward
	closer func() // stops the listener and its connections, waits
}

type forwardTable struct {
	mu     sync.Mutex
	closed bool
	m      map[forwardKey]*forwardEntry
}

func (t *forwardTable) closeAll() {
	t.mu.Lock()
	t.closed = true
	m := t.m
	t.m = nil
	t.mu.Unlock()
	for _, e := range m {
		e.closer()
	}
}

// Forwards returns the active port forwards, sorted.
func (g *Gateway) Forwards() []Forward {
	g.fwd.mu.Lock()
	defer g.fwd.mu.Unlock()
	out := make([]Forward, 0, len(g.fwd.m))
	for _, e := range g.fwd.m {
		out = append(out, e.f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// AddForward starts a port forward: it listens on f.Listen on the host and
// relays every connection (TCP) or datagram flow (UDP) to f.Target inside
// the fence, from the gateway's address. A forward whose Listen port is 0
// is given a free port; Forwards reports it.
func (g *Gateway) AddForward(f Forward) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Target.Addr().Unmap().Is6() && g.cfg.NoIPv6 {
		return fmt.Errorf("%w: forward target %v: IPv6 is off", ErrInvalidConfig, f.Target)
	}
	g.fwd.mu.Lock()
	defer g.fwd.mu.Unlock()
	if g.fwd.closed {
		return ErrClosed
	}
	if g.fwd.m == nil {
		g.fwd.m = make(map[forwardKey]*forwardEntry)
	}
	if f.Listen.Port() != 0 {
		if _, ok := g.fwd.m[forwardKey{f.Proto, f.Listen}]; ok {
			return fmt.Errorf("%w: %v", ErrForwardExists, f)
		}
	}
	var (
		e   *forwardEntry
		err error
	)
	switch f.Proto {
	case "tcp":
		e, err = g.startTCPForward(f)
	default:
		e, err = g.startUDPForward(f)
	}
	if err != nil {
		return fmt.Errorf("forward %v: %w", f, err)
	}
	g.fwd.m[forwardKey{e.f.Proto, e.f.Listen}] = e
	g.log.Info("port forward added", "forward", e.f.String())
	return nil
}

// RemoveForward stops the forward listening on f.Proto and f.Listen and
// closes its connections (Target is ignored).
func (g *Gateway) RemoveForward(f Forward) error {
	g.fwd.mu.Lock()
	e, ok := g.fwd.m[forwardKey{f.Proto, f.Listen}]
	if ok {
		delete(g.fwd.m, forwardKey{f.Proto, f.Listen})
	}
	g.fwd.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %v", ErrForwardNotFound, f)
	}
	e.closer()
	g.log.Info("port forward removed", "forward", e.f.String())
	return nil
}

// targetAddr converts a forward's target for the stack, with its network
// protocol.
func (g *Gateway) targetAddr(t netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := t.Addr().Unmap()
	if a.Is4() {
		return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.As4()), Port: t.Port()}, ipv4.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(a.As16()), Port: t.Port()}, ipv6.ProtocolNumber
}

func (g *Gateway) startTCPForward(f Forward) (*forwardEntry, error) {
	ln, err := net.Listen("tcp", f.Listen.String())
	if err != nil {
		return nil, err
	}
	f.Listen = ln.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithCancel(g.ctx)
	var n natState // connections of this forward, closed with it
	n.g = g
	n.open = make(map[io.Closer]struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if g.nat.tcpConns.Add(1) > int64(g.cfg.MaxTCPConns) {
				g.nat.tcpConns.Add(-1)
				g.nat.tcpRefused.Add(1)
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer g.nat.tcpConns.Add(-1)
				dctx, dcancel := context.WithTimeout(ctx, tcpDialTimeout)
				to, proto := g.targetAddr(f.Target)
				gc, err := gonet.DialContextTCP(dctx, g.s, to, proto)
				dcancel()
				if err != nil {
					g.log.Debug("port forward dial", "forward", f.String(), "err", err)
					c.Close()
					return
				}
				n.splice(c, gc)
			}()
		}
	}()
	return &forwardEntry{f: f, closer: func() {
		cancel()
		ln.Close()
		n.closeAll()
		wg.Wait()
	}}, nil
}

func (g *Gateway) startUDPForward(f Forward) (*forwardEntry, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(f.Listen))
	if err != nil {
		return nil, err
	}
	f.Listen = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var n natState
	n.g = g
	n.open = make(map[io.Closer]struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	flows := make(map[netip.AddrPort]*gonet.UDPConn)
	target, proto := g.targetAddr(f.Target)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, udpBufSize)
		for {
			nr, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			mu.Lock()
			gc, ok := flows[from]
			mu.Unlock()
			if !ok {
				if g.nat.udpFlows.Add(1) > int64(g.cfg.MaxUDPFlows) {
					g.nat.udpFlows.Add(-1)
					g.nat.udpRefused.Add(1)
					continue
				}
				gc, err = gonet.DialUDP(g.s, nil, &target, proto)
				if err != nil {
					g.nat.udpFlows.Add(-1)
					g.nat.udpRefused.Add(1)
					continue
				}
				if !n.track(gc) {
					gc.Close()
					g.nat.udpFlows.Add(-1)
					return
				}
				mu.Lock()
				flows[from] = gc
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer g.nat.udpFlows.Add(-1)
					rb := make([]byte, udpBufSize)
					for {
						gc.SetReadDeadline(time.Now().Add(g.cfg.UDPIdleTimeout))
						m, err := gc.Read(rb)
						if err != nil {
							break
						}
						pc.WriteToUDPAddrPort(rb[:m], from)
					}
					mu.Lock()
					delete(flows, from)
					mu.Unlock()
					n.untrack(gc)
					gc.Close()
				}()
			}
			gc.Write(buf[:nr])
		}
	}()
	return &forwardEntry{f: f, closer: func() {
		pc.Close()
		n.closeAll()
		wg.Wait()
	}}, nil
}
