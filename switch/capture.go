package vswitch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Capture (DESIGN.md section 7): a copy of the frames of one port or one
// fence, for pcap.
//
// Cost when off: one atomic pointer load per batch per tap point (the
// port's and the fence's), nothing per frame, no allocation. When on, each
// captured frame is copied (at most snaplen bytes) into a fresh slice and
// offered to the capture's bounded channel; when the channel is full the
// frame is dropped and counted ([Capture.Dropped]). The data path never
// blocks on a capture.
//
// What is seen:
//   - a port capture sees the frames read from the port (inbound, as read,
//     before any check) and the frames the switch delivers to it
//     (outbound, as switched; a frame later dropped because the port's
//     queue is full is still captured);
//   - a fence capture sees every frame entering the fence: read from any
//     of its local ports, or from the trunk with the fence's ID. Each
//     frame once, as it entered (a flood is not repeated per port).
//
// Several captures of the same port or fence may run at once; each gets
// every frame.

// Capture errors.
var (
	// ErrCaptureClosed is returned by [Capture.Read] after Close, after the
	// captured port was detached or after the switch closed.
	ErrCaptureClosed = errors.New("vswitch: capture closed")
	// ErrUnknownPort is returned by [Switch.Capture] for a port that is not attached.
	ErrUnknownPort = errors.New("vswitch: unknown port")
	// ErrBadSelector is returned by [Switch.Capture] unless exactly one of
	// Fence and Port is set.
	ErrBadSelector = errors.New("vswitch: capture needs exactly one of fence and port")
)

// Capture bounds.
const (
	// DefaultSnaplen is the snaplen used when 0 is given: every frame whole.
	DefaultSnaplen = MaxFrameSize
	// CaptureQueue is how many frames a capture holds for its reader.
	CaptureQueue = 4096
)

// CaptureSelector names what to capture: exactly one field is non-zero.
type CaptureSelector struct {
	Fence uint32 // a fence ID
	Port  uint64 // a port ID
}

// CapturedFrame is one captured frame.
type CapturedFrame struct {
	Data []byte    // the first min(Len, snaplen) bytes; owned by the caller
	Len  int       // the frame's length on the wire
	Time time.Time // when the switch saw it (once per batch)
}

// Capture is a running capture. Its methods are safe for concurrent use.
type Capture struct {
	s       *Switch
	snaplen int
	ch      chan CapturedFrame
	dropped atomic.Uint64
	done    chan struct{} // closed by Close
	ended   <-chan struct{}

	closeOnce sync.Once
	remove    func()
}

// tapSet is the immutable set of captures of one port or fence, replaced
// (copy-on-write) under Switch.mu.
type tapSet struct {
	caps []*Capture
}

// Capture starts capturing sel. snaplen bounds the bytes kept per frame
// (0: [DefaultSnaplen]). Close the capture when done.
func (s *Switch) Capture(sel CaptureSelector, snaplen int) (*Capture, error) {
	if (sel.Fence == 0) == (sel.Port == 0) {
		return nil, ErrBadSelector
	}
	if snaplen <= 0 || snaplen > MaxFrameSize {
		snaplen = DefaultSnaplen
	}
	c := &Capture{
		s:       s,
		snaplen: snaplen,
		ch:      make(chan CapturedFrame, CaptureQueue),
		done:    make(chan struct{}),
		ended:   s.stop,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var tp *atomic.Pointer[tapSet]
	if sel.Port != 0 {
		p := s.ports[sel.Port]
		if p == nil {
			return nil, fmt.Errorf("%w: %d", ErrUnknownPort, sel.Port)
		}
		tp = &p.tap
		c.ended = p.done
	} else {
		f := s.fence(sel.Fence)
		if f == nil {
			return nil, fmt.Errorf("%w: %d", ErrUnknownFence, sel.Fence)
		}
		tp = &f.tap
	}
	addTap(tp, c)
	c.remove = func() {
		s.mu.Lock()
		removeTap(tp, c)
		s.mu.Unlock()
	}
	if sel.Port != 0 {
		pdone := c.ended
		go func() { // a detached port ends its captures
			select {
			case <-pdone:
				c.Close()
			case <-c.done:
			}
		}()
	}
	return c, nil
}

// addTap and removeTap are called with Switch.mu held.
func addTap(tp *atomic.Pointer[tapSet], c *Capture) {
	n := &tapSet{}
	if old := tp.Load(); old != nil {
		n.caps = slices.Clone(old.caps)
	}
	n.caps = append(n.caps, c)
	tp.Store(n)
}

func removeTap(tp *atomic.Pointer[tapSet], c *Capture) {
	old := tp.Load()
	if old == nil {
		return
	}
	caps := slices.DeleteFunc(slices.Clone(old.caps), func(x *Capture) bool { return x == c })
	if len(caps) == 0 {
		tp.Store(nil)
		return
	}
	tp.Store(&tapSet{caps: caps})
}

// batch offers the n frames of a reader batch (frames at [Headroom:]).
func (t *tapSet) batch(bufs [][]byte, sizes []int) {
	now := time.Now()
	for i, size := range sizes {
		t.frame(bufs[i], size, now)
	}
}

// frame offers one frame (buf holds it at [Headroom:Headroom+size]).
func (t *tapSet) frame(buf []byte, size int, now time.Time) {
	if size <= 0 || Headroom+size > len(buf) {
		return
	}
	for _, c := range t.caps {
		c.offer(buf[Headroom:Headroom+size], now)
	}
}

func (c *Capture) offer(frame []byte, now time.Time) {
	if len(c.ch) == cap(c.ch) {
		c.dropped.Add(1) // checked before copying
		return
	}
	data := make([]byte, min(len(frame), c.snaplen))
	copy(data, frame)
	select {
	case c.ch <- CapturedFrame{Data: data, Len: len(frame), Time: now}:
	default:
		c.dropped.Add(1)
	}
}

// Read returns the next captured frame. It blocks until there is one, ctx
// is done, or the capture has ended ([ErrCaptureClosed]: Close, the port
// detached or the switch closed); frames captured before the end are
// returned first.
func (c *Capture) Read(ctx context.Context) (CapturedFrame, error) {
	select {
	case fr := <-c.ch:
		return fr, nil
	default:
	}
	select {
	case fr := <-c.ch:
		return fr, nil
	case <-ctx.Done():
		return CapturedFrame{}, ctx.Err()
	case <-c.done:
	case <-c.ended:
	}
	select { // a frame may have arrived with the end
	case fr := <-c.ch:
		return fr, nil
	default:
		return CapturedFrame{}, ErrCaptureClosed
	}
}

// Dropped is how many frames were dropped because the reader was slow.
func (c *Capture) Dropped() uint64 { return c.dropped.Load() }

// Done is closed by Close.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Close stops the capture. Frames still queued can be read until Read
// reports [ErrCaptureClosed].
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		c.remove()
		close(c.done)
	})
	return nil
}

// staged offers the frames staged at idx (all for one port).
func (t *tapSet) staged(r *reader, idx []int32) {
	now := time.Now()
	for _, k := range idx {
		st := &r.stage[k]
		t.frame(r.bufs[st.i], int(st.size), now)
	}
}
