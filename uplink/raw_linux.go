package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawTransport is the raw uplink: an AF_PACKET SOCK_RAW socket bound to one
// interface and the fence EtherType. Frames are whole Ethernet frames,
// received with recvmmsg and sent with sendmmsg: one system call per batch.
type rawTransport struct {
	f   *os.File
	rc  syscall.RawConn
	mtu int // interface MTU
	ctr *counters

	// Receive state, owned by the receiving goroutine (ReadTrunk holds
	// the Uplink's rx lock).
	rhdrs  []mmsghdr
	riov   []unix.Iovec
	rn     int                   // messages staged, then received
	rerr   error                 // receive error
	readFn func(fd uintptr) bool // t.recvmmsg, bound once: no allocation per call

	smu     sync.Mutex // serializes sends (dst rewrites happen in the caller's frame) and guards:
	shdrs   []mmsghdr
	siov    []unix.Iovec
	sk      int                   // messages sent of t.shdrs[:sn]
	sn      int                   // messages staged
	writeFn func(fd uintptr) bool // t.sendmmsg, bound once
}

// mmsghdr is the kernel's struct mmsghdr (x/sys/unix has no type for it):
// a msghdr, the length sent or received, padding to the word size.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// maxRawBatch bounds the frames of one sendmmsg (the kernel's UIO_MAXIOV).
const maxRawBatch = 1024

// setMsgs points hdrs[i] at frames[i] through iov[i] (one buffer each).
func setMsgs(hdrs []mmsghdr, iov []unix.Iovec, frames func(i int) []byte) {
	for i := range hdrs {
		b := frames(i)
		iov[i].Base = unsafe.SliceData(b)
		iov[i].SetLen(len(b))
		hdrs[i] = mmsghdr{}
		hdrs[i].hdr.Iov = &iov[i]
		hdrs[i].hdr.SetIovlen(1)
	}
}

// clearMsgs drops the references to the caller's buffers.
func clearMsgs(hdrs []mmsghdr, iov []unix.Iovec) {
	clear(iov)
	for i := range hdrs {
		hdrs[i].hdr.Iov = nil
	}
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
	t := &rawTransport{f: f, rc: rc, mtu: ifi.MTU, ctr: ctr}
	t.readFn, t.writeFn = t.recvmmsg, t.sendmmsg
	return t, nil
}

func (t *rawTransport) recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	nb := min(len(bufs), len(sizes), len(from), maxRawBatch)
	if nb == 0 {
		return 0, nil
	}
	if len(t.rhdrs) < nb {
		t.rhdrs = make([]mmsghdr, nb)
		t.riov = make([]unix.Iovec, nb)
	}
	hdrs, iov := t.rhdrs[:nb], t.riov[:nb]
	setMsgs(hdrs, iov, func(i int) []byte { return bufs[i] })
	defer clearMsgs(hdrs, iov)
	t.rn, t.rerr = nb, nil
	err := t.rc.Read(t.readFn)
	if err != nil {
		return 0, normErr(err)
	}
	if t.rerr != nil {
		return 0, fmt.Errorf("uplink: raw read: %w", t.rerr)
	}
	n := t.rn
	for i := 0; i < n; i++ {
		sizes[i] = int(hdrs[i].n)
		from[i] = netip.AddrPort{}
	}
	return n, nil
}

// recvmmsg is rc.Read's callback: it receives up to t.rn messages into
// t.rhdrs and sets t.rn to the number received, or t.rerr.
func (t *rawTransport) recvmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&t.rhdrs[0])), uintptr(t.rn),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			t.rn = int(r)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait for readiness
		default:
			t.rn, t.rerr = 0, e
			return true
		}
	}
}

// send sends items in runs of one sendmmsg each. The outer destination is
// written into each frame before it is staged, so a frame sent to several
// destinations (unicast copies of a flood, which WriteTrunk and dests put
// next to each other) ends a run before its next copy is staged.
func (t *rawTransport) send(items []outItem) error {
	t.smu.Lock()
	defer t.smu.Unlock()
	for len(items) > 0 {
		n := 0
		for n < len(items) && n < maxRawBatch {
			fr := items[n].frame
			if n > 0 && items[n].dst != items[n-1].dst && len(fr) > 0 && len(items[n-1].frame) > 0 &&
				unsafe.SliceData(fr) == unsafe.SliceData(items[n-1].frame) {
				break
			}
			copy(fr[0:6], items[n].dst[:])
			n++
		}
		if err := t.sendRun(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// sendRun sends items (at most maxRawBatch) with sendmmsg, waiting for room
// in the socket buffer as needed; a frame the kernel refuses is counted
// and skipped (t.smu held).
func (t *rawTransport) sendRun(items []outItem) error {
	if len(t.shdrs) < len(items) {
		t.shdrs = make([]mmsghdr, len(items))
		t.siov = make([]unix.Iovec, len(items))
	}
	hdrs, iov := t.shdrs[:len(items)], t.siov[:len(items)]
	setMsgs(hdrs, iov, func(i int) []byte { return items[i].frame })
	defer clearMsgs(hdrs, iov)
	t.sk, t.sn = 0, len(items)
	return normErr(t.rc.Write(t.writeFn))
}

// sendmmsg is rc.Write's callback: it sends t.shdrs[t.sk:t.sn], counting
// and skipping a frame the kernel refuses (too big, the interface is down
// …), and waits for room in the socket buffer as needed.
func (t *rawTransport) sendmmsg(fd uintptr) bool {
	for t.sk < t.sn {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&t.shdrs[t.sk])), uintptr(t.sn-t.sk),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			if r == 0 {
				return false
			}
			t.ctr.add(ctrTxDatagrams, uint64(r))
			t.sk += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // socket buffer full: wait for room
		default:
			t.ctr.add(ctrTxErrors, 1)
			t.sk++
		}
	}
	return true
}

func (t *rawTransport) close() error { return t.f.Close() }
