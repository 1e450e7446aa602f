// Package porttest provides channel-based fakes of [vswitch.Port] and
// [vswitch.Trunk] for tests, in the manner of wireguard-go's tun/tuntest.
//
// Directions are those of package vswitch: inbound frames go into the
// switch (the test sends them on In, the switch Reads them), outbound
// frames come out of it (the switch Writes them, the test receives copies
// on Out).
package porttest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	vswitch "github.com/corralnet/corral/switch"
)

// ErrFrameTooLong is returned by Read when an inbound frame does not fit
// the switch's buffer (a framing error: the port is then unusable).
var ErrFrameTooLong = errors.New("porttest: frame longer than buffer")

// Port is a [vswitch.Port] whose frames travel over channels.
//
// Frames sent on In are read by the switch; each Write sends a copy of
// every frame on Out, blocking while Out is full (so a Port whose Out
// nobody receives from is a VM that stopped reading). FailRead and
// FailWrite make the next Read or Write return an error.
type Port struct {
	In  chan []byte
	Out chan []byte

	batch     int
	closeOnce sync.Once
	closed    chan struct{}
	readErr   chan error
	writeErr  chan error
}

var _ vswitch.Port = (*Port)(nil)

// NewPort returns a Port with the given batch size and Out capacity (In
// has capacity 1024).
func NewPort(batch, outCap int) *Port {
	return &Port{
		In:       make(chan []byte, 1024),
		Out:      make(chan []byte, outCap),
		batch:    batch,
		closed:   make(chan struct{}),
		readErr:  make(chan error, 1),
		writeErr: make(chan error, 1),
	}
}

// FailRead makes a blocked or the next Read return err.
func (p *Port) FailRead(err error) {
	select {
	case p.readErr <- err:
	default:
	}
}

// FailWrite makes the next Write return err.
func (p *Port) FailWrite(err error) {
	select {
	case p.writeErr <- err:
	default:
	}
}

// Closed is closed when Close has been called.
func (p *Port) Closed() <-chan struct{} { return p.closed }

// Read implements [vswitch.Port.Read]: it blocks for one frame, then takes
// whatever more is ready, up to len(bufs).
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var f []byte
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	case err := <-p.readErr:
		return 0, err
	case f = <-p.In:
	}
	return p.readFrom(f, bufs, sizes, offset)
}

// readFrom copies f, then whatever more is ready on In, into bufs, up to
// len(bufs) frames.
func (p *Port) readFrom(f []byte, bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for {
		if len(f) > len(bufs[n])-offset {
			return 0, ErrFrameTooLong
		}
		sizes[n] = copy(bufs[n][offset:], f)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case f = <-p.In:
		default:
			return n, nil
		}
	}
}

// Write implements [vswitch.Port.Write]: it sends a copy of every frame
// on Out.
func (p *Port) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case err := <-p.writeErr:
		return 0, err
	default:
	}
	for i, b := range bufs {
		c := append([]byte(nil), b[offset:]...)
		select {
		case p.Out <- c:
		case <-p.closed:
			return i, net.ErrClosed
		}
	}
	return len(bufs), nil
}

// BatchSize implements [vswitch.Port.BatchSize].
func (p *Port) BatchSize() int { return p.batch }

// Close implements [vswitch.Port.Close].
func (p *Port) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Frame is one trunk frame with its fence and host: for In, the host that
// sent it; for Out, the host WriteTrunk was asked to send it to
// ([vswitch.Broadcast]: flood).
type Frame struct {
	Fence uint32
	Host  vswitch.MAC
	Data  []byte
}

// Trunk is a [vswitch.Trunk] whose frames travel over channels, like [Port].
type Trunk struct {
	In  chan Frame
	Out chan Frame

	batch     int
	closeOnce sync.Once
	closed    chan struct{}
	readErr   chan error
}

var _ vswitch.Trunk = (*Trunk)(nil)

// NewTrunk returns a Trunk with the given batch size and Out capacity.
func NewTrunk(batch, outCap int) *Trunk {
	return &Trunk{
		In:      make(chan Frame, 1024),
		Out:     make(chan Frame, outCap),
		batch:   batch,
		closed:  make(chan struct{}),
		readErr: make(chan error, 1),
	}
}

// FailRead makes a blocked or the next ReadTrunk return err.
func (t *Trunk) FailRead(err error) {
	select {
	case t.readErr <- err:
	default:
	}
}

// Closed is closed when Close has been called.
func (t *Trunk) Closed() <-chan struct{} { return t.closed }

// ReadTrunk implements [vswitch.Trunk.ReadTrunk].
func (t *Trunk) ReadTrunk(bufs [][]byte, sizes []int, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	var f Frame
	select {
	case <-t.closed:
		return 0, net.ErrClosed
	case err := <-t.readErr:
		return 0, err
	case f = <-t.In:
	}
	n := 0
	for {
		if len(f.Data) > len(bufs[n])-offset {
			return 0, ErrFrameTooLong
		}
		sizes[n] = copy(bufs[n][offset:], f.Data)
		fences[n], hosts[n] = f.Fence, f.Host
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case f = <-t.In:
		default:
			return n, nil
		}
	}
}

// WriteTrunk implements [vswitch.Trunk.WriteTrunk].
func (t *Trunk) WriteTrunk(bufs [][]byte, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	for i, b := range bufs {
		f := Frame{Fence: fences[i], Host: hosts[i], Data: append([]byte(nil), b[offset:]...)}
		select {
		case t.Out <- f:
		case <-t.closed:
			return i, net.ErrClosed
		}
	}
	return len(bufs), nil
}

// BatchSize implements [vswitch.Trunk.BatchSize].
func (t *Trunk) BatchSize() int { return t.batch }

// Close implements [vswitch.Trunk.Close].
func (t *Trunk) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}

// TryPort is a [Port] that also implements [vswitch.TryWriter]: TryWrite
// sends copies on Out for as long as Out has room and never blocks; Write
// blocks as Port's does. Both scribble over the 4 bytes of headroom before
// each frame (as a stream port writes its length there), and both record a
// violation if they ever run at the same time.
type TryPort struct {
	*Port

	busy       atomic.Bool
	direct     atomic.Uint64 // frames sent by TryWrite
	queued     atomic.Uint64 // frames sent by Write
	violations atomic.Uint64
}

var _ vswitch.TryWriter = (*TryPort)(nil)

// NewTryPort returns a TryPort, as [NewPort].
func NewTryPort(batch, outCap int) *TryPort { return &TryPort{Port: NewPort(batch, outCap)} }

func (p *TryPort) enter() {
	if !p.busy.CompareAndSwap(false, true) {
		p.violations.Add(1)
	}
}

func (p *TryPort) leave() { p.busy.Store(false) }

// TryWrite implements [vswitch.TryWriter.TryWrite].
func (p *TryPort) TryWrite(bufs [][]byte, offset int) (int, error) {
	p.enter()
	defer p.leave()
	select {
	case err := <-p.writeErr:
		return 0, err
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	for i, b := range bufs {
		copy(b[offset-4:offset], "\xee\xee\xee\xee")
		c := append([]byte(nil), b[offset:]...)
		select {
		case p.Out <- c:
			p.direct.Add(1)
		default:
			return i, nil
		}
	}
	return len(bufs), nil
}

// Write implements [vswitch.Port.Write].
func (p *TryPort) Write(bufs [][]byte, offset int) (int, error) {
	p.enter()
	defer p.leave()
	for _, b := range bufs {
		copy(b[offset-4:offset], "\xee\xee\xee\xee")
	}
	n, err := p.Port.Write(bufs, offset)
	p.queued.Add(uint64(max(n, 0)))
	return n, err
}

// Direct returns how many frames TryWrite sent.
func (p *TryPort) Direct() uint64 { return p.direct.Load() }

// Queued returns how many frames Write sent.
func (p *TryPort) Queued() uint64 { return p.queued.Load() }

// Violations returns how many times Write and TryWrite overlapped.
func (p *TryPort) Violations() uint64 { return p.violations.Load() }

// WaitPort is a [Port] that also implements [vswitch.ReadWaiter]: the
// switch takes its read buffers only once a frame is on In.
type WaitPort struct {
	*Port
	head []byte // a frame WaitRead took from In; nil: none
}

var _ vswitch.ReadWaiter = (*WaitPort)(nil)

// NewWaitPort returns a WaitPort, as [NewPort].
func NewWaitPort(batch, outCap int) *WaitPort { return &WaitPort{Port: NewPort(batch, outCap)} }

// WaitRead implements [vswitch.ReadWaiter]: it blocks until a frame is on
// In, an error was set with FailRead, or the port is closed.
func (p *WaitPort) WaitRead() error {
	if p.head != nil {
		return nil
	}
	select {
	case <-p.closed:
		return net.ErrClosed
	case err := <-p.readErr:
		return err
	case p.head = <-p.In:
		return nil
	}
}

// Read implements [vswitch.Port.Read]: the frame WaitRead took first.
func (p *WaitPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.head == nil {
		return p.Port.Read(bufs, sizes, offset)
	}
	f := p.head
	p.head = nil
	return p.readFrom(f, bufs, sizes, offset)
}
