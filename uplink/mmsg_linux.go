package uplink

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgRecv receives UDP datagrams with recvmmsg into the caller's buffers
// and decodes their source addresses without allocating (x/net's
// ReadBatch allocates a *net.UDPAddr per datagram). Owned by the
// receiving goroutine.
type mmsgRecv struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iov   []unix.Iovec
	names []unix.RawSockaddrAny
	n     int                   // messages staged, then received
	err   error                 // receive error
	fn    func(fd uintptr) bool // m.recvmmsg, bound once

	scope uint32 // the last IPv6 scope ID seen, and its zone (interface name)
	zone  string
}

// read receives up to len(bufs) datagrams, datagram k into bufs[k] and its
// control messages into oobs[k] (oobs nil: none); it returns how many, and
// blocks until at least one arrives.
func (m *mmsgRecv) read(rc syscall.RawConn, bufs, oobs [][]byte) (int, error) {
	nb := min(len(bufs), maxRawBatch)
	if nb == 0 {
		return 0, nil
	}
	if m.fn == nil {
		m.rc = rc
		m.fn = m.recvmmsg
	}
	if len(m.hdrs) < nb {
		m.hdrs = make([]mmsghdr, nb)
		m.iov = make([]unix.Iovec, nb)
		m.names = make([]unix.RawSockaddrAny, nb)
	}
	hdrs := m.hdrs[:nb]
	setMsgs(hdrs, m.iov[:nb], func(i int) []byte { return bufs[i] })
	defer clearMsgs(hdrs, m.iov[:nb])
	for i := range hdrs {
		hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
		if oobs != nil {
			hdrs[i].hdr.Control = unsafe.SliceData(oobs[i])
			hdrs[i].hdr.SetControllen(len(oobs[i]))
		}
	}
	defer func() {
		for i := range hdrs {
			hdrs[i].hdr.Name, hdrs[i].hdr.Control = nil, nil
		}
	}()
	m.n, m.err = nb, nil
	if err := m.rc.Read(m.fn); err != nil {
		return 0, normErr(err)
	}
	if m.err != nil {
		return 0, m.err
	}
	return m.n, nil
}

// recvmmsg is rc.Read's callback.
func (m *mmsgRecv) recvmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.n),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.n = int(r)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait for readiness
		default:
			m.n, m.err = 0, e
			return true
		}
	}
}

// size is the length of datagram i of the last read.
func (m *mmsgRecv) size(i int) int { return int(m.hdrs[i].n) }

// oobLen is the length of the control messages of datagram i.
func (m *mmsgRecv) oobLen(i int) int { return int(m.hdrs[i].hdr.Controllen) }

// from is the source of datagram i of the last read, IPv4-mapped
// addresses unmapped; zero if it is not an IP address.
func (m *mmsgRecv) from(i int) netip.AddrPort {
	sa := &m.names[i]
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		a := netip.AddrFrom16(p.Addr).Unmap()
		if p.Scope_id != 0 && a.Is6() {
			a = a.WithZone(m.zoneOf(p.Scope_id))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// zoneOf returns the zone of an IPv6 scope ID as net.UDPAddr names it (the
// interface name, else the number), cached for the last ID seen.
func (m *mmsgRecv) zoneOf(id uint32) string {
	if id != m.scope || m.zone == "" {
		m.scope, m.zone = id, strconv.FormatUint(uint64(id), 10)
		if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
			m.zone = ifi.Name
		}
	}
	return m.zone
}

// recvPlain reads one datagram per buffer (no UDP_GRO).
func (t *udpTransport) recvPlain(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	if t.mr.fn == nil {
		rc, err := t.conn.SyscallConn()
		if err != nil {
			return 0, normErr(err)
		}
		t.mr.rc = rc
	}
	n, err := t.mr.read(t.mr.rc, bufs[:min(len(bufs), len(sizes), len(from))], nil)
	if err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		sizes[i] = t.mr.size(i)
		from[i] = t.mr.from(i)
	}
	return n, nil
}
