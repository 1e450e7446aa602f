package attach

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is one message of a batched receive or send: on Linux the
// kernel's struct mmsghdr, for recvmmsg(2) and sendmmsg(2).
type mmsghdr = unix.Mmsghdr

// portableMmsg makes recvmmsg and sendmmsg take the path of the other
// Unixes (one recvmsg(2) or sendmsg(2) per message), so Linux tests
// exercise it. Set only by tests, before any socket is made.
var portableMmsg bool

// recvmmsg receives up to len(hdrs) (> 0) messages with one non-blocking
// recvmmsg(2), retrying on EINTR. It returns how many it got, or the
// errno (EAGAIN: nothing to read yet).
func recvmmsg(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	if portableMmsg {
		return recvmsgEach(fd, hdrs)
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(r), e
		}
	}
}

// sendmmsg sends the messages of hdrs (not empty) with one non-blocking
// sendmmsg(2) (no SIGPIPE). It returns how many the kernel took (> 0), or
// the errno of the first when it took none; EINTR is the caller's to retry.
func sendmmsg(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	if portableMmsg {
		return sendmsgEach(fd, hdrs)
	}
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), sendFlags, 0, 0)
	return int(r), e
}

// sendFlags are the flags of every send: non-blocking, and no SIGPIPE on
// a seqpacket connection the peer closed.
const sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
