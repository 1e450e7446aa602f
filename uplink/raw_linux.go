package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawTransport is the raw uplink: an AF_PACKET SOCK_RAW socket bound to one
// interface and the fence EtherType. Frames are whole Ethernet frames.
type rawTransport struct {
	f   *os.File
	rc  syscall.RawConn
	mtu int // interface MTU
	ctr *counters
	smu sync.Mutex // serializes sends (dst rewrites happen in the caller's frame)
}

// htons converts a 16-bit value to network byte order for AF_PACKET.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openRaw(name string, etherType uint16, self [6]byte, ctr *counters) (*rawTransport, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("uplink: raw interface %q: %w", name, err)
	}
	proto := int(htons(etherType))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("uplink: raw uplink on %q needs CAP_NET_RAW (run as root, or setcap cap_net_raw+ep on the binary, or use the UDP uplink): %w", name, err)
		}
		return nil, fmt.Errorf("uplink: raw socket: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uplink: bind raw socket to %q: %w", name, err)
	}
	// Let unicast frames to our outer MAC through the NIC's filter.
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_UNICAST, Alen: 6}
	copy(mr.Address[:], self[:])
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uplink: add outer MAC to %q's filter: %w", name, err)
	}
	// Do not see frames this host sends (kernel 4.20+); our own outer MAC
	// is dropped on receive anyway.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufSize) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufSize)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufSize) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufSize)
	}
	f := os.NewFile(uintptr(fd), "packet:"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uplink: raw socket: %w", err)
	}
	return &rawTransport{f: f, rc: rc, mtu: ifi.MTU, ctr: ctr}, nil
}

func (t *rawTransport) recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n := 0
	var rerr error
	err := t.rc.Read(func(fd uintptr) bool {
		for n < len(bufs) {
			m, err := unix.Read(int(fd), bufs[n])
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					return n > 0 // wait for readiness only while empty
				}
				if n == 0 {
					rerr = err
				}
				return true
			}
			sizes[n] = m
			from[n] = netip.AddrPort{}
			n++
		}
		return true
	})
	if err != nil {
		return 0, normErr(err)
	}
	if n == 0 && rerr != nil {
		return 0, fmt.Errorf("uplink: raw read: %w", rerr)
	}
	return n, nil
}

func (t *rawTransport) send(items []outItem) error {
	t.smu.Lock()
	defer t.smu.Unlock()
	for i := range items {
		fr := items[i].frame
		copy(fr[0:6], items[i].dst[:])
		var werr error
		err := t.rc.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), fr)
			return werr != unix.EAGAIN
		})
		if err != nil {
			return normErr(err)
		}
		if werr != nil {
			t.ctr.add(ctrTxErrors, 1)
			continue
		}
		t.ctr.add(ctrTxDatagrams, 1)
	}
	return nil
}

func (t *rawTransport) close() error { return t.f.Close() }
