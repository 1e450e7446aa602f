package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

// dialOnce connects once; opts has its defaults.
func dialOnce(ctx context.Context, addr Addr, opts Options) (vswitch.Port, error) {
	var d net.Dialer
	switch addr.Scheme {
	case Unix, TCP:
		network := "unix"
		if addr.Scheme == TCP {
			network = "tcp"
		}
		c, err := d.DialContext(ctx, network, addr.Target)
		if err != nil {
			return nil, err
		}
		return newStreamPort(c, opts), nil
	case Vsock:
		cid, port, err := vsockTarget(addr.Target)
		if err != nil {
			return nil, err
		}
		if cid == vmaddrCIDAny {
			return nil, errors.New("vsock: dialing needs a context ID (vsock://CID:PORT)")
		}
		c, err := vsock.DialContext(ctx, cid, port, nil)
		if err != nil {
			return nil, err
		}
		return newStreamPort(c, opts), nil
	case Unixpacket:
		c, err := d.DialContext(ctx, "unixpacket", addr.Target)
		if err != nil {
			return nil, err
		}
		p, err := newPacketPort(c.(*net.UnixConn), true, opts, nil)
		if err != nil {
			c.Close()
			return nil, err
		}
		return p, nil
	case UDP:
		c, err := d.DialContext(ctx, "udp", addr.Target)
		if err != nil {
			return nil, err
		}
		growSocketBuffers(c)
		p, err := newPacketPort(c.(*net.UDPConn), false, opts, nil)
		if err != nil {
			c.Close()
			return nil, err
		}
		return p, nil
	case Unixgram:
		return dialUnixgram(addr.Target, opts)
	case Stdio:
		return NewStdioPort(opts)
	}
	return nil, badAddr("unknown scheme %q", addr.Scheme)
}

// dialUnixgram binds a socket file in a private directory (under
// $XDG_RUNTIME_DIR when set, else the temporary directory) and connects it
// to path. Closing the port removes the file and the directory.
func dialUnixgram(path string, opts Options) (vswitch.Port, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "corral-dgram-")
	if err != nil {
		return nil, err
	}
	local := filepath.Join(dir, "s")
	cleanup := func() { os.RemoveAll(dir) }
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		cleanup()
		return nil, err
	}
	growSocketBuffers(c)
	if err := os.Chmod(local, opts.SocketMode.Perm()); err != nil {
		c.Close()
		cleanup()
		return nil, err
	}
	p, err := newPacketPort(c, false, opts, cleanup)
	if err != nil {
		c.Close()
		cleanup()
		return nil, err
	}
	return p, nil
}

// stdio joins duplicates of the process's standard input and output into
// one io.ReadWriteCloser; its SyscallConn is standard output's, so
// batches are written with writev.
type stdio struct {
	in, out *os.File
	once    sync.Once
}

// Read implements io.Reader on standard input.
func (s *stdio) Read(b []byte) (int, error) { return s.in.Read(b) }

// Write implements io.Writer on standard output.
func (s *stdio) Write(b []byte) (int, error) { return s.out.Write(b) }

// SyscallConn implements syscall.Conn with standard output's descriptor.
func (s *stdio) SyscallConn() (syscall.RawConn, error) {
	return s.out.SyscallConn()
}

// Close implements io.Closer: it closes both duplicates, once.
func (s *stdio) Close() error {
	var err error
	s.once.Do(func() {
		err = errors.Join(s.in.Close(), s.out.Close())
	})
	return err
}

// dupNonblock duplicates fd and puts it in non-blocking mode, so that the
// runtime poller serves it and Close interrupts a blocked Read.
func dupNonblock(fd int, name string) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("%s: set non-blocking: %w", name, err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// NewStdioPort returns a stream port (4-byte big-endian length framing)
// on the process's standard input and output, for `corral plug --stdio`
// cables over ssh. It works on duplicates of descriptors 0 and 1 set to
// non-blocking mode (which the open file descriptions share: nothing else
// should use standard output meanwhile); Close closes the duplicates only.
func NewStdioPort(opts Options) (vswitch.Port, error) {
	in, err := dupNonblock(0, "stdin")
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	out, err := dupNonblock(1, "stdout")
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("stdout: %w", err)
	}
	return newStreamPort(&stdio{in: in, out: out}, opts.withDefaults()), nil
}

// stdioListener is "listening" on stdio: one port, made at once.
type stdioListener struct {
	p    vswitch.Port
	once sync.Once
	done chan struct{}
	wg   sync.WaitGroup
}

func listenStdio(opts Options, onPort OnPort) (*stdioListener, error) {
	p, err := NewStdioPort(opts)
	if err != nil {
		return nil, err
	}
	done, err := onPort(p, "stdio")
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("port refused: %w", err)
	}
	l := &stdioListener{p: p, done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-done:
		case <-l.done:
		}
		p.Close()
	}()
	return l, nil
}

// Addr implements Listener.Addr.
func (l *stdioListener) Addr() Addr { return Addr{Scheme: Stdio} }

// PortStats implements Listener.PortStats: one port, until it closes.
func (l *stdioListener) PortStats() PortStats {
	select {
	case <-l.done:
		return PortStats{}
	default:
		return PortStats{Ports: 1}
	}
}

// Close implements Listener.Close.
func (l *stdioListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.wg.Wait()
	})
	return nil
}
