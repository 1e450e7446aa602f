package uplink

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Capture of the uplink (DESIGN.md section 7, corral capture --uplink):
// a copy of the outer frames as they are on the wire: every datagram or
// raw frame received, before any check, and every one sent (hellos
// included), after encapsulation, sealing and fragmentation. On the UDP
// uplink the datagram payload is the whole encapsulated frame, outer
// Ethernet header included, so a capture is a pcap of link type
// Ethernet either way. Sealed frames stay sealed: no key and no
// plaintext ever reaches a capture.
//
// Cost when off: one atomic pointer load per batch, nothing per frame.
// When on, each frame is copied (at most snaplen bytes) into a fresh
// slice and offered to the capture's bounded channel; a full channel
// drops the frame and counts it ([Capture.Dropped]). The uplink never
// blocks on a capture.

// CaptureQueue is how many frames a capture holds for its reader.
const CaptureQueue = 4096

// ErrCaptureClosed is returned by [Capture.Read] after Close or after the
// uplink closed.
var ErrCaptureClosed = errors.New("uplink: capture closed")

// CapturedFrame is one captured outer frame.
type CapturedFrame struct {
	Data     []byte    // the first min(Len, snaplen) bytes; owned by the caller
	Len      int       // the frame's length
	Time     time.Time // when the uplink read or sent it (once per batch)
	Outbound bool      // sent by this host (else received)
}

// Capture is a running capture of the uplink. Its methods are safe for
// concurrent use.
type Capture struct {
	u       *Uplink
	snaplen int
	ch      chan CapturedFrame
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

// tapSet is the immutable set of running captures, replaced
// copy-on-write under tapMu.
type tapSet struct{ caps []*Capture }

var tapMu sync.Mutex // serializes changes of every Uplink's taps (rare)

// Capture starts a capture of the outer frames; snaplen bounds the bytes
// kept per frame (0 or more than 65535: whole frames). Close it when
// done.
func (u *Uplink) Capture(snaplen int) (*Capture, error) {
	if u.closed.Load() {
		return nil, ErrCaptureClosed
	}
	if snaplen <= 0 || snaplen > 65535 {
		snaplen = 65535
	}
	c := &Capture{u: u, snaplen: snaplen, ch: make(chan CapturedFrame, CaptureQueue), done: make(chan struct{})}
	tapMu.Lock()
	n := &tapSet{}
	if old := u.taps.Load(); old != nil {
		n.caps = slices.Clone(old.caps)
	}
	n.caps = append(n.caps, c)
	u.taps.Store(n)
	tapMu.Unlock()
	return c, nil
}

// Close stops the capture; frames still queued can be read until Read
// reports ErrCaptureClosed.
func (c *Capture) Close() error {
	c.once.Do(func() {
		tapMu.Lock()
		if old := c.u.taps.Load(); old != nil {
			caps := slices.DeleteFunc(slices.Clone(old.caps), func(x *Capture) bool { return x == c })
			if len(caps) == 0 {
				c.u.taps.Store(nil)
			} else {
				c.u.taps.Store(&tapSet{caps: caps})
			}
		}
		tapMu.Unlock()
		close(c.done)
	})
	return nil
}

// Dropped is how many frames were dropped because the reader was slow.
func (c *Capture) Dropped() uint64 { return c.dropped.Load() }

// Read returns the next captured frame. It blocks until there is one, ctx
// is done, or the capture ended ([ErrCaptureClosed]: Close or the
// uplink's Close); frames captured before the end come first.
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
	case <-c.u.done:
	}
	select {
	case fr := <-c.ch:
		return fr, nil
	default:
		return CapturedFrame{}, ErrCaptureClosed
	}
}

// offer copies frame (dst, when not nil, replacing its outer destination:
// the raw transport writes it at send time).
func (c *Capture) offer(frame []byte, dst *[6]byte, out bool, now time.Time) {
	if len(c.ch) == cap(c.ch) {
		c.dropped.Add(1)
		return
	}
	data := make([]byte, min(len(frame), c.snaplen))
	copy(data, frame)
	if dst != nil {
		copy(data, dst[:min(len(data), 6)])
	}
	select {
	case c.ch <- CapturedFrame{Data: data, Len: len(frame), Time: now, Outbound: out}:
	default:
		c.dropped.Add(1)
	}
}

// received offers the datagrams of a receive batch: bufs[i][start:][:sizes[i]].
func (t *tapSet) received(bufs [][]byte, sizes []int, start int, now time.Time) {
	for i, n := range sizes {
		if n <= 0 || start+n > len(bufs[i]) {
			continue
		}
		for _, c := range t.caps {
			c.offer(bufs[i][start:start+n], nil, false, now)
		}
	}
}

// sent offers the frames of items.
func (t *tapSet) sent(items []outItem, now time.Time) {
	for i := range items {
		for _, c := range t.caps {
			c.offer(items[i].frame, &items[i].dst, true, now)
		}
	}
}

// send hands items to the transport, offering them to the captures first.
func (u *Uplink) send(items []outItem) error {
	if t := u.taps.Load(); t != nil && len(items) > 0 {
		t.sent(items, time.Now())
	}
	return u.link.tr.send(items)
}
