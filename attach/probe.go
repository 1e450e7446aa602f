package attach

import (
	"errors"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A liveness probe (a second corral checking whether a socket path is
// held, `nc -z`, a health check) connects and closes without a byte. A
// connection accepted by a stream or seqpacket listener is a port at once
// — it receives every frame from the start — but tells the switch
// (vswitch.Settler) whether it is a client or a probe: a client once its
// first byte arrives or after probeGrace of silence, a probe when it ends
// before its first byte. The switch announces (logs, events) only clients,
// so a probe leaves no attach and detach lines.
var probeGrace = 250 * time.Millisecond

// firstByte is a listener connection's vswitch.Settler. The zero value
// (and a nil pointer) is settled from the start.
type firstByte struct {
	once  sync.Once
	ch    chan struct{}
	probe bool
	timer *time.Timer
}

// newFirstByte returns a firstByte that settles as a client after grace
// unless the connection settles before.
func newFirstByte(grace time.Duration) *firstByte {
	f := &firstByte{ch: make(chan struct{})}
	f.timer = time.AfterFunc(grace, func() { f.settle(false) })
	return f
}

// settle records, once, whether the connection was a probe.
func (f *firstByte) settle(probe bool) {
	if f == nil || f.ch == nil {
		return
	}
	f.once.Do(func() {
		f.probe = probe
		close(f.ch)
	})
}

// read settles after a read of n bytes that returned err: a client when
// bytes came, a probe when the stream ended (EOF, reset) before any.
// It is called by the port's reader, which started after the timer was
// set, so it may stop the timer.
func (f *firstByte) read(n int, err error) {
	if f == nil {
		return
	}
	select {
	case <-f.ch:
		return // settled already: the common case, no lock
	default:
	}
	switch {
	case n > 0:
		f.settle(false)
		f.timer.Stop()
	case errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET):
		f.settle(true)
		f.timer.Stop()
	}
}

// Settled implements vswitch.Settler.
func (f *firstByte) Settled() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.ch
}

// Probe implements vswitch.Settler: meaningful once Settled is closed.
func (f *firstByte) Probe() bool { return f != nil && f.probe }
