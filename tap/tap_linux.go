package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/offload"
	vswitch "github.com/corralnet/corral/switch"
)

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

	// Offload state (Config.Offload).
	offload bool
	rxBad   atomic.Uint64 // frames Read dropped: bad virtio_net_hdr or GSO packet
	// pend holds a super-frame whose segments did not all fit the bufs of
	// one Read, handed out over the next Reads.
	pend offload.Pending
	// whdr is the virtio_net_hdr plus headers of a coalesced super-frame;
	// iov the iovecs of its writev(2).
	whdr    []byte
	iov     []unix.Iovec
	wframes [][]byte
	// coalesced counts frames Write merged into super-frames; segmented
	// the super-frames Read cut.
	coalesced atomic.Uint64
	segmented atomic.Uint64
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
	d := &Device{f: f, rc: rc, name: r.name, offload: cfg.Offload}
	d.rfn = d.readFn
	d.wfn = d.writeFn
	if cfg.Offload {
		d.rfn = d.readFnOffload
		d.wfn = d.writeFnOffload
		d.pend.Buf() // allocated now, not on the first long super-frame
		d.whdr = make([]byte, superHdrMax)
		d.iov = make([]unix.Iovec, BatchSize+1)
		d.wframes = make([][]byte, 0, BatchSize)
	}
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
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if cfg.Offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("create tap %q: %w", cfg.Name, err)
	}
	if cfg.Offload {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
			unix.Close(fd)
			return -1, "", fmt.Errorf("tap %q: TUNSETVNETHDRSZ: %w", cfg.Name, err)
		}
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
			unix.Close(fd)
			return -1, "", fmt.Errorf("tap %q: TUNSETOFFLOAD: %w", cfg.Name, err)
		}
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

// Drops is the number of frames the kernel refused on Write (too large,
// malformed, or the interface was down).
func (d *Device) Drops() uint64 { return d.drops.Load() }

// RxBad is the number of frames Read dropped (offload only): a bad
// virtio_net_hdr, an unsupported GSO type or a malformed super-frame.
func (d *Device) RxBad() uint64 { return d.rxBad.Load() }

// Coalesced is the number of frames Write merged into TCP super-frames
// (offload only).
func (d *Device) Coalesced() uint64 { return d.coalesced.Load() }

// Segmented is the number of TCP super-frames Read cut into segments
// (offload only).
func (d *Device) Segmented() uint64 { return d.segmented.Load() }

// Offload reports whether the device uses virtio_net_hdr offloads.
func (d *Device) Offload() bool { return d.offload }

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
	if d.offload && offset < VnetHdrLen {
		return 0, fmt.Errorf("read %s: offset %d below %d", d.name, offset, VnetHdrLen)
	}
	d.rbufs, d.rsizes, d.roff, d.rn, d.rerrno = bufs, sizes, offset, 0, nil
	if d.offload && d.pend.Remaining() > 0 {
		d.emitPending()
		if d.pend.Remaining() > 0 || d.rn == len(bufs) {
			n := d.rn
			d.rbufs, d.rsizes = nil, nil
			return n, nil
		}
	}
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
	if d.offload && offset < VnetHdrLen {
		return 0, fmt.Errorf("write %s: offset %d below %d", d.name, offset, VnetHdrLen)
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
		case unix.EINVAL, unix.EMSGSIZE, unix.EIO:
			// EIO: the interface is down (tun_get_user); like a NIC
			// without carrier, the frame is dropped, the port lives on.
			d.drops.Add(1)
			d.wn++
		default:
			d.werrno = err
			return true
		}
	}
	return true
}

// readFnOffload reads frames with their virtio_net_hdr, each straight into
// the next buffer (the header lands in the headroom). Checksums the kernel
// left to us are completed; a TCP super-frame is cut into segments in the
// following buffers, or, when they do not all fit, copied to d.pend and
// handed out over this and the next Reads. False (wait) only when it got
// no frame.
func (d *Device) readFnOffload(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		buf := d.rbufs[d.rn][d.roff-VnetHdrLen:]
		m, err := unix.Read(int(fd), buf)
		switch {
		case err == nil && m > 0:
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return d.rn > 0
		case err == nil:
			return true
		default:
			d.rerrno = err
			return true
		}
		if m < VnetHdrLen+vswitch.MinFrameSize {
			d.rxBad.Add(1)
			continue
		}
		h := decodeVnetHdr(buf)
		frame := buf[VnetHdrLen:m]
		if h.gsoType == vnetGSONone {
			if h.flags&vnetFlagNeedsCsum != 0 {
				if completeCsum(frame, int(h.csumStart), int(h.csumOffset)) != nil {
					d.rxBad.Add(1)
					continue
				}
			}
			d.rsizes[d.rn] = len(frame)
			d.rn++
			continue
		}
		g, err := parseGSO(frame, h)
		if err != nil {
			d.rxBad.Add(1)
			continue
		}
		d.segmented.Add(1)
		if g.Segments > len(d.rbufs)-d.rn {
			d.pend.Start(g, copy(d.pend.Buf(), frame))
			d.emitPending()
			return true
		}
		if !d.cut(&g, frame) {
			d.rxBad.Add(1)
			continue
		}
		d.rn += g.Segments
	}
	return true
}

// cut cuts the super-frame frame, which sits in d.rbufs[d.rn], into that
// buffer and the following ones; false (nothing cut) when a segment does
// not fit its buffer.
func (d *Device) cut(g *offload.Super, frame []byte) bool {
	// Segments 1.. first: segment 0 is cut in place, over the source.
	for i := 1; i < g.Segments; i++ {
		n, err := g.Segment(d.rbufs[d.rn+i][d.roff:], frame, i)
		if err != nil {
			return false
		}
		d.rsizes[d.rn+i] = n
	}
	n, err := g.Segment(frame, frame, 0)
	if err != nil {
		return false
	}
	d.rsizes[d.rn] = n
	return true
}

// emitPending hands out the pending super-frame's next segments into the
// free bufs of the current Read. A segment that does not fit its buffer
// drops the rest of the super-frame, counted in rxBad.
func (d *Device) emitPending() {
	for d.pend.Remaining() > 0 && d.rn < len(d.rbufs) {
		n, err := d.pend.Next(d.rbufs[d.rn][d.roff:])
		if err != nil {
			d.pend.Reset()
			d.rxBad.Add(1)
			return
		}
		d.rsizes[d.rn] = n
		d.rn++
	}
}

// writeFnOffload writes runs of coalescable TCP segments as one
// super-frame (one writev(2) of the virtio_net_hdr and headers, then the
// payloads, without copying them) and every other frame on its own behind
// a zero virtio_net_hdr written into its headroom; false means wait.
func (d *Device) writeFnOffload(fd uintptr) bool {
	for d.wn < len(d.wbufs) {
		n, hl := d.coalesce(d.wbufs[d.wn:])
		var err error
		if n == 1 {
			b := d.wbufs[d.wn][d.woff-VnetHdrLen:]
			clear(b[:VnetHdrLen])
			_, err = unix.Write(int(fd), b)
		} else {
			err = d.writev(fd, n, hl)
		}
		switch err {
		case nil:
			if n > 1 {
				d.coalesced.Add(uint64(n))
			}
			d.wn += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EINVAL, unix.EMSGSIZE, unix.EIO: // EIO: interface down
			d.drops.Add(uint64(n))
			d.wn += n
		default:
			d.werrno = err
			return true
		}
	}
	return true
}

// coalesce runs coalesceRun over the frames (without their headroom)
// starting at d.wn; frame slices are views into d.wbufs.
func (d *Device) coalesce(bufs [][]byte) (n, hl int) {
	// coalesceRun wants frames without headroom: reslice in d.wframes.
	fr := d.wframes[:0]
	for _, b := range bufs {
		if cap(fr) == len(fr) {
			break
		}
		fr = append(fr, b[d.woff:])
	}
	n, hl = coalesceRun(fr, d.whdr)
	clear(fr)
	return n, hl
}

// writev writes the coalesced super-frame: d.whdr[:hl], then the payloads
// of the next n frames.
func (d *Device) writev(fd uintptr, n, hl int) error {
	iov := d.iov[:n+1]
	iov[0].Base = &d.whdr[0]
	iov[0].SetLen(hl)
	skip := d.woff + hl - VnetHdrLen
	for i := 0; i < n; i++ {
		p := d.wbufs[d.wn+i][skip:]
		iov[i+1].Base = &p[0]
		iov[i+1].SetLen(len(p))
	}
	_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	for i := range iov {
		iov[i] = unix.Iovec{}
	}
	if e != 0 {
		return e
	}
	return nil
}
