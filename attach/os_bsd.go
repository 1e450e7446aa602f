//go:build !linux && !darwin

package attach

import "golang.org/x/sys/unix"

// What this OS offers (see CheckOS).
const (
	haveVsock     = false
	haveSeqpacket = true
	// MaxSocketPath is the longest unix socket path: sockaddr_un's
	// sun_path holds 104 bytes with the NUL.
	MaxSocketPath = 103
)

// msgNoSignal: no SIGPIPE on a seqpacket connection the peer closed.
const msgNoSignal = unix.MSG_NOSIGNAL
