//go:build !linux

package attach

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// mmsghdr is one message of a batch: a msghdr and the length received.
// The other Unixes have no recvmmsg(2)/sendmmsg(2) (or, on FreeBSD, only
// as a libc loop), so a batch is one recvmsg(2) or sendmsg(2) per message
// (recvmsgEach, sendmsgEach), the semantics of x/net's batch API there.
type mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

// recvmmsg receives up to len(hdrs) (> 0) messages without blocking, one
// recvmsg(2) each. It returns how many it got, or the errno of the first
// (EAGAIN: nothing to read yet).
func recvmmsg(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) { return recvmsgEach(fd, hdrs) }

// sendmmsg sends the messages of hdrs (not empty) without blocking, one
// sendmsg(2) each. It returns how many were sent (> 0), or the errno of
// the first when none was.
func sendmmsg(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) { return sendmsgEach(fd, hdrs) }

// sendFlags are the flags of every send. Darwin has no MSG_NOSIGNAL; the
// Go runtime turns SIGPIPE on a socket into EPIPE.
const sendFlags = unix.MSG_DONTWAIT | msgNoSignal
