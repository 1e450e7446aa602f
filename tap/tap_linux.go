package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// NetNSDir is where `ip netns add` keeps named network namespaces.
const NetNSDir = "/var/run/netns"

// BatchSize is the most frames one Read returns or one Write takes.
const BatchSize = 64

// Config describes a TAP device to create.
type Config struct {
	// Name is the interface name; empty lets the kernel pick (tapN).
	Name string
	// NetNS is a network namespace name under [NetNSDir], or an absolute
	// path to a namespace file (/proc/PID/ns/net); empty means the
	// namespace of the calling process.
	NetNS string
	// MTU of the interface; 0 keeps the kernel's default (1500).
	MTU int
}

// Validate reports a configuration Open would refuse.
func (c Config) Validate() error {
	if len(c.Name) >= unix.IFNAMSIZ {
		return fmt.Errorf("tap name %q: longer than %d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	if strings.ContainsAny(c.Name, "/ \t\n:") {
		return fmt.Errorf("tap name %q: bad character", c.Name)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65521) {
		return fmt.Errorf("tap MTU %d: want 68 to 65521", c.MTU)
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) && strings.ContainsRune(c.NetNS, '/') {
		return fmt.Errorf("netns %q: want a name or an absolute path", c.NetNS)
	}
	return nil
}

// Device is an open TAP device. It implements vswitch.Port: Read returns
// every frame the device has ready (one read(2) each) after waiting for
// the first; Write makes one write(2) per frame. Closing it deletes the
// interface.
type Device struct {
	f      *os.File
	rc     syscall.RawConn
	name   string
	closed atomic.Bool
	once   sync.Once

	// Read side, owned by the reader.
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerrno error
	rfn    func(fd uintptr) bool

	// Write side, owned by the writer.
	wbufs  [][]byte
	woff   int
	wn     int
	werrno error
	wfn    func(fd uintptr) bool

	// Drops counts frames the kernel refused on Write (EINVAL, EMSGSIZE).
	drops atomic.Uint64
}

// Open creates the TAP device cfg describes (IFF_TAP|IFF_NO_PI), inside
// cfg.NetNS when set, sets its MTU and brings it up.
//
// The namespace switch happens on a dedicated, locked OS thread; if that
// thread cannot switch back, it is left locked so that the runtime
// discards it rather than reuse a thread in the wrong namespace.
func Open(cfg Config) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	type result struct {
		fd   int
		name string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, name, restored, err := create(cfg)
		if restored {
			runtime.UnlockOSThread()
		} // else: exit locked, the thread dies with the goroutine.
		ch <- result{fd, name, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	f := os.NewFile(uintptr(r.fd), "/dev/net/tun:"+r.name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	d := &Device{f: f, rc: rc, name: r.name}
	d.rfn = d.readFn
	d.wfn = d.writeFn
	return d, nil
}

// create runs on a locked thread. restored is false only when the thread
// entered another namespace and could not return.
func create(cfg Config) (fd int, name string, restored bool, err error) {
	restored = true
	if cfg.NetNS != "" {
		path := cfg.NetNS
		if !filepath.IsAbs(path) {
			path = filepath.Join(NetNSDir, path)
		}
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, "", true, fmt.Errorf("open own netns: %w", err)
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, "", true, fmt.Errorf("netns %q: %w", cfg.NetNS, err)
		}
		err = unix.Setns(target, unix.CLONE_NEWNET)
		unix.Close(target)
		if err != nil {
			return -1, "", true, fmt.Errorf("enter netns %q: %w", cfg.NetNS, err)
		}
		defer func() {
			if e := unix.Setns(orig, unix.CLONE_NEWNET); e != nil {
				restored = false
			}
		}()
	}
	fd, name, err = createHere(cfg)
	return fd, name, restored, err
}

// createHere creates and configures the device in the thread's namespace.
func createHere(cfg Config) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(cfg.Name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tap name %q: %w", cfg.Name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("create tap %q: %w", cfg.Name, err)
	}
	name := ifr.Name()
	if err := linkUp(name, cfg.MTU); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tap %s: %w", name, err)
	}
	return fd, name, nil
}

// linkUp sets the MTU (when not 0) and IFF_UP with ioctls on a socket of
// the current namespace.
func linkUp(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if mtu != 0 {
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// Drops is the number of frames the kernel refused on Write.
func (d *Device) Drops() uint64 { return d.drops.Load() }

// BatchSize implements vswitch.Port.BatchSize.
func (d *Device) BatchSize() int { return BatchSize }

// Close implements vswitch.Port.Close; the interface disappears.
func (d *Device) Close() error {
	var err error
	d.once.Do(func() {
		d.closed.Store(true)
		err = d.f.Close()
	})
	return err
}

// Read implements vswitch.Port.Read.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(bufs) == 0 {
		return 0, errors.New("read: no buffers")
	}
	d.rbufs, d.rsizes, d.roff, d.rn, d.rerrno = bufs, sizes, offset, 0, nil
	err := d.rc.Read(d.rfn)
	n := d.rn
	if err == nil && n == 0 {
		err = d.rerrno
	}
	d.rbufs, d.rsizes = nil, nil
	if err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, net.ErrClosed
		}
		return 0, fmt.Errorf("read %s: %w", d.name, err)
	}
	return n, nil
}

// readFn reads frames until the device has none ready; false (wait) only
// when it got none.
func (d *Device) readFn(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		m, err := unix.Read(int(fd), d.rbufs[d.rn][d.roff:])
		switch {
		case err == nil && m > 0:
			d.rsizes[d.rn] = m
			d.rn++
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return d.rn > 0
		case err == nil:
			return true // cannot happen on a TAP; do not spin
		default:
			d.rerrno = err
			return true
		}
	}
	return true
}

// Write implements vswitch.Port.Write.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, net.ErrClosed
	}
	d.wbufs, d.woff, d.wn, d.werrno = bufs, offset, 0, nil
	err := d.rc.Write(d.wfn)
	if err == nil {
		err = d.werrno
	}
	n := d.wn
	d.wbufs = nil
	if err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return n, net.ErrClosed
		}
		return n, fmt.Errorf("write %s: %w", d.name, err)
	}
	return n, nil
}

// writeFn writes frames one write(2) each; false means wait.
func (d *Device) writeFn(fd uintptr) bool {
	for d.wn < len(d.wbufs) {
		_, err := unix.Write(int(fd), d.wbufs[d.wn][d.woff:])
		switch err {
		case nil:
			d.wn++
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EINVAL, unix.EMSGSIZE:
			d.drops.Add(1)
			d.wn++
		default:
			d.werrno = err
			return true
		}
	}
	return true
}
