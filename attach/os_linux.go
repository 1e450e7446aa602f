package attach

// What this OS offers (see CheckOS).
const (
	haveVsock     = true // AF_VSOCK
	haveSeqpacket = true // AF_UNIX SOCK_SEQPACKET
	// MaxSocketPath is the longest unix socket path: sockaddr_un's
	// sun_path holds 108 bytes with the NUL.
	MaxSocketPath = 107
)
