package attach

import (
	"fmt"
	"runtime"
)

// CheckOS reports an address this OS cannot serve, naming the scheme and
// the OS: vsock needs Linux's AF_VSOCK, unixpacket an AF_UNIX
// SOCK_SEQPACKET (not on macOS). (ParseAddr already refuses a socket
// path longer than this OS's sockaddr_un holds, MaxSocketPath.)
// Configuration validation calls it, so these fail before anything
// starts.
func CheckOS(a Addr) error {
	switch a.Scheme {
	case Vsock:
		if !haveVsock {
			return fmt.Errorf("vsock:// needs AF_VSOCK, which corral has on Linux only, and this is %s (vfkit and krunkit expose a guest's vsock ports as unix sockets on the host: use unix://)", runtime.GOOS)
		}
	case Unixpacket:
		if !haveSeqpacket {
			return fmt.Errorf("unixpacket:// needs AF_UNIX SOCK_SEQPACKET, which %s does not have: use unixgram:// or unix://", runtime.GOOS)
		}
	}
	return nil
}
