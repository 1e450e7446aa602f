package attach

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A liveness probe (a second corral checking whether a socket path is
// held, `nc -z`, a health check) connects and closes without a byte. A
// stream listener waits up to probeGrace for a new connection's first
// byte: a connection that ends before sending anything is a probe, logged
// at debug and never a port, so the switch logs no attach and detach for
// it. A client that sends nothing for probeGrace is attached then; one
// that sends at once is attached at once.
var probeGrace = 250 * time.Millisecond

// maxProbing bounds the connections of one listener waiting for their
// first byte; beyond it, new connections are attached without the wait.
const maxProbing = 64

// isProbe waits until c has a byte to read, has ended, or grace has passed,
// and reports whether it ended without sending a byte. It consumes nothing
// (MSG_PEEK). Connections without a file descriptor are never probes.
func isProbe(c net.Conn, grace time.Duration) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	if err := c.SetReadDeadline(time.Now().Add(grace)); err != nil {
		return false
	}
	defer c.SetReadDeadline(time.Time{})
	var (
		n    int
		perr error
		buf  [1]byte
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return !errors.Is(perr, unix.EAGAIN) && !errors.Is(perr, unix.EINTR)
	})
	if err != nil {
		return false // the deadline: a quiet client
	}
	if perr != nil {
		// Reset before a byte: a probe that closed abortively.
		return errors.Is(perr, unix.ECONNRESET)
	}
	return n == 0
}
