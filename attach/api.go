package attach

// API skeleton written by the lead so that cmd compiles from the start. The
// attach implementer replaces the bodies (and may move the declarations),
// keeping the exported signatures; changing one means telling the lead.

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"

	vswitch "github.com/corralnet/corral/switch"
)

var errTODO = errors.New("attach: not implemented yet")

// Scheme is an attachment scheme of DESIGN.md section 5.
type Scheme string

// The schemes.
const (
	Unix       Scheme = "unix"
	TCP        Scheme = "tcp"
	Unixgram   Scheme = "unixgram"
	Unixpacket Scheme = "unixpacket"
	UDP        Scheme = "udp"
	Vsock      Scheme = "vsock"
	Stdio      Scheme = "stdio"
)

// Addr is a parsed attachment address.
type Addr struct {
	Scheme Scheme
	// Path for unix, unixgram and unixpacket; host:port for tcp and udp;
	// "CID:PORT" or ":PORT" for vsock; empty for stdio.
	Target string
}

// String formats a back into the form ParseAddr reads.
func (a Addr) String() string {
	if a.Scheme == Stdio {
		return "stdio"
	}
	return string(a.Scheme) + "://" + a.Target
}

// ParseAddr parses "unix:///path", "tcp://host:port", "unixgram:///path",
// "unixpacket:///path", "udp://host:port", "vsock://:port",
// "vsock://cid:port" or "stdio". Environment variables ($XDG_RUNTIME_DIR)
// are expanded by the caller (cmd), not here.
func ParseAddr(s string) (Addr, error) { return Addr{}, errTODO }

// Options tune listeners and dialers.
type Options struct {
	// SocketMode is the mode of created unix socket files; 0 means 0600.
	SocketMode fs.FileMode
	// MaxFrame is the largest frame a port accepts; 0 means vswitch.MaxFrameSize.
	MaxFrame int
	Logger   *slog.Logger
}

// OnPort is called for every new port (an accepted connection, a new
// datagram peer, a successful dial). name identifies the peer for logs and
// the admin API. It returns a channel that is closed when the switch is done
// with the port (vswitch.PortHandle.Done), or an error to refuse the port
// (the port is then closed).
type OnPort func(p vswitch.Port, name string) (done <-chan struct{}, err error)

// Listener accepts ports on one address until closed.
type Listener interface {
	// Addr is the address listened on (with the real port for tcp/udp ":0").
	Addr() Addr
	// Close stops accepting, closes every port it made and removes the
	// socket file it created.
	Close() error
}

// Listen binds addr and calls onPort for each new port from a goroutine the
// listener owns. Errors binding are returned at once.
func Listen(ctx context.Context, addr Addr, opts Options, onPort OnPort) (Listener, error) {
	return nil, errTODO
}

// Dial connects to addr, calls onPort, and when the port's done channel
// closes, dials again with exponential backoff (100 ms doubling to 5 s),
// until ctx is cancelled. It returns when ctx is done.
func Dial(ctx context.Context, addr Addr, opts Options, onPort OnPort) error {
	return errTODO
}

// DialOnce connects to addr once and returns the port (for `corral plug`).
func DialOnce(ctx context.Context, addr Addr, opts Options) (vswitch.Port, error) {
	return nil, errTODO
}
