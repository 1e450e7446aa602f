package attach

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvmsgEach is recvmmsg for kernels without it: one non-blocking
// recvmsg(2) per message, stopping at the first that would block or
// fails. Like recvmmsg(2) it reports an error only when it got nothing
// (a later call sees it again). It fills each message's Len and, through
// the kernel, its Hdr.Namelen and Hdr.Flags. It does not allocate.
func recvmsgEach(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	for i := range hdrs {
		h := &hdrs[i]
		for {
			r, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&h.Hdr)), unix.MSG_DONTWAIT)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				if i == 0 {
					return 0, e
				}
				return i, 0
			}
			h.Len = uint32(r)
			break
		}
	}
	return len(hdrs), 0
}

// sendmsgEach is sendmmsg for kernels without it: one non-blocking
// sendmsg(2) per message, stopping at the first that fails. Like
// sendmmsg(2) it reports an error only when it sent nothing.
func sendmsgEach(fd uintptr, hdrs []mmsghdr) (int, syscall.Errno) {
	for i := range hdrs {
		h := &hdrs[i]
		r, _, e := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&h.Hdr)), sendFlags)
		if e != 0 {
			if i == 0 {
				return 0, e
			}
			return i, 0
		}
		h.Len = uint32(r)
	}
	return len(hdrs), 0
}
