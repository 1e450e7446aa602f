package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// outItem is one datagram or raw frame to send.
type outItem struct {
	frame []byte
	dst   [6]byte        // outer destination MAC (raw uplink)
	ua    *net.UDPAddr   // destination (UDP uplink)
	ap    netip.AddrPort // ua as a comparable value (groups GSO sends)
}

// transport is the network side of an Uplink.
type transport interface {
	// recv blocks until at least one outer frame arrives and reads up to
	// len(bufs): frame k into bufs[k] (from its start), its length to
	// sizes[k] and its source to from[k] (zero on the raw uplink).
	recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error)
	// send sends items; per-item failures are counted, not returned. It
	// returns an error only when the transport is closed.
	send(items []outItem) error
	close() error
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common
// (ipv4.Message and ipv6.Message are the same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpTransport is the UDP uplink: one socket, recvmmsg/sendmmsg batches.
type udpTransport struct {
	conn  *net.UDPConn
	bc    batchConn
	v6    bool // the socket is AF_INET6 (possibly dual-stack)
	local netip.AddrPort
	ctr   *counters

	rmsgs []ipv4.Message // owned by the receiving goroutine
	mr    mmsgRecv       // recvmmsg state (Linux), owned by the receiving goroutine
	gro   *gro           // nil: no UDP_GRO; owned by the receiving goroutine
	gso   atomic.Bool    // UDP GSO is on

	smu     sync.Mutex // guards the send state below
	smsgs   []ipv4.Message
	sbufs   [][]byte
	soob    [][]byte       // GSO control messages
	sfirst  []int          // index in items of each message's first datagram
	reorder []outItem      // scratch of reorderFragments
	pmsgs   []ipv4.Message // sendPlain's messages
	pbufs   [][]byte
}

func listenUDP(cfg *Config, batch int, offload bool, ctr *counters) (*udpTransport, error) {
	la := cfg.UDPListen
	network := "udp4"
	if !la.Addr().Is4() {
		network = "udp6"
		if la.Addr().IsUnspecified() {
			network = "udp" // dual stack
		}
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(la))
	if err != nil {
		return nil, fmt.Errorf("uplink: listen UDP %v: %w", la, err)
	}
	setBuffers(conn, socketBufSize)
	t := &udpTransport{conn: conn, v6: !la.Addr().Is4(), ctr: ctr}
	t.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if t.v6 {
		t.bc = ipv6.NewPacketConn(conn)
	} else {
		t.bc = ipv4.NewPacketConn(conn)
	}
	if cfg.Group.IsValid() {
		if err := t.join(cfg.Group.Addr()); err != nil {
			conn.Close()
			return nil, fmt.Errorf("uplink: join group %v: %w", cfg.Group, err)
		}
	}
	if offload {
		t.enableOffload()
	}
	t.rmsgs = make([]ipv4.Message, batch)
	for i := range t.rmsgs {
		t.rmsgs[i].Buffers = make([][]byte, 1)
	}
	return t, nil
}

// join joins the multicast group on the default interface, or, failing
// that, on every up multicast interface.
func (t *udpTransport) join(g netip.Addr) error {
	ga := &net.UDPAddr{IP: g.AsSlice()}
	// joinOn joins on ifi (nil: the kernel's choice); with an interface
	// named, it also becomes the interface group sends leave by.
	joinOn := func(ifi *net.Interface) error {
		if g.Is4() {
			p := ipv4.NewPacketConn(t.conn)
			if err := p.SetMulticastTTL(8); err != nil {
				return err
			}
			if err := p.JoinGroup(ifi, ga); err != nil {
				return err
			}
			if ifi != nil {
				return p.SetMulticastInterface(ifi)
			}
			return nil
		}
		p := ipv6.NewPacketConn(t.conn)
		if err := p.SetMulticastHopLimit(8); err != nil {
			return err
		}
		if err := p.JoinGroup(ifi, ga); err != nil {
			return err
		}
		if ifi != nil {
			return p.SetMulticastInterface(ifi)
		}
		return nil
	}
	if err := joinOn(nil); err == nil {
		return nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	var firstErr error
	joined := 0
	for i := range ifs {
		if ifs[i].Flags&net.FlagUp == 0 || ifs[i].Flags&net.FlagMulticast == 0 || joined > 0 && ifs[i].Flags&net.FlagLoopback != 0 {
			continue
		}
		if err := joinOn(&ifs[i]); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		joined++
	}
	if joined == 0 {
		if firstErr == nil {
			firstErr = errors.New("no multicast interface")
		}
		return firstErr
	}
	return nil
}

// udpAddr converts ap to the socket's family, for sends.
func (t *udpTransport) udpAddr(ap netip.AddrPort) *net.UDPAddr {
	a := ap.Addr()
	if t.v6 && a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, ap.Port()))
}

func (t *udpTransport) recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	if t.gro != nil {
		return t.recvGRO(bufs, sizes, from)
	}
	return t.recvPlain(bufs, sizes, from)
}

func (t *udpTransport) send(items []outItem) error {
	if len(items) == 0 {
		return nil
	}
	t.smu.Lock()
	defer t.smu.Unlock()
	if t.gso.Load() && len(items) > 1 {
		return t.sendGSO(items)
	}
	return t.sendPlain(items)
}

// sendPlain sends one datagram per item (t.smu held).
func (t *udpTransport) sendPlain(items []outItem) error {
	if cap(t.pmsgs) < len(items) {
		t.pmsgs = make([]ipv4.Message, len(items))
		t.pbufs = make([][]byte, len(items))
	}
	ms := t.pmsgs[:len(items)]
	for i := range items {
		t.pbufs[i] = items[i].frame
		ms[i].Buffers = t.pbufs[i : i+1 : i+1]
		ms[i].Addr = items[i].ua
		ms[i].OOB = nil
	}
	for k := 0; k < len(ms); {
		n, err := t.bc.WriteBatch(ms[k:], 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			// One datagram failed (no route, message too long …): count
			// it and go on with the next.
			t.ctr.add(ctrTxErrors, 1)
			n++
		} else {
			t.ctr.add(ctrTxDatagrams, uint64(n))
		}
		k += n
	}
	for i := range items {
		t.pbufs[i] = nil
		ms[i].Buffers = nil
		ms[i].Addr = nil
	}
	return nil
}

func (t *udpTransport) close() error { return t.conn.Close() }

// socketBufSize is the receive and send buffer size asked for.
const socketBufSize = 4 << 20

// normErr maps closed-socket errors to net.ErrClosed.
func normErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}
