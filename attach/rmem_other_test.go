//go:build !linux

package attach

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// socketRmem returns the bytes queued on a socket (FIONREAD: every queued
// datagram on the BSDs), which grows with every datagram queued.
func socketRmem(t *testing.T, rc syscall.RawConn) uint32 {
	t.Helper()
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), fionread) }); cerr != nil || err != nil {
		t.Fatalf("FIONREAD: %v %v", cerr, err)
	}
	return uint32(n)
}

// fionread is FIONREAD, _IOR('f', 127, int), on darwin and the BSDs.
const fionread = 0x4004667f
