package attach

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

// Memory of the read side (DESIGN.md 4.8: an idle port holds no frame
// buffers). Every port of this package implements [vswitch.ReadWaiter]:
// the switch waits in WaitRead holding nothing and takes its batch of
// buffers only when something is ready. A stream port keeps no read
// buffer of its own while idle either: it reads into a staging buffer
// borrowed from stagePool for one Read, and when a read ends inside a
// frame, it keeps only that part, in a pool buffer sized to it
// (vswitch.GetBuf), until the rest comes.

// ErrFrameTimeout is wrapped by the error of a stream port that started a
// frame (part of its length prefix or of the frame) and did not complete
// it within Options.FrameTimeout.
var ErrFrameTimeout = errors.New("frame not completed in time")

// DefaultFrameTimeout is how long a stream port may hold a started frame.
const DefaultFrameTimeout = 30 * time.Second

// readState is the stream read side's bookkeeping besides the buffer.
type readState struct {
	// waited is set by WaitRead and ends Read after one read(2) that
	// completed no frame (vswitch.ReadWaiter); didRead is set by that read.
	waited, didRead bool

	// since is when the partial frame in rbuf started (zero: none held).
	since time.Time
	// timeout is Options.FrameTimeout (<= 0: none); dl sets the read
	// deadline that enforces it (nil: the stream has none).
	timeout  time.Duration
	dl       interface{ SetReadDeadline(time.Time) error }
	deadline time.Time // the deadline set on the stream (zero: none)
	timeouts *atomic.Uint64

	ready readyCheck
}

// readyCheck waits until a descriptor is readable without reading it: a
// RawConn.Read whose callback asks poll(2) and returns false, to wait for
// the runtime's poller, while nothing is there. Bound once, so a wait
// allocates nothing.
type readyCheck struct {
	pfd [1]unix.PollFd
	fn  func(fd uintptr) bool
	err error
}

// wait blocks until rc is readable, hung up or in error (a descriptor
// error is returned), or until its read deadline or Close.
func (c *readyCheck) wait(rc syscall.RawConn) error {
	if c.fn == nil {
		c.fn = c.ready
	}
	c.err = nil
	if err := rc.Read(c.fn); err != nil {
		return err
	}
	return c.err
}

func (c *readyCheck) ready(fd uintptr) bool {
	c.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	for {
		n, err := unix.Poll(c.pfd[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			c.err = err
			return true
		}
		return n > 0
	}
}

func (p *streamPort) initRead(opts Options) {
	p.rs.timeout = opts.FrameTimeout
	p.rs.timeouts = opts.frameTimeouts
	if d, ok := p.rwc.(interface{ SetReadDeadline(time.Time) error }); ok && opts.FrameTimeout > 0 {
		p.rs.dl = d
	}
}

// stage makes rbuf a staging buffer with the unread bytes at its start,
// so a read(2) can fill the rest.
func (p *streamPort) stage() {
	switch {
	case p.rbuf == nil:
		p.rbuf, p.staged, p.r, p.w = stagePool.get(), true, 0, 0
	case !p.staged:
		b := stagePool.get()
		n := copy(b, p.rbuf[p.r:p.w])
		vswitch.PutBuf(p.rbuf)
		p.rbuf, p.staged, p.r, p.w = b, true, 0, n
	case p.r > 0:
		copy(p.rbuf, p.rbuf[p.r:p.w])
		p.w -= p.r
		p.r = 0
	}
}

// settle runs at the end of every Read: an empty buffer goes back to its
// pool; a staging buffer that holds only part of a frame gives that part
// to a pool buffer of the partial frame's size. Complete frames left in
// a staging buffer (the batch was full) stay: WaitRead returns at once
// and the next Read takes them.
func (p *streamPort) settle() {
	p.rs.waited = false
	if p.r == p.w {
		p.releaseRead()
		p.rs.since = time.Time{}
		return
	}
	if p.rerr != nil || p.frameReady() {
		return
	}
	p.startClock()
	if !p.staged {
		return
	}
	need := LengthSize
	if p.w-p.r >= LengthSize {
		need += int(uint32(p.rbuf[p.r])<<24 | uint32(p.rbuf[p.r+1])<<16 | uint32(p.rbuf[p.r+2])<<8 | uint32(p.rbuf[p.r+3]))
	}
	b := vswitch.GetBuf(need)
	n := copy(b, p.rbuf[p.r:p.w])
	stagePool.put(p.rbuf)
	p.rbuf, p.staged, p.r, p.w = b, false, 0, n
}

// releaseRead gives the read buffer back; the port holds none.
func (p *streamPort) releaseRead() {
	if p.rbuf != nil {
		if p.staged {
			stagePool.put(p.rbuf)
		} else {
			vswitch.PutBuf(p.rbuf)
		}
	}
	p.rbuf, p.staged, p.r, p.w = nil, false, 0, 0
}

// frameReady reports whether Read can return without reading: a whole
// frame is buffered, or a length prefix that parse rejects.
func (p *streamPort) frameReady() bool {
	if p.w-p.r < LengthSize {
		return false
	}
	b := p.rbuf[p.r:]
	l := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return l == 0 || l > uint32(p.maxFrame) || p.r+LengthSize+int(l) <= p.w
}

// WaitRead implements [vswitch.ReadWaiter]: it returns at once when a
// frame (or an error) is ready, and otherwise waits until the stream is
// readable, holding no buffer but a started frame's part. While a frame
// is started, the wait ends at its deadline (Options.FrameTimeout).
func (p *streamPort) WaitRead() error {
	if p.closed.Load() {
		return net.ErrClosed
	}
	if p.rerr != nil || p.frameReady() {
		return nil
	}
	p.rs.waited = true
	p.armDeadline()
	if p.rc == nil {
		return nil // no descriptor to wait on: Read blocks instead
	}
	if err := p.rs.ready.wait(p.rc); err != nil {
		p.rerr = p.readErr(err)
	}
	return nil // Read returns the error, after any frame still buffered
}

// WaitRead implements [vswitch.ReadWaiter]: it waits until a message (or
// an error) is ready.
func (p *packetPort) WaitRead() error {
	if p.closed.Load() {
		return net.ErrClosed
	}
	if p.rerr != nil {
		return nil
	}
	p.waited = true
	if err := p.ready.wait(p.rc); err != nil {
		if p.closed.Load() || errors.Is(err, net.ErrClosed) {
			return net.ErrClosed
		}
		p.rerr = fmt.Errorf("read: %w", err)
	}
	return nil
}

// WaitRead implements [vswitch.ReadWaiter]: it takes the peer's next
// queued datagram (already in a pool buffer of its size), for Read.
func (p *peerPort) WaitRead() error {
	if p.head != nil {
		return nil
	}
	select {
	case <-p.shut:
		return net.ErrClosed
	default:
	}
	select {
	case p.head = <-p.q:
		return nil
	case <-p.shut:
		return net.ErrClosed
	}
}

// startClock notes when a started frame began, if it has not yet.
func (p *streamPort) startClock() {
	if p.r < p.w && p.rs.since.IsZero() {
		p.rs.since = time.Now()
	}
}

// armDeadline sets the stream's read deadline to the end of the started
// frame's time, or clears it when no frame is started.
func (p *streamPort) armDeadline() {
	if p.rs.dl == nil {
		return
	}
	var want time.Time
	if !p.rs.since.IsZero() {
		want = p.rs.since.Add(p.rs.timeout)
	}
	if want.Equal(p.rs.deadline) {
		return
	}
	if p.rs.dl.SetReadDeadline(want) == nil {
		p.rs.deadline = want
	}
}

// frameTimedOut counts a frame timeout and returns the port's final error.
func (p *streamPort) frameTimedOut() error {
	if p.rs.timeouts != nil {
		p.rs.timeouts.Add(1)
	}
	return fmt.Errorf("read: %w: %d bytes of a frame held for %v (limits.frame_timeout)",
		ErrFrameTimeout, p.w-p.r, p.rs.timeout)
}

// dropPend gives the write side's pending tail buffer back.
func (p *streamPort) dropPend() {
	if p.pend != nil {
		vswitch.PutBuf(p.pend)
		p.pend = nil
	}
}

// stageSize is the size of a staging buffer: one read(2) takes every
// frame that fits (at least two maximum frames with their lengths).
const stageSize = max(readBufSize, 2*(vswitch.MaxFrameSize+LengthSize))

// stagePool is a bounded free list of staging buffers, shared by every
// stream port: only ports in the middle of a Read hold one. It keeps at
// most maxFreeStage (2 MiB); the rest go to the garbage collector, so the
// memory of a surge is returned. (Not a sync.Pool: under the race
// detector it drops buffers at random, which the allocation tests see.)
var stagePool stageList

const maxFreeStage = 8

type stageList struct {
	mu   sync.Mutex
	free []*[stageSize]byte // guarded by mu
}

func (s *stageList) get() []byte {
	s.mu.Lock()
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return b[:]
	}
	s.mu.Unlock()
	return new([stageSize]byte)[:]
}

func (s *stageList) put(b []byte) {
	s.mu.Lock()
	if len(s.free) < maxFreeStage {
		s.free = append(s.free, (*[stageSize]byte)(b[:stageSize]))
	}
	s.mu.Unlock()
}
