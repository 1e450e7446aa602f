//go:build !linux && !darwin

package attach

import "golang.org/x/sys/unix"

// msgNoSignal: no SIGPIPE on a seqpacket connection the peer closed.
const msgNoSignal = unix.MSG_NOSIGNAL
