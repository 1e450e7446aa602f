package attach

// What this OS offers (see CheckOS).
const (
	haveVsock     = false // AF_VSOCK exists only inside Virtualization.framework guests
	haveSeqpacket = false // no AF_UNIX SOCK_SEQPACKET
	// MaxSocketPath is the longest unix socket path: sockaddr_un's
	// sun_path holds 104 bytes with the NUL.
	MaxSocketPath = 103
)

// msgNoSignal: darwin has no MSG_NOSIGNAL (SO_NOSIGPIPE instead); the Go
// runtime already turns SIGPIPE on a socket into EPIPE.
const msgNoSignal = 0
