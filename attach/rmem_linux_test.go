package attach

import (
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketRmem returns the receive memory of a socket (SO_MEMINFO), which
// grows with every datagram queued and shrinks only when one is read.
func socketRmem(t *testing.T, rc syscall.RawConn) uint32 {
	t.Helper()
	var m [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(m))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&m[0])), uintptr(unsafe.Pointer(&l)), 0)
	}); err != nil || errno != 0 {
		t.Fatalf("SO_MEMINFO: %v %v", err, errno)
	}
	return m[unix.SK_MEMINFO_RMEM_ALLOC]
}
