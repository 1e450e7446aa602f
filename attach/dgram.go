package attach

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

// VFKTGreeting is the 4-byte datagram vfkit sends first on a unixgram
// socket; a listener consumes it instead of switching it.
const VFKTGreeting = "VFKT"

// DgramStats counts what a datagram listener dropped.
type DgramStats struct {
	QueueFull uint64 // a peer's receive queue was full
	Oversize  uint64 // larger than the maximum frame
	Empty     uint64 // zero-length datagrams
	Unnamed   uint64 // from an unbound unixgram socket: no address to answer
	SendDrops uint64 // frames to a peer the kernel refused or could not queue
	Refused   uint64 // from a peer whose port onPort refused (until it goes idle)
	Peers     int    // current peers
}

// dgramListener is one unixgram or udp socket shared by every peer that
// sends to it: the first datagram from a new source address makes a port
// for it. One reader goroutine receives batches with recvmmsg(2) and
// queues each datagram to its peer's port (a bounded queue: a full queue
// drops and counts). A peer's Write sends its batch with sendmmsg(2) to
// its address. Peers silent for Options.PeerIdle are closed.
type dgramListener struct {
	addr   Addr
	conn   net.PacketConn
	rc     syscall.RawConn
	isUnix bool
	sf     *socketFile
	opts   Options
	log    *slog.Logger
	onPort OnPort

	// cache is the reader's stash of queue buffers from the switch's
	// shared frame-buffer pool (vswitch.GetBuf): a queued datagram sits in
	// a 2 KiB buffer, or a 64 KiB one when it is larger. Owned by the
	// reader goroutine, released when it ends.
	cache *vswitch.BufCache

	mu     sync.Mutex
	byAP   map[netip.AddrPort]*peerPort // guarded by mu
	byPath map[string]*peerPort         // guarded by mu
	closed bool                         // guarded by mu
	seq    int                          // guarded by mu

	queueFull, oversize, empty, unnamed, sendDrops, refused atomic.Uint64
	// capRefused counts datagrams from new peers dropped at MaxPorts;
	// expired counts peers closed after PeerIdle.
	capRefused, expired atomic.Uint64

	// Reader state, owned by the reader goroutine.
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrAny
	bufs   [][]byte
	rn     int
	rerrno error
	rfn    func(fd uintptr) bool

	once sync.Once
	done chan struct{}
	wg   sync.WaitGroup
}

func listenDgram(addr Addr, opts Options, onPort OnPort) (*dgramListener, error) {
	switch addr.Scheme {
	case Unixgram:
		x, sf, err := listenUnix("unixgram", addr.Target, opts.SocketMode)
		if err != nil {
			return nil, err
		}
		return serveDgram(addr, x.(net.PacketConn), sf, opts, onPort)
	case UDP:
		pc, err := net.ListenPacket("udp", addr.Target)
		if err != nil {
			return nil, err
		}
		return serveDgram(addr, pc, nil, opts, onPort)
	}
	return nil, badAddr("scheme %q is not a datagram scheme", addr.Scheme)
}

// serveDgram serves conn, bound to addr (unixgram or udp), as a datagram
// listener. sf is the socket file to remove on Close (nil: none, or not
// ours). On error conn is closed and sf removed.
func serveDgram(addr Addr, conn net.PacketConn, sf *socketFile, opts Options, onPort OnPort) (*dgramListener, error) {
	l := &dgramListener{addr: addr, conn: conn, sf: sf, opts: opts, onPort: onPort, done: make(chan struct{})}
	if addr.Scheme == Unixgram {
		l.isUnix = true
		l.byPath = make(map[string]*peerPort)
	} else {
		l.addr.Target = conn.LocalAddr().String()
		l.byAP = make(map[netip.AddrPort]*peerPort)
	}
	sc, ok := l.conn.(syscall.Conn)
	if !ok {
		l.conn.Close()
		l.sf.remove()
		return nil, fmt.Errorf("a %T has no descriptor", l.conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		l.conn.Close()
		l.sf.remove()
		return nil, err
	}
	l.rc = rc
	growSocketBuffers(l.conn)
	l.log = opts.Logger.With("listen", l.addr.String())
	l.cache = vswitch.NewBufCache()
	l.hdrs = make([]mmsghdr, BatchSize)
	l.iovs = make([]unix.Iovec, BatchSize)
	l.names = make([]unix.RawSockaddrAny, BatchSize)
	l.bufs = make([][]byte, BatchSize)
	for i := range l.bufs {
		l.bufs[i] = make([]byte, opts.MaxFrame+1) // one more byte tells an oversized datagram
	}
	l.rfn = l.recvFn
	l.wg.Add(1)
	go l.read()
	if opts.PeerIdle > 0 {
		l.wg.Add(1)
		go l.expire()
	}
	return l, nil
}

// Addr implements Listener.Addr.
func (l *dgramListener) Addr() Addr { return l.addr }

// Stats returns the listener's drop counters.
func (l *dgramListener) Stats() DgramStats {
	l.mu.Lock()
	peers := len(l.byAP) + len(l.byPath)
	l.mu.Unlock()
	return DgramStats{
		QueueFull: l.queueFull.Load(), Oversize: l.oversize.Load(), Empty: l.empty.Load(),
		Unnamed: l.unnamed.Load(), SendDrops: l.sendDrops.Load(), Refused: l.refused.Load(), Peers: peers,
	}
}

// PortStats implements Listener.PortStats.
func (l *dgramListener) PortStats() PortStats {
	l.mu.Lock()
	peers := len(l.byAP) + len(l.byPath)
	l.mu.Unlock()
	return PortStats{Ports: peers, Refused: l.capRefused.Load(), Expired: l.expired.Load()}
}

// Close implements Listener.Close.
func (l *dgramListener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
		err = l.conn.Close()
		l.wg.Wait()
		for _, p := range l.peers() {
			p.Close()
		}
		l.sf.remove()
		if s := l.Stats(); s != (DgramStats{}) {
			l.log.Info("datagram listener closed", "stats", s)
		}
	})
	return err
}

// peers returns every current peer.
func (l *dgramListener) peers() []*peerPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := make([]*peerPort, 0, len(l.byAP)+len(l.byPath))
	for _, p := range l.byAP {
		ps = append(ps, p)
	}
	for _, p := range l.byPath {
		ps = append(ps, p)
	}
	return ps
}

// recvFn runs one non-blocking recvmmsg; false means wait for data.
func (l *dgramListener) recvFn(fd uintptr) bool {
	n, e := recvmmsg(fd, l.hdrs)
	switch e {
	case 0:
		l.rn = n
	case unix.EAGAIN:
		return false
	default:
		l.rerrno = e
	}
	return true
}

// read is the reader goroutine.
func (l *dgramListener) read() {
	defer l.wg.Done()
	defer l.cache.Release()
	errs := 0
	for {
		for i := range l.hdrs {
			h := &l.hdrs[i]
			setMsg(h, &l.iovs[i], l.bufs[i])
			h.Hdr.Name = (*byte)(unsafe.Pointer(&l.names[i]))
			h.Hdr.Namelen = unix.SizeofSockaddrAny
		}
		l.rerrno = nil
		err := l.rc.Read(l.rfn)
		if err == nil {
			err = l.rerrno
		}
		if err != nil {
			if closing(l.done, err) {
				return
			}
			// A datagram socket has no final errors besides close
			// (ECONNREFUSED from an ICMP error, ENOBUFS): note it and go on.
			errs++
			if errs&(errs-1) == 0 { // 1, 2, 4, 8 … : rate-limited
				l.log.Warn("receive failed", "err", err, "count", errs)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		l.dispatch(time.Now().UnixNano())
	}
}

// dispatch queues the l.rn received datagrams to their peers, making
// ports for new peers. The map lock is taken once per batch (and dropped
// around onPort).
func (l *dgramListener) dispatch(now int64) {
	l.mu.Lock()
	for i := 0; i < l.rn; i++ {
		h := &l.hdrs[i]
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > l.opts.MaxFrame {
			l.oversize.Add(1)
			continue
		}
		if size == 0 {
			l.empty.Add(1)
			continue
		}
		if l.closed {
			break
		}
		p, ok := l.lookup(&l.names[i], h.Hdr.Namelen)
		if p == nil && !ok {
			l.unnamed.Add(1)
			continue
		}
		frame := l.bufs[i][:size]
		if p == nil && l.opts.MaxPorts > 0 && len(l.byAP)+len(l.byPath) >= l.opts.MaxPorts {
			// Dropped before anything is made for the new peer.
			limitLog(l.log, l.capRefused.Add(1), "datagram peer refused: listener has its maximum of ports (limits.ports_per_listener)",
				"max_ports", l.opts.MaxPorts)
			continue
		}
		if p == nil {
			l.mu.Unlock()
			p = l.newPeer(&l.names[i], h.Hdr.Namelen)
			l.mu.Lock()
			if p == nil {
				continue
			}
			if l.isUnix && string(frame) == VFKTGreeting {
				p.lastSeen.Store(now)
				continue // vfkit's greeting: consumed
			}
		}
		p.lastSeen.Store(now)
		if p.refused {
			l.refused.Add(1)
			continue
		}
		q := l.cache.Get(size)
		q = q[:copy(q, frame)]
		select {
		case p.q <- q:
		default:
			l.cache.Put(q)
			l.queueFull.Add(1)
		}
	}
	l.mu.Unlock()
}

// lookup finds the peer of a source address; l.mu is held. ok is false
// when the address cannot be answered (an unbound unixgram sender).
func (l *dgramListener) lookup(sa *unix.RawSockaddrAny, salen uint32) (p *peerPort, ok bool) {
	if l.isUnix {
		path, ok := unixPath(sa, salen)
		if !ok {
			return nil, false
		}
		return l.byPath[string(path)], true // no allocation: map index by converted []byte
	}
	ap, ok := inetAddrPort(sa)
	if !ok {
		return nil, false
	}
	return l.byAP[ap], true
}

// unixPath returns the bytes of a unix socket address (abstract names keep
// their leading NUL), or false for an unnamed socket.
func unixPath(sa *unix.RawSockaddrAny, salen uint32) ([]byte, bool) {
	const pathOff = 2 // sun_family
	if salen <= pathOff || salen > unix.SizeofSockaddrUnix {
		return nil, false
	}
	u := (*unix.RawSockaddrUnix)(unsafe.Pointer(sa))
	b := unsafe.Slice((*byte)(unsafe.Pointer(&u.Path[0])), int(salen)-pathOff)
	if b[0] != 0 || !abstractUnix { // a path: up to the first NUL
		for i, c := range b {
			if c == 0 {
				b = b[:i]
				break
			}
		}
	}
	return b, len(b) > 0
}

// inetAddrPort decodes an AF_INET or AF_INET6 address without allocating.
func inetAddrPort(sa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port), true
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// newPeer makes the port of a new source address and hands it to onPort.
// l.mu is not held. It returns nil when the listener is closing.
func (l *dgramListener) newPeer(sa *unix.RawSockaddrAny, salen uint32) *peerPort {
	p := &peerPort{
		l:     l,
		q:     make(chan []byte, l.opts.QueueLen),
		rdone: make([][]byte, 0, BatchSize),
		shut:  make(chan struct{}),
		sa:    *sa,
		salen: salen,
	}
	p.wfn = p.sendFn
	var peer string
	if l.isUnix {
		b, _ := unixPath(sa, salen)
		p.path = string(b)
		peer = p.path
		if peer[0] == 0 {
			peer = "@" + peer[1:]
		}
	} else {
		p.ap, _ = inetAddrPort(sa)
		peer = netip.AddrPortFrom(p.ap.Addr().Unmap(), p.ap.Port()).String()
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.seq++
	p.name = fmt.Sprintf("%s#%d(%s)", l.addr, l.seq, peer)
	if l.isUnix {
		l.byPath[p.path] = p
	} else {
		l.byAP[p.ap] = p
	}
	l.mu.Unlock()

	done, err := l.onPort(p, p.name)
	if err != nil {
		// Keep the peer as a tombstone that drops its frames until it
		// goes idle, so a refused peer is not offered again per datagram
		// (even if onPort closed the port, which forgets it).
		l.log.Warn("port refused", "port", p.name, "err", err)
		p.refused = true
		l.mu.Lock()
		if !l.closed {
			if l.isUnix {
				l.byPath[p.path] = p
			} else {
				l.byAP[p.ap] = p
			}
		}
		l.mu.Unlock()
		return p
	}
	l.log.Debug("datagram peer", "port", p.name)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-done:
		case <-p.shut:
		case <-l.done:
		}
		p.Close()
	}()
	return p
}

// expire closes peers silent for longer than Options.PeerIdle.
func (l *dgramListener) expire() {
	defer l.wg.Done()
	every := min(max(l.opts.PeerIdle/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-l.opts.PeerIdle).UnixNano()
		for _, p := range l.peers() {
			if p.lastSeen.Load() < cutoff {
				l.log.Debug("datagram peer idle, closing", "port", p.name)
				l.expired.Add(1)
				p.forget() // a tombstone may be closed already
				p.Close()
			}
		}
	}
}

// peerPort is the [vswitch.Port] of one datagram peer of a listener.
// Read takes frames from the queue the listener's reader fills; Write
// sends to the peer's address from the shared socket.
type peerPort struct {
	l       *dgramListener
	name    string
	path    string         // unixgram key
	ap      netip.AddrPort // udp key
	sa      unix.RawSockaddrAny
	salen   uint32
	refused bool // set before the reader's next batch; read under l.mu

	// q holds the peer's queued datagrams, each in a pool buffer
	// (vswitch.GetBuf) that Read returns to the pool after copying it.
	q        chan []byte
	shut     chan struct{}
	once     sync.Once
	lastSeen atomic.Int64 // unix nanoseconds of the last datagram

	// Read side, owned by the reader: the buffers one Read copied out,
	// returned to the pool together (one pool lock per Read), and the
	// datagram WaitRead took from q (nil: none).
	rdone [][]byte
	head  []byte

	// Write side, owned by the writer.
	whdrs  []mmsghdr
	wiovs  []unix.Iovec
	wn     int
	wsent  int
	werrno error
	wfn    func(fd uintptr) bool
	werr   error
}

// BatchSize implements vswitch.Port.BatchSize.
func (p *peerPort) BatchSize() int { return BatchSize }

// Close implements vswitch.Port.Close: it forgets the peer (a later
// datagram from it makes a new port).
func (p *peerPort) Close() error {
	p.once.Do(func() {
		// Forget the peer first: once Read says closed, the next datagram
		// from the same address already makes a new port.
		p.forget()
		close(p.shut)
	})
	return nil
}

// forget removes p from the listener's peer table if it is still there.
func (p *peerPort) forget() {
	l := p.l
	l.mu.Lock()
	if l.isUnix {
		if l.byPath[p.path] == p {
			delete(l.byPath, p.path)
		}
	} else if l.byAP[p.ap] == p {
		delete(l.byAP, p.ap)
	}
	l.mu.Unlock()
}

// Read implements vswitch.Port.Read.
func (p *peerPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, errNoBuffers
	}
	q := p.head
	p.head = nil
	if q == nil {
		select {
		case <-p.shut:
			return 0, net.ErrClosed
		default:
		}
		select {
		case q = <-p.q:
		case <-p.shut:
			return 0, net.ErrClosed
		}
	}
	defer p.releaseDone()
	n := 0
	for {
		if len(q) <= len(bufs[n])-offset {
			sizes[n] = copy(bufs[n][offset:], q)
			n++
		} else {
			p.l.oversize.Add(1)
		}
		p.release(q)
		if n == len(bufs) {
			return n, nil
		}
		select {
		case q = <-p.q:
			continue
		default:
		}
		if n > 0 {
			return n, nil
		}
		p.releaseDone() // before blocking
		select {
		case q = <-p.q:
		case <-p.shut:
			return 0, net.ErrClosed
		}
	}
}

// release collects a copied-out queue buffer for releaseDone.
func (p *peerPort) release(q []byte) {
	if len(p.rdone) == cap(p.rdone) {
		p.releaseDone()
	}
	p.rdone = append(p.rdone, q)
}

// releaseDone returns the collected queue buffers to the shared pool.
func (p *peerPort) releaseDone() {
	if len(p.rdone) > 0 {
		vswitch.PutBufs(p.rdone)
		p.rdone = p.rdone[:0]
	}
}

// Write implements vswitch.Port.Write. Frames the kernel refuses (too
// big, no route) or, on unixgram, cannot queue because the peer is not
// reading, are dropped and counted; a unixgram peer whose socket is gone
// is a final error.
func (p *peerPort) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-p.shut:
		return 0, net.ErrClosed
	default:
	}
	if p.werr != nil {
		return 0, p.werr
	}
	if p.whdrs == nil { // on the first Write: a peer that only sends has none
		p.whdrs = make([]mmsghdr, BatchSize)
		p.wiovs = make([]unix.Iovec, BatchSize)
	}
	return writeChunks(bufs, offset, len(p.whdrs), p.writeChunk)
}

func (p *peerPort) writeChunk(bufs [][]byte, offset int) (int, error) {
	p.wn = setSendMsgs(p.whdrs, p.wiovs, bufs, offset, (*byte)(unsafe.Pointer(&p.sa)), p.salen)
	skipped := len(bufs) - p.wn
	p.wsent = 0
	p.werrno = nil
	var err error
	for tries := 0; ; tries++ {
		err = p.l.rc.Write(p.wfn)
		if err != nil || p.werrno != unix.EAGAIN {
			break
		}
		// unixgram: the peer's receive queue is full, and poll(2) on an
		// unconnected socket does not say when it drains. Back off a
		// little, a bounded number of times, then drop the rest.
		if tries == unixgramRetries {
			p.l.sendDrops.Add(uint64(p.wn - p.wsent))
			p.wsent = p.wn
			p.werrno = nil
			break
		}
		p.werrno = nil
		time.Sleep(time.Duration(50<<tries) * time.Microsecond)
	}
	if err == nil {
		err = p.werrno
	}
	clear(p.wiovs[:p.wn])
	if err != nil {
		if closing(p.shut, err) {
			return 0, net.ErrClosed
		}
		p.werr = fmt.Errorf("write to %s: %w", p.name, err)
		return 0, p.werr
	}
	return p.wsent + skipped, nil
}

// unixgramRetries bounds the backoff of a unixgram send to a full peer
// (50 µs doubling: about 1.5 ms in all).
const unixgramRetries = 5

// sendFn sends p.whdrs[p.wsent:p.wn] to the peer; false means wait until
// the socket is writable (udp).
func (p *peerPort) sendFn(fd uintptr) bool {
	for p.wsent < p.wn {
		r, e := sendmmsg(fd, p.whdrs[p.wsent:p.wn])
		switch {
		case e == 0:
			p.wsent += r
		case e == unix.EINTR:
		case (e == unix.EAGAIN || e == unix.ENOBUFS) && p.l.isUnix: // a full peer: EAGAIN on Linux, ENOBUFS on macOS
			p.werrno = unix.EAGAIN
			return true
		case e == unix.EAGAIN:
			return false
		case p.l.isUnix && (e == unix.ECONNREFUSED || e == unix.ENOENT || e == unix.ENOTCONN):
			p.werrno = e // the peer's socket is gone
			return true
		case e == unix.EPERM && p.l.isUnix:
			p.werrno = e // connected to another socket: we can never send to it
			return true
		default:
			p.l.sendDrops.Add(1) // EMSGSIZE, ENETUNREACH …: drop this one
			p.wsent++
		}
	}
	return true
}

// socketBufferSize is what datagram sockets ask for as receive and send
// buffers (the kernel caps it at net.core.rmem_max / wmem_max): one
// socket serves every peer, and the default ~200 KiB holds fewer than a
// hundred full-size frames.
const socketBufferSize = 4 << 20

// growSocketBuffers enlarges c's buffers, best effort.
func growSocketBuffers(c any) {
	if b, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		b.SetReadBuffer(socketBufferSize)
	}
	if b, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		b.SetWriteBuffer(socketBufferSize)
	}
}
