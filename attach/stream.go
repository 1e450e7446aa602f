package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

const (
	// LengthSize is the size of the big-endian length before every frame
	// on stream transports.
	LengthSize = 4
	// readBufSize is the stream read buffer: one read(2) returns every
	// frame that fits.
	readBufSize = 256 << 10
)

// ErrFrameLength is wrapped by the error a stream port's Read returns for a
// length prefix of 0 or above the port's maximum frame.
var ErrFrameLength = errors.New("bad frame length")

// errNoBuffers is returned by Read when called with no buffers, which
// the Port contract does not allow (it could never return n > 0).
var errNoBuffers = errors.New("read: no buffers")

// closeOnce is the Close of the connection ports (stream and packet): the
// first call marks the port closed, closes c and then runs after, if not
// nil; later calls do nothing and return nil.
type closeOnce struct {
	closed atomic.Bool // read by Read and Write to report net.ErrClosed
	once   sync.Once
}

func (o *closeOnce) close(c io.Closer, after func()) error {
	var err error
	o.once.Do(func() {
		o.closed.Store(true)
		err = c.Close()
		if after != nil {
			after()
		}
	})
	return err
}

// FrameLengthError is a malformed length prefix on a stream.
type FrameLengthError struct {
	Len uint32 // the length read
	Max int    // the port's maximum frame
}

// Error implements error.
func (e *FrameLengthError) Error() string {
	return fmt.Sprintf("bad frame length %d (want 1 to %d)", e.Len, e.Max)
}

// Unwrap returns [ErrFrameLength].
func (e *FrameLengthError) Unwrap() error { return ErrFrameLength }

// streamPort is a [vswitch.Port] over a byte stream where every frame is
// preceded by its length, 4 bytes big-endian.
//
// Read fills a readBufSize buffer with one read and returns every complete
// frame in it. Write puts each length prefix into the frame's headroom and
// sends the whole batch with one writev(2) when the stream exposes its
// file descriptor (syscall.Conn), or copies the batch into one buffer and
// writes it otherwise. Neither allocates.
type streamPort struct {
	closeOnce
	rwc      io.ReadWriteCloser
	maxFrame int

	// Read side, owned by the single reader. The unread bytes are
	// rbuf[r:w]. rbuf is nil while the port is idle (no byte of a frame
	// held), a staging buffer (staged, from stagePool) while Read reads,
	// and between reads that left part of a frame, a pool buffer
	// (vswitch.GetBuf) of the partial frame's size. See read.go.
	rbuf   []byte
	staged bool
	r, w   int
	rerr   error // sticky read error, returned once the buffer is drained
	rs     readState
	fb     *firstByte // a listener's connection: client or probe (nil: settled)

	// Write side, owned by the single writer.
	rc      syscall.RawConn // nil: copy into wbuf instead
	iovs    []unix.Iovec
	wiov    []unix.Iovec // iovs still to send, during writeFn and tryFn
	wfn     func(fd uintptr) bool
	tfn     func(fd uintptr) bool
	tn      int // bytes tryFn wrote
	werrno  error
	wbuf    []byte
	werr    error  // sticky write error
	pend    []byte // unsent tail of a frame TryWrite sent in part
	wframes int
}

// NewStreamPort returns a [vswitch.Port] that speaks the 4-byte big-endian
// length framing of DESIGN.md section 5 over rwc (stdio, a net.Conn, a
// pipe). Close closes rwc. If rwc implements [syscall.Conn] (net.TCPConn,
// net.UnixConn, os.File, vsock.Conn) batches are written with one writev.
// Read and Write follow the Port rules: one reader, one writer, any
// Close; both return [net.ErrClosed] after Close.
func NewStreamPort(rwc io.ReadWriteCloser, opts Options) vswitch.Port {
	return newStreamPort(rwc, opts.withDefaults())
}

func newStreamPort(rwc io.ReadWriteCloser, opts Options) *streamPort {
	p := &streamPort{
		rwc:      rwc,
		maxFrame: opts.MaxFrame,
	}
	if sc, ok := rwc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
			p.wfn = p.writeFn
			p.tfn = p.tryFn
		}
	}
	p.initRead(opts)
	return p
}

// BatchSize implements vswitch.Port.BatchSize: up to IOV_MAX frames per
// writev. (The switch reads with at most 64 buffers whatever this says.)
func (p *streamPort) BatchSize() int { return maxIOV }

// Settled implements vswitch.Settler.
func (p *streamPort) Settled() <-chan struct{} { return p.fb.Settled() }

// Probe implements vswitch.Settler.
func (p *streamPort) Probe() bool { return p.fb.Probe() }

// Close implements vswitch.Port.Close.
func (p *streamPort) Close() error { return p.close(p.rwc, nil) }

// Read implements vswitch.Port.Read.
func (p *streamPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, errNoBuffers
	}
	p.rs.didRead = false
	defer p.settle()
	for {
		if p.closed.Load() {
			return 0, net.ErrClosed
		}
		n, err := p.parse(bufs, sizes, offset)
		if n > 0 || err != nil {
			return n, err
		}
		if p.rerr != nil {
			return 0, p.rerr
		}
		if p.rs.waited && p.rs.didRead {
			// After WaitRead: one read, and what came was part of a
			// frame. Give the switch its buffers back and wait again.
			return 0, nil
		}
		p.startClock()
		p.armDeadline()
		p.stage()
		m, err := p.rwc.Read(p.rbuf[p.w:])
		p.fb.read(m, err)
		p.w += m
		p.rs.didRead = true
		if err != nil {
			p.rerr = p.readErr(err)
		}
	}
}

// readErr turns a read error into the port's final error.
func (p *streamPort) readErr(err error) error {
	if p.closed.Load() || errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !p.rs.since.IsZero() {
		return p.frameTimedOut()
	}
	if err == io.EOF {
		if p.w-p.r > 0 {
			return fmt.Errorf("read: %w (in the middle of a frame)", io.ErrUnexpectedEOF)
		}
		return io.EOF
	}
	return fmt.Errorf("read: %w", err)
}

// parse moves complete frames out of rbuf into bufs.
func (p *streamPort) parse(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) && p.w-p.r >= LengthSize {
		l := binary.BigEndian.Uint32(p.rbuf[p.r:])
		if l == 0 || l > uint32(p.maxFrame) {
			return p.frameErr(n, &FrameLengthError{Len: l, Max: p.maxFrame})
		}
		if int(l) > len(bufs[n])-offset {
			return p.frameErr(n, &FrameLengthError{Len: l, Max: len(bufs[n]) - offset})
		}
		end := p.r + LengthSize + int(l)
		if end > p.w {
			break
		}
		sizes[n] = copy(bufs[n][offset:], p.rbuf[p.r+LengthSize:end])
		p.r = end
		n++
	}
	if n > 0 {
		p.rs.since = time.Time{} // a frame completed: the next one starts its own clock
	}
	if p.r == p.w {
		p.r, p.w = 0, 0
	}
	return n, nil
}

// frameErr returns the frames already parsed, or the framing error when
// there are none. The error is sticky.
func (p *streamPort) frameErr(n int, e *FrameLengthError) (int, error) {
	p.rerr = e
	p.r, p.w = 0, 0 // nothing after a bad length can be trusted
	if n > 0 {
		return n, nil
	}
	return 0, e
}

// Write implements vswitch.Port.Write.
func (p *streamPort) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.werr != nil {
		return 0, p.werr
	}
	if offset < LengthSize {
		return 0, fmt.Errorf("write: offset %d leaves no room for the length", offset)
	}
	if p.rc == nil {
		return p.writeCopy(bufs, offset)
	}
	p.iovs = p.iovs[:0]
	if len(p.pend) > 0 {
		p.iovs = append(p.iovs, unix.Iovec{Base: &p.pend[0]})
		p.iovs[0].SetLen(len(p.pend))
	}
	for _, b := range bufs {
		p.appendIOV(b, offset)
	}
	if len(p.iovs) == 0 {
		return len(bufs), nil
	}
	p.wiov = p.iovs
	p.werrno = nil
	err := p.rc.Write(p.wfn)
	if err == nil {
		err = p.werrno
	}
	clear(p.iovs) // drop references to the switch's buffers
	p.wiov = nil
	p.dropPend()
	if err != nil {
		p.werr = p.writeErr(err)
		return 0, p.werr
	}
	return len(bufs), nil
}

// sendLen returns the length of the frame b[offset:], or 0 for a frame
// that is not sent: an empty one, or one longer than the maximum frame
// (never send a length the peer must reject). Write and TryWrite count
// such frames as written.
func (p *streamPort) sendLen(b []byte, offset int) int {
	if l := len(b) - offset; l > 0 && l <= p.maxFrame {
		return l
	}
	return 0
}

// appendIOV puts the length of the frame b[offset:] into the headroom
// before it and appends one iovec for length and frame to p.iovs, unless
// the frame is not sent (see sendLen).
func (p *streamPort) appendIOV(b []byte, offset int) {
	l := p.sendLen(b, offset)
	if l == 0 {
		return
	}
	binary.BigEndian.PutUint32(b[offset-LengthSize:], uint32(l))
	p.iovs = append(p.iovs, unix.Iovec{Base: &b[offset-LengthSize]})
	p.iovs[len(p.iovs)-1].SetLen(LengthSize + l)
}

// TryWrite implements vswitch.TryWriter: one writev that never waits.
// The switch calls it from its reader goroutines when this port's queue is
// empty, never at the same time as Write. If the socket takes only part of
// a frame, the frame counts as sent and its tail is kept in pend (a copy;
// the switch's buffer is not kept), which the next TryWrite or Write sends
// first. EAGAIN sends nothing and returns 0.
func (p *streamPort) TryWrite(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.werr != nil {
		return 0, p.werr
	}
	if p.rc == nil || offset < LengthSize {
		return 0, nil
	}
	if len(p.pend) > 0 {
		p.iovs = append(p.iovs[:0], unix.Iovec{Base: &p.pend[0]})
		p.iovs[0].SetLen(len(p.pend))
		m, e := p.tryv(p.iovs)
		if e != nil {
			return 0, e
		}
		n := copy(p.pend, p.pend[m:])
		p.pend = p.pend[:n]
		if n > 0 {
			return 0, nil
		}
		p.dropPend()
	}
	p.iovs = p.iovs[:0]
	nb := 0 // frames of bufs covered by iovs
	for _, b := range bufs {
		if len(p.iovs) == maxIOV {
			break
		}
		nb++
		p.appendIOV(b, offset)
	}
	if len(p.iovs) == 0 {
		return nb, nil
	}
	m, err := p.tryv(p.iovs)
	if err != nil {
		clear(p.iovs)
		return 0, err
	}
	// Map bytes written to frames; a frame sent in part is counted and its
	// tail kept in pend.
	sent := 0
	for _, b := range bufs[:nb] {
		l := p.sendLen(b, offset)
		if l == 0 {
			sent++
			continue
		}
		fl := LengthSize + l
		if m >= fl {
			m -= fl
			sent++
			continue
		}
		if m > 0 {
			if p.pend == nil {
				p.pend = vswitch.GetBuf(LengthSize + p.maxFrame)[:0]
			}
			p.pend = append(p.pend[:0], b[offset-LengthSize+m:]...)
			sent++
		}
		break
	}
	clear(p.iovs)
	return sent, nil
}

// tryv runs one writev that does not wait; EAGAIN is 0 bytes. It does not
// allocate: the callback is bound once (tfn) and its results go to fields.
func (p *streamPort) tryv(iovs []unix.Iovec) (int, error) {
	p.wiov, p.tn, p.werrno = iovs, 0, nil
	err := p.rc.Write(p.tfn)
	p.wiov = nil
	if err == nil {
		err = p.werrno
	}
	if err != nil {
		p.werr = p.writeErr(err)
		return 0, p.werr
	}
	return p.tn, nil
}

// tryFn runs one writev of p.wiov and never asks to wait: the bytes
// written go to p.tn (0 on EAGAIN), another error to p.werrno.
func (p *streamPort) tryFn(fd uintptr) bool {
	for {
		m, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&p.wiov[0])), uintptr(len(p.wiov)))
		switch e {
		case unix.EINTR:
			continue
		case 0:
			p.tn = int(m)
		case unix.EAGAIN:
		default:
			p.werrno = e
		}
		return true
	}
}

// maxIOV is the most iovecs one writev takes (IOV_MAX).
const maxIOV = 1024

// writeFn runs writev until every iovec in p.wiov is sent, returning false
// (wait for writability) on EAGAIN.
func (p *streamPort) writeFn(fd uintptr) bool {
	for len(p.wiov) > 0 {
		cnt := min(len(p.wiov), maxIOV)
		m, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&p.wiov[0])), uintptr(cnt))
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			return false
		}
		if e != 0 {
			p.werrno = e
			return true
		}
		// Skip what was written; a partial iovec keeps its tail.
		for m > 0 {
			l := uintptr(p.wiov[0].Len)
			if m >= l {
				m -= l
				p.wiov = p.wiov[1:]
				continue
			}
			p.wiov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(p.wiov[0].Base), m))
			p.wiov[0].SetLen(int(l - m))
			m = 0
		}
	}
	return true
}

// writeCopy sends the batch through wbuf with as few writes as fit.
func (p *streamPort) writeCopy(bufs [][]byte, offset int) (int, error) {
	if p.wbuf == nil {
		p.wbuf = make([]byte, 0, readBufSize)
	}
	for _, b := range bufs {
		l := p.sendLen(b, offset)
		if l == 0 {
			continue
		}
		if len(p.wbuf)+LengthSize+l > cap(p.wbuf) {
			if err := p.flush(); err != nil {
				return 0, err
			}
		}
		p.wbuf = binary.BigEndian.AppendUint32(p.wbuf, uint32(l))
		p.wbuf = append(p.wbuf, b[offset:]...)
	}
	if err := p.flush(); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

func (p *streamPort) flush() error {
	if len(p.wbuf) == 0 {
		return nil
	}
	_, err := p.rwc.Write(p.wbuf) // io.Writer: a short write returns an error
	p.wbuf = p.wbuf[:0]
	if err != nil {
		p.werr = p.writeErr(err)
		return p.werr
	}
	return nil
}

func (p *streamPort) writeErr(err error) error {
	if p.closed.Load() || errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return fmt.Errorf("write: %w", err)
}
