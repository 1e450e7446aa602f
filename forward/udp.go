package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpBufSize is a UDP datagram buffer: the largest datagram.
const udpBufSize = 65535

// udpListener is one host UDP socket: a UDP forward. Each host source
// address is a flow with its own connection into the fence (the fence's
// Dialer counts it against its limit), ended after the fence's
// UDPIdleTimeout without traffic either way.
type udpListener struct {
	f     *Forwarder
	r     udpRoute
	pc    *net.UDPConn
	conns connSet // the flows' fence connections
	// release ends the socket's Config.Reserve registration.
	release func()
	wg      sync.WaitGroup

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow // guarded by mu
}

// udpRoute is the forward of a UDP listener.
type udpRoute struct {
	f     Forward // as bound
	fence *fence
}

type udpFlow struct {
	c    net.Conn       // into the fence
	from netip.AddrPort // host source
	last atomic.Int64   // unix nanoseconds of the last datagram either way
}

func (fl *udpFlow) touch() { fl.last.Store(time.Now().UnixNano()) }

func (fl *udpFlow) idleFor() time.Duration { return time.Since(time.Unix(0, fl.last.Load())) }

// addUDPLocked binds fw's listen address for fw: a UDP address takes one
// forward.
func (f *Forwarder) addUDPLocked(fe *fence, fw Forward) (Forward, error) {
	if l := f.udp[fw.Listen]; l != nil && fw.Listen.Port() != 0 {
		return fw, conflict(fw.Route(), l.r.fence, fe.id)
	}
	release := f.reserve(UDP, fw.Listen)
	pc, err := net.ListenUDP(network(UDP, fw.Listen), net.UDPAddrFromAddrPort(fw.Listen))
	if err != nil {
		release()
		return fw, fmt.Errorf("forward %v: %w", fw, err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	port0 := fw.Listen.Port() == 0
	fw.Listen = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	if port0 {
		release = f.reserve(UDP, fw.Listen)
	}
	l := &udpListener{f: f, r: udpRoute{f: fw, fence: fe}, pc: pc, flows: map[netip.AddrPort]*udpFlow{}, release: release}
	f.udp[fw.Listen] = l
	l.wg.Add(1)
	go l.readLoop()
	return fw, nil
}

// removeUDPLocked forgets l and returns what closes it, to call without
// f.mu.
func (f *Forwarder) removeUDPLocked(l *udpListener) func() {
	delete(f.udp, l.r.f.Listen)
	f.nroutes--
	return func() {
		l.pc.Close()
		l.conns.closeAll()
		l.wg.Wait()
		l.release()
	}
}

// readLoop relays host datagrams into the fence, starting a flow per new
// source.
func (l *udpListener) readLoop() {
	defer l.wg.Done()
	f := l.f
	buf := make([]byte, udpBufSize)
	for {
		n, from, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if isClosedErr(err) {
				return
			}
			continue // e.g. a too-long datagram: the socket is still open
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		l.mu.Lock()
		fl := l.flows[from]
		l.mu.Unlock()
		if fl == nil {
			c, err := l.r.fence.Dialer.DialUDP(l.r.f.Target)
			if err != nil {
				f.dialErrors.Add(1)
				f.logLimited("port forward dial failed, datagram dropped", "fence", l.r.fence.Name, "forward", l.r.f.String(), "err", err)
				continue
			}
			if !l.conns.enter(&l.wg, c) {
				c.Close()
				return
			}
			fl = &udpFlow{c: c, from: from}
			fl.touch()
			l.mu.Lock()
			l.flows[from] = fl
			l.mu.Unlock()
			f.udpFlows.Add(1)
			go l.replies(fl)
		}
		fl.touch()
		fl.c.Write(buf[:n]) // an error means the flow is ending: the datagram is lost, as UDP may
	}
}

// replies relays a flow's datagrams from the fence to the host source
// until the flow has been idle for the fence's UDPIdleTimeout or closes.
func (l *udpListener) replies(fl *udpFlow) {
	defer l.wg.Done()
	idle := l.r.fence.UDPIdleTimeout
	rb := make([]byte, udpBufSize)
	for {
		fl.c.SetReadDeadline(time.Now().Add(idle))
		n, err := fl.c.Read(rb)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && fl.idleFor() < idle {
				continue // the host side was active
			}
			break
		}
		fl.touch()
		l.pc.WriteToUDPAddrPort(rb[:n], fl.from)
	}
	l.mu.Lock()
	if l.flows[fl.from] == fl {
		delete(l.flows, fl.from)
	}
	l.mu.Unlock()
	l.conns.remove(fl.c)
	fl.c.Close()
	l.f.udpFlows.Add(-1)
}
