package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

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

// schemes lists the schemes in the order error messages name them.
var schemes = []Scheme{Unix, TCP, Unixgram, Unixpacket, UDP, Vsock, Stdio}

// isUnixFamily reports whether s addresses a unix socket path.
func (s Scheme) isUnixFamily() bool { return s == Unix || s == Unixgram || s == Unixpacket }

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

// ErrBadAddr is wrapped by every error ParseAddr returns.
var ErrBadAddr = errors.New("bad attachment address")

// maxUnixPath is the longest path a sockaddr_un holds on this OS
// (MaxSocketPath: 107 bytes on Linux, 103 on macOS and the BSDs).
const maxUnixPath = MaxSocketPath

func badAddr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadAddr, fmt.Sprintf(format, args...))
}

// ParseAddr parses "unix:///path", "tcp://host:port", "unixgram:///path",
// "unixpacket:///path", "udp://host:port", "vsock://:port",
// "vsock://cid:port" or "stdio". Environment variables ($XDG_RUNTIME_DIR)
// are expanded by the caller (cmd), not here. Unix paths must be absolute
// (they are cleaned) and fit a sockaddr_un; tcp and udp need a numeric
// port (the host may be empty, an IP literal or a name); vsock needs a
// numeric port and an optional numeric context ID. Every error wraps
// [ErrBadAddr].
func ParseAddr(s string) (Addr, error) {
	if s == "stdio" || s == "stdio://" || s == "-" {
		return Addr{Scheme: Stdio}, nil
	}
	scheme, target, ok := strings.Cut(s, "://")
	if !ok {
		if s == "" {
			return Addr{}, badAddr("empty address")
		}
		return Addr{}, badAddr("missing scheme in %q (want SCHEME://TARGET with SCHEME one of %s)", s, schemeList())
	}
	sc := Scheme(strings.ToLower(scheme))
	switch sc {
	case Unix, Unixgram, Unixpacket:
		if target == "" {
			return Addr{}, badAddr("%s: missing socket path (want %s:///absolute/path)", sc, sc)
		}
		if !strings.HasPrefix(target, "/") {
			return Addr{}, badAddr("%s: socket path %q is not absolute (want %s:///absolute/path)", sc, target, sc)
		}
		p := filepath.Clean(target)
		if p == "/" || strings.HasSuffix(target, "/") {
			return Addr{}, badAddr("%s: socket path %q names a directory", sc, target)
		}
		if len(p) > maxUnixPath {
			return Addr{}, badAddr("%s: socket path is %d bytes, longer than the %d a unix socket address holds on %s", sc, len(p), maxUnixPath, runtime.GOOS)
		}
		if strings.IndexByte(p, 0) >= 0 {
			return Addr{}, badAddr("%s: socket path contains a NUL byte", sc)
		}
		return Addr{Scheme: sc, Target: p}, nil
	case TCP, UDP:
		if target == "" {
			return Addr{}, badAddr("%s: missing host:port", sc)
		}
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			return Addr{}, badAddr("%s: %q is not host:port (IPv6 hosts need brackets: [::1]:PORT)", sc, target)
		}
		if port == "" {
			return Addr{}, badAddr("%s: missing port in %q", sc, target)
		}
		if _, err := parsePort(port, math.MaxUint16); err != nil {
			return Addr{}, badAddr("%s: port %q: %v", sc, port, err)
		}
		if strings.ContainsAny(host, "/ ") {
			return Addr{}, badAddr("%s: bad host %q", sc, host)
		}
		return Addr{Scheme: sc, Target: net.JoinHostPort(host, port)}, nil
	case Vsock:
		if target == "" {
			return Addr{}, badAddr("vsock: missing port (want vsock://:PORT or vsock://CID:PORT)")
		}
		cid, port, ok := strings.Cut(target, ":")
		if !ok || port == "" {
			return Addr{}, badAddr("vsock: missing port in %q (want vsock://:PORT or vsock://CID:PORT)", target)
		}
		if _, err := parsePort(port, math.MaxUint32); err != nil {
			return Addr{}, badAddr("vsock: port %q: %v", port, err)
		}
		if cid != "" {
			if _, err := parsePort(cid, math.MaxUint32); err != nil {
				return Addr{}, badAddr("vsock: context ID %q: %v", cid, err)
			}
		}
		return Addr{Scheme: Vsock, Target: target}, nil
	case Stdio:
		return Addr{}, badAddr("stdio takes no target (write just \"stdio\")")
	case "":
		return Addr{}, badAddr("missing scheme in %q (want one of %s)", s, schemeList())
	default:
		return Addr{}, badAddr("unknown scheme %q (want one of %s)", scheme, schemeList())
	}
}

func schemeList() string {
	var b strings.Builder
	for i, s := range schemes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}

// parsePort parses a decimal number up to max.
func parsePort(s string, max uint64) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a decimal number")
	}
	if n > max {
		return 0, fmt.Errorf("larger than %d", max)
	}
	return uint32(n), nil
}

// Options tune listeners and dialers.
type Options struct {
	// SocketMode is the mode of created unix socket files; 0 means 0600.
	SocketMode fs.FileMode
	// MaxFrame is the largest frame a port accepts; 0 means vswitch.MaxFrameSize.
	MaxFrame int
	// PeerIdle is how long a datagram peer (unixgram, udp listeners) may
	// stay silent before its port is closed; 0 means [DefaultPeerIdle],
	// negative means never.
	PeerIdle time.Duration
	// QueueLen is the receive queue, in frames, of each datagram peer of a
	// listener; 0 means [DefaultPeerQueue]. When it is full, further frames
	// from that peer are dropped and counted.
	QueueLen int
	// MaxPorts bounds the ports one listener has at a time
	// (limits.ports_per_listener): a stream listener closes connections
	// beyond it at once, a datagram listener drops datagrams from new
	// peers beyond it before making anything for them. 0 means
	// [DefaultMaxPorts], negative means no bound.
	MaxPorts int
	// FrameTimeout is how long a stream port may hold a started frame
	// (part of a length prefix or of a frame) before it is closed
	// (limits.frame_timeout); an idle port is never closed. 0 means
	// [DefaultFrameTimeout], negative means never.
	FrameTimeout time.Duration
	Logger       *slog.Logger

	// frameTimeouts, when set (by a listener), counts the ports closed
	// for FrameTimeout.
	frameTimeouts *atomic.Uint64
}

const (
	// DefaultSocketMode is the mode of created unix socket files.
	DefaultSocketMode fs.FileMode = 0o600
	// DefaultPeerIdle is how long a silent datagram peer keeps its port.
	DefaultPeerIdle = 5 * time.Minute
	// DefaultPeerQueue is a datagram peer's receive queue in frames.
	DefaultPeerQueue = 256
	// DefaultMaxPorts is how many ports one listener has at most.
	DefaultMaxPorts = 1024
	// BatchSize is the BatchSize of every port this package makes.
	BatchSize = 64
)

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.SocketMode == 0 {
		o.SocketMode = DefaultSocketMode
	}
	if o.MaxFrame <= 0 || o.MaxFrame > vswitch.MaxFrameSize {
		o.MaxFrame = vswitch.MaxFrameSize
	}
	if o.PeerIdle == 0 {
		o.PeerIdle = DefaultPeerIdle
	}
	if o.MaxPorts == 0 {
		o.MaxPorts = DefaultMaxPorts
	}
	if o.FrameTimeout == 0 {
		o.FrameTimeout = DefaultFrameTimeout
	}
	if o.QueueLen <= 0 {
		o.QueueLen = DefaultPeerQueue
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
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
	// PortStats returns the listener's port count and limit counters.
	PortStats() PortStats
}

// PortStats counts a listener's ports and what its limits did.
type PortStats struct {
	Ports int `json:"ports"` // ports now (datagram: peers, refused ones included)
	// Refused counts connections closed at once, and datagrams from new
	// peers dropped, because the listener had Options.MaxPorts ports.
	Refused uint64 `json:"refused"`
	// FrameTimeouts counts stream ports closed because a started frame
	// was not completed within Options.FrameTimeout.
	FrameTimeouts uint64 `json:"frame_timeouts"`
	// Expired counts datagram peers closed after Options.PeerIdle.
	Expired uint64 `json:"expired"`
}

// limitLog logs a limit's refusal at warn level for the 1st, 2nd, 4th,
// 8th … occurrence (n is the count after this one): a peer that keeps
// hitting a limit cannot flood the log.
func limitLog(log *slog.Logger, n uint64, msg string, args ...any) {
	if n&(n-1) == 0 {
		log.Warn(msg, append(args, "count", n)...)
	}
}

// Listen binds addr and calls onPort for each new port from a goroutine the
// listener owns. Errors binding are returned at once. When ctx is done the
// listener closes itself, as if Close had been called.
//
// Listening on stdio makes one port on the process's standard input and
// output (see [NewStdioPort]) and passes it to onPort at once.
func Listen(ctx context.Context, addr Addr, opts Options, onPort OnPort) (Listener, error) {
	opts = opts.withDefaults()
	var (
		l   Listener
		err error
	)
	switch addr.Scheme {
	case Unix, TCP, Vsock, Unixpacket:
		l, err = listenStream(addr, opts, onPort)
	case Unixgram, UDP:
		l, err = listenDgram(addr, opts, onPort)
	case Stdio:
		l, err = listenStdio(opts, onPort)
	default:
		err = badAddr("unknown scheme %q", addr.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	return l, nil
}

// DialOnce connects to addr once and returns the port (for `corral plug`).
// Dialed unixgram sockets bind a socket file of their own in a private
// temporary directory, removed when the port closes; dialed udp sockets
// bind an ephemeral port. Both send only to, and accept only from, addr.
// Dialing stdio returns [NewStdioPort].
func DialOnce(ctx context.Context, addr Addr, opts Options) (vswitch.Port, error) {
	opts = opts.withDefaults()
	p, err := dialOnce(ctx, addr, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return p, nil
}

// Backoff bounds of [Dial].
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 5 * time.Second
	// backoffReset is how long a connection must live for the backoff to
	// start again from MinBackoff.
	backoffReset = time.Second
)

// Dial connects to addr, calls onPort, and when the port's done channel
// closes, dials again with exponential backoff (100 ms doubling to 5 s,
// back to 100 ms after a connection that lived more than a second), until
// ctx is cancelled. It returns nil when ctx is done (closing the current
// port), and an error only when addr can never be dialed (a bad scheme).
// Connects and disconnects are logged at info level, the first failure of
// a series of failed attempts at info and the rest at debug.
//
// Dialing stdio makes one port and returns when it is done: stdio cannot
// be dialed again.
func Dial(ctx context.Context, addr Addr, opts Options, onPort OnPort) error {
	opts = opts.withDefaults()
	log := opts.Logger.With("dial", addr.String())
	switch addr.Scheme {
	case Unix, TCP, Vsock, Unixpacket, Unixgram, UDP, Stdio:
	default:
		return fmt.Errorf("dial %s: %w", addr, badAddr("unknown scheme %q", addr.Scheme))
	}
	backoff := MinBackoff
	failing := false
	for n := 0; ; n++ {
		if ctx.Err() != nil {
			return nil
		}
		p, err := dialOnce(ctx, addr, opts)
		if err == nil {
			var done <-chan struct{}
			name := fmt.Sprintf("%s#%d", addr, n+1)
			done, err = onPort(p, name)
			if err != nil {
				p.Close()
				err = fmt.Errorf("port refused: %w", err)
			} else {
				failing = false
				start := time.Now()
				log.Info("connected", "port", name)
				select {
				case <-done:
				case <-ctx.Done():
				}
				p.Close()
				if ctx.Err() != nil {
					log.Info("disconnected", "port", name, "reason", "shutdown")
					return nil
				}
				lived := time.Since(start)
				log.Info("disconnected", "port", name, "lived", lived.Round(time.Millisecond))
				if addr.Scheme == Stdio {
					return nil
				}
				if lived > backoffReset {
					backoff = MinBackoff
				}
			}
		}
		if err != nil {
			if addr.Scheme == Stdio {
				return fmt.Errorf("dial %s: %w", addr, err)
			}
			if !failing {
				log.Info("dial failed, retrying", "err", err, "backoff", backoff)
				failing = true
			} else {
				log.Debug("dial failed, retrying", "err", err, "backoff", backoff)
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, MaxBackoff)
	}
}
