package attach

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// packetPort is a [vswitch.Port] over a connected socket that keeps
// message boundaries: a unixpacket (SOCK_SEQPACKET) connection, or a
// dialed (connected) udp or unixgram socket. One frame per message; Read
// is one recvmmsg(2) straight into the switch's buffers and Write one
// sendmmsg(2), neither allocating.
//
// On a seqpacket connection a zero-length message is the end of the
// stream and an oversized one a framing error (final). On a datagram
// socket both are dropped and counted.
type packetPort struct {
	closeOnce
	conn     io.Closer
	rc       syscall.RawConn
	seqpkt   bool
	maxFrame int
	onClose  func() // optional, run once after conn is closed

	// Drops counts datagrams dropped on read (empty, oversized).
	drops atomic.Uint64

	// Read side, owned by the reader.
	rhdrs  []mmsghdr
	riovs  []unix.Iovec
	rn     int
	rerrno error
	rfn    func(fd uintptr) bool
	rerr   error // sticky
	ready  readyCheck
	waited bool       // set by WaitRead: Read returns 0 frames rather than wait
	fb     *firstByte // a listener's connection: client or probe (nil: settled)

	// Write side, owned by the writer.
	whdrs  []mmsghdr
	wiovs  []unix.Iovec
	wn     int // messages to send
	wsent  int
	werrno error
	wfn    func(fd uintptr) bool
	werr   error // sticky
}

func newPacketPort(c syscall.Conn, seqpkt bool, opts Options, onClose func()) (*packetPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw conn: %w", err)
	}
	p := &packetPort{
		conn:     c.(io.Closer),
		rc:       rc,
		seqpkt:   seqpkt,
		maxFrame: opts.MaxFrame,
		onClose:  onClose,
		rhdrs:    make([]mmsghdr, BatchSize),
		riovs:    make([]unix.Iovec, BatchSize),
		whdrs:    make([]mmsghdr, BatchSize),
		wiovs:    make([]unix.Iovec, BatchSize),
	}
	p.rfn = p.recvFn
	p.wfn = p.sendFn
	return p, nil
}

// BatchSize implements vswitch.Port.BatchSize.
func (p *packetPort) BatchSize() int { return BatchSize }

// Settled implements vswitch.Settler.
func (p *packetPort) Settled() <-chan struct{} { return p.fb.Settled() }

// Probe implements vswitch.Settler.
func (p *packetPort) Probe() bool { return p.fb.Probe() }

// Close implements vswitch.Port.Close.
func (p *packetPort) Close() error { return p.close(p.conn, p.onClose) }

// Read implements vswitch.Port.Read.
func (p *packetPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, errNoBuffers
	}
	if len(bufs) > len(p.rhdrs) {
		bufs = bufs[:len(p.rhdrs)]
	}
	waited := p.waited
	p.waited = false
	for {
		if p.closed.Load() {
			return 0, net.ErrClosed
		}
		if p.rerr != nil {
			return 0, p.rerr
		}
		for i, b := range bufs {
			setMsg(&p.rhdrs[i], &p.riovs[i], b[offset:offset+min(len(b)-offset, p.maxFrame+1)])
		}
		p.rn = len(bufs)
		p.rerrno = nil
		err := p.rc.Read(p.rfn)
		if err == nil {
			err = p.rerrno
		}
		if err != nil {
			clear(p.riovs)
			p.fb.read(0, err)
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return 0, net.ErrClosed
			}
			p.rerr = fmt.Errorf("read: %w", err)
			return 0, p.rerr
		}
		out := 0
		for i := 0; i < p.rn; i++ {
			h := &p.rhdrs[i]
			size := int(h.Len)
			switch {
			case p.seqpkt && size == 0:
				p.rerr = io.EOF
				p.fb.read(0, io.EOF)
			case h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > p.maxFrame:
				if p.seqpkt {
					p.rerr = &FrameLengthError{Len: uint32(size), Max: p.maxFrame}
				} else {
					p.drops.Add(1)
					continue
				}
			case size == 0:
				p.drops.Add(1)
				continue
			}
			if p.rerr != nil {
				break
			}
			if out != i {
				copy(bufs[out][offset:], bufs[i][offset:offset+size])
			}
			sizes[out] = size
			out++
			p.fb.read(size, nil)
		}
		clear(p.riovs)
		if out > 0 || waited {
			return out, nil // waited: all dropped; the switch waits again
		}
	}
}

// writeChunks writes bufs with write, at most size frames per call, and
// returns the sum of what the calls wrote; it stops at the first error.
func writeChunks(bufs [][]byte, offset, size int, write func(chunk [][]byte, offset int) (int, error)) (int, error) {
	total := 0
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), size)]
		bufs = bufs[len(chunk):]
		n, err := write(chunk, offset)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// setMsg makes h a message of one iovec, iov, over all of b (not empty).
func setMsg(h *mmsghdr, iov *unix.Iovec, b []byte) {
	iov.Base = &b[0]
	iov.SetLen(len(b))
	*h = mmsghdr{}
	h.Hdr.Iov = iov
	h.Hdr.SetIovlen(1)
}

// setSendMsgs fills hdrs and iovs from the start with one message per
// frame b[offset:] of bufs, in order, addressed to name (namelen bytes)
// unless name is nil, and returns how many messages it made. Buffers with
// nothing after offset are left out.
func setSendMsgs(hdrs []mmsghdr, iovs []unix.Iovec, bufs [][]byte, offset int, name *byte, namelen uint32) int {
	n := 0
	for _, b := range bufs {
		if len(b) <= offset {
			continue
		}
		setMsg(&hdrs[n], &iovs[n], b[offset:])
		hdrs[n].Hdr.Name = name
		hdrs[n].Hdr.Namelen = namelen
		n++
	}
	return n
}

// recvFn runs one non-blocking recvmmsg; false means wait for data.
func (p *packetPort) recvFn(fd uintptr) bool {
	n, e := recvmmsg(fd, p.rhdrs[:p.rn])
	switch e {
	case 0:
		p.rn = n
	case unix.EAGAIN:
		return false
	default:
		p.rerrno = e
	}
	return true
}

// Write implements vswitch.Port.Write.
func (p *packetPort) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.werr != nil {
		return 0, p.werr
	}
	return writeChunks(bufs, offset, len(p.whdrs), p.writeChunk)
}

func (p *packetPort) writeChunk(bufs [][]byte, offset int) (int, error) {
	p.wn = setSendMsgs(p.whdrs, p.wiovs, bufs, offset, nil, 0)
	skipped := len(bufs) - p.wn
	p.wsent = 0
	p.werrno = nil
	err := p.rc.Write(p.wfn)
	if err == nil {
		err = p.werrno
	}
	clear(p.wiovs[:p.wn])
	if err != nil {
		if p.closed.Load() || errors.Is(err, net.ErrClosed) {
			return 0, net.ErrClosed
		}
		p.werr = fmt.Errorf("write: %w", err)
		return 0, p.werr
	}
	return p.wsent + skipped, nil
}

// sendFn sends p.whdrs[p.wsent:p.wn] with sendmmsg; false means wait until
// writable. A datagram the kernel refuses as too big is skipped.
func (p *packetPort) sendFn(fd uintptr) bool {
	for p.wsent < p.wn {
		r, e := sendmmsg(fd, p.whdrs[p.wsent:p.wn])
		switch e {
		case 0:
			p.wsent += r
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EMSGSIZE, unix.ENOBUFS: // ENOBUFS: a full datagram peer on macOS
			if p.seqpkt {
				p.werrno = e
				return true
			}
			p.drops.Add(1)
			p.wsent++
		default:
			p.werrno = e
			return true
		}
	}
	return true
}
