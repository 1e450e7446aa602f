package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

// ErrInUse is returned when a unix socket path is held by a live socket.
var ErrInUse = errors.New("socket in use by a live listener")

// socketFile is a unix socket file this package created; remove deletes
// it only if it is still the same file (QEMU, for one, deletes socket
// paths it does not own).
type socketFile struct {
	path     string
	dev, ino uint64
}

func (f *socketFile) remove() {
	if f == nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(f.path, &st); err != nil {
		return
	}
	if uint64(st.Dev) == f.dev && uint64(st.Ino) == f.ino { // Dev is int32 on darwin
		os.Remove(f.path)
	}
}

// prepareUnixPath creates the parent directory (0700) when missing and
// removes a stale socket file at path; a live one is [ErrInUse].
func prepareUnixPath(path, network string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	// Someone accepting (or bound, for datagrams) makes connect succeed;
	// a socket file nobody holds refuses it.
	c, err := net.DialTimeout(network, path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
		return nil
	}
	if errors.Is(err, syscall.EPROTOTYPE) {
		return fmt.Errorf("%s: %w (a socket of another type)", path, ErrInUse)
	}
	return fmt.Errorf("%s: %w (probe: %v)", path, ErrInUse, err)
}

// unixListenConfig returns a ListenConfig whose sockets get mode before
// bind (Linux creates the file with the socket inode's mode less the
// umask), so the file never exists with wider permissions.
func unixListenConfig(mode fs.FileMode) *net.ListenConfig {
	return &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), uint32(mode.Perm())) })
		if err != nil {
			return fmt.Errorf("fchmod socket: %w", err)
		}
		return nil
	}}
}

// finishUnixSocket sets the exact mode on the file just bound (the umask
// may have cleared bits) and records its identity for removal.
func finishUnixSocket(path string, mode fs.FileMode) (*socketFile, error) {
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return nil, fmt.Errorf("chmod: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, err
	}
	return &socketFile{path: path, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// listenUnix binds a unix socket of network ("unix", "unixpacket",
// "unixgram") at path with mode, removing a stale file first.
func listenUnix(network, path string, mode fs.FileMode) (any, *socketFile, error) {
	if err := prepareUnixPath(path, network); err != nil {
		return nil, nil, err
	}
	lc := unixListenConfig(mode)
	var (
		x   any
		err error
	)
	if network == "unixgram" {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(context.Background(), network, path)
		x = pc
	} else {
		var ln net.Listener
		ln, err = lc.Listen(context.Background(), network, path)
		if err == nil {
			ln.(*net.UnixListener).SetUnlinkOnClose(false) // removed by socketFile
		}
		x = ln
	}
	if err != nil {
		return nil, nil, err
	}
	sf, err := finishUnixSocket(path, mode)
	if err != nil {
		if c, ok := x.(interface{ Close() error }); ok {
			c.Close()
		}
		os.Remove(path)
		return nil, nil, err
	}
	return x, sf, nil
}

// ListenUnixStream listens on a unix stream socket at path created with
// mode (0 means 0600), for other servers of corral (the admin API): the
// parent directory is created 0700 when missing, a stale socket file is
// replaced, a live one is [ErrInUse]. Close removes the file.
func ListenUnixStream(path string, mode fs.FileMode) (net.Listener, error) {
	if mode == 0 {
		mode = DefaultSocketMode
	}
	x, sf, err := listenUnix("unix", path, mode)
	if err != nil {
		return nil, fmt.Errorf("listen unix://%s: %w", path, err)
	}
	return &removingListener{Listener: x.(net.Listener), sf: sf}, nil
}

// removingListener is a net.Listener that removes its socket file on Close.
type removingListener struct {
	net.Listener
	sf   *socketFile
	once sync.Once
}

// Close implements net.Listener.Close and removes the socket file.
func (l *removingListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.sf.remove)
	return err
}

// portSet tracks the ports a listener made, to close them with it.
type portSet struct {
	mu     sync.Mutex
	ports  map[vswitch.Port]struct{} // guarded by mu
	closed bool                      // guarded by mu
}

// add records p, or reports false when the set is closed.
func (s *portSet) add(p vswitch.Port) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.ports == nil {
		s.ports = make(map[vswitch.Port]struct{})
	}
	s.ports[p] = struct{}{}
	return true
}

func (s *portSet) remove(p vswitch.Port) {
	s.mu.Lock()
	delete(s.ports, p)
	s.mu.Unlock()
}

// closeAll closes every port and refuses new ones.
func (s *portSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	ports := s.ports
	s.ports = nil
	s.mu.Unlock()
	for p := range ports {
		p.Close()
	}
}

func (s *portSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ports)
}

// streamListener accepts connections (unix, tcp, vsock streams, and
// unixpacket) and makes a port of each.
type streamListener struct {
	addr   Addr
	ln     net.Listener
	sf     *socketFile
	opts   Options
	log    *slog.Logger
	onPort OnPort
	ports  portSet
	wg     sync.WaitGroup
	once   sync.Once
	done   chan struct{}

	refused, frameTimeouts atomic.Uint64
}

func listenStream(addr Addr, opts Options, onPort OnPort) (*streamListener, error) {
	l := &streamListener{addr: addr, opts: opts, onPort: onPort, done: make(chan struct{})}
	l.opts.frameTimeouts = &l.frameTimeouts
	switch addr.Scheme {
	case Unix, Unixpacket:
		network := "unix"
		if addr.Scheme == Unixpacket {
			network = "unixpacket"
		}
		x, sf, err := listenUnix(network, addr.Target, opts.SocketMode)
		if err != nil {
			return nil, err
		}
		l.ln, l.sf = x.(net.Listener), sf
	case TCP:
		ln, err := net.Listen("tcp", addr.Target)
		if err != nil {
			return nil, err
		}
		l.ln = ln
		l.addr.Target = ln.Addr().String()
	case Vsock:
		cid, port, err := vsockTarget(addr.Target)
		if err != nil {
			return nil, err
		}
		ln, err := vsock.ListenContextID(cid, port, nil)
		if err != nil {
			return nil, err
		}
		l.ln = ln
		if a, ok := ln.Addr().(*vsock.Addr); ok && port == 0 {
			l.addr.Target = fmt.Sprintf("%s:%d", cidString(cid), a.Port)
		}
	}
	l.log = opts.Logger.With("listen", l.addr.String())
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// vsockTarget parses "CID:PORT" or ":PORT" (any CID).
func vsockTarget(t string) (cid, port uint32, err error) {
	a, err := ParseAddr("vsock://" + t)
	if err != nil {
		return 0, 0, err
	}
	c, p, _ := cutColon(a.Target)
	cid = vmaddrCIDAny
	if c != "" {
		cid, _ = parsePort(c, 1<<32-1)
	}
	port, _ = parsePort(p, 1<<32-1)
	return cid, port, nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func cidString(cid uint32) string {
	if cid == vmaddrCIDAny {
		return ""
	}
	return fmt.Sprint(cid)
}

// Addr implements Listener.Addr.
func (l *streamListener) Addr() Addr { return l.addr }

// PortStats implements Listener.PortStats.
func (l *streamListener) PortStats() PortStats {
	return PortStats{Ports: l.ports.len(), Refused: l.refused.Load(), FrameTimeouts: l.frameTimeouts.Load()}
}

// Close implements Listener.Close.
func (l *streamListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.wg.Wait()
		l.ports.closeAll()
		l.sf.remove()
	})
	return err
}

// closing reports whether err comes from a Close: done is closed, or err
// is [net.ErrClosed].
func closing(done <-chan struct{}, err error) bool {
	select {
	case <-done:
		return true
	default:
		return errors.Is(err, net.ErrClosed)
	}
}

// accept is the accept goroutine.
func (l *streamListener) accept() {
	defer l.wg.Done()
	var delay time.Duration
	for n := 0; ; {
		c, err := l.ln.Accept()
		if err != nil {
			if closing(l.done, err) {
				return
			}
			// EMFILE and friends: back off and try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		if limit := l.opts.MaxPorts; limit > 0 && l.ports.len() >= limit {
			c.Close() // before anything is made for it
			limitLog(l.log, l.refused.Add(1), "connection refused: listener has its maximum of ports (limits.ports_per_listener)",
				"max_ports", limit, "remote", c.RemoteAddr())
			continue
		}
		n++
		name := fmt.Sprintf("%s#%d", l.addr, n)
		if ra := c.RemoteAddr(); ra != nil && ra.String() != "" && ra.String() != "@" {
			name += "(" + ra.String() + ")"
		}
		l.setup(c, name)
	}
}

// setup makes a port of c and starts it.
// Until its first byte it may still turn out a liveness probe (probe.go).
func (l *streamListener) setup(c net.Conn, name string) {
	var p vswitch.Port
	if l.addr.Scheme == Unixpacket {
		pp, err := newPacketPort(c.(*net.UnixConn), true, l.opts, nil)
		if err != nil {
			l.log.Warn("port setup failed", "port", name, "err", err)
			c.Close()
			return
		}
		pp.fb = newFirstByte(probeGrace)
		p = pp
	} else {
		sp := newStreamPort(c, l.opts)
		sp.fb = newFirstByte(probeGrace)
		p = sp
	}
	l.start(p, name)
}

// start hands p to onPort and closes it when the switch is done with it
// or the listener closes.
func (l *streamListener) start(p vswitch.Port, name string) {
	if !l.ports.add(p) {
		p.Close()
		return
	}
	done, err := l.onPort(p, name)
	if err != nil {
		l.log.Warn("port refused", "port", name, "err", err)
		l.ports.remove(p)
		p.Close()
		return
	}
	l.log.Debug("port connected", "port", name)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-done:
		case <-l.done:
		}
		l.ports.remove(p)
		p.Close()
	}()
}
