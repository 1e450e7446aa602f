package uplink

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"unsafe"

	"github.com/corralnet/corral/fence"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP segmentation offload (GSO, UDP_SEGMENT, Linux 4.18) and receive
// offload (GRO, UDP_GRO, Linux 5.0), as wireguard-go's conn/bind_std.go
// uses them: a batch of equal-sized datagrams to one peer leaves as one
// sendmmsg entry, and the kernel may hand several datagrams of one sender
// to us as one buffer with their size in a UDP_GRO control message.

const (
	// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS.
	gsoMaxSegments = 64
	// gsoMaxBytes bounds the payload of one GSO send (a UDP datagram's
	// length field).
	gsoMaxBytes = 65000
	// groBufs is how many GRO buffers one receive reads at most.
	groBufs = 8
	// groBufSize is the size of one GRO buffer: the largest UDP payload.
	groBufSize = 65536
	// oobSize is the control-message room per message.
	oobSize = 64
)

// gro is the receive state for UDP_GRO: datagrams are read into private
// buffers, then split into the caller's buffers (one copy per frame);
// what does not fit waits for the next call.
type gro struct {
	rc    syscall.RawConn
	bufs  [][]byte
	oobs  [][]byte
	sizes []int
	segs  []int
	from  []netip.AddrPort
	n     int // messages of the last read
	mi    int // message being delivered
	off   int // offset in it
}

// enableOffload turns on UDP_GRO (and marks GSO as worth trying) when the
// kernel has them.
func (t *udpTransport) enableOffload() {
	rc, err := t.conn.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return
	}
	g := &gro{
		rc:    rc,
		bufs:  make([][]byte, groBufs),
		oobs:  make([][]byte, groBufs),
		sizes: make([]int, groBufs),
		segs:  make([]int, groBufs),
		from:  make([]netip.AddrPort, groBufs),
	}
	for i := range g.bufs {
		g.bufs[i] = make([]byte, groBufSize)
		g.oobs[i] = make([]byte, oobSize)
	}
	t.gro = g
	t.gso.Store(true)
}

// recvGRO is recv with UDP_GRO on.
func (t *udpTransport) recvGRO(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	g := t.gro
	k := 0
	for k < len(bufs) {
		if g.mi >= g.n {
			if k > 0 {
				break // deliver what we have rather than block
			}
			n, err := t.mr.read(g.rc, g.bufs, g.oobs)
			if err != nil {
				return 0, err
			}
			for i := 0; i < n; i++ {
				g.sizes[i] = t.mr.size(i)
				g.segs[i] = groSegSize(g.oobs[i][:min(t.mr.oobLen(i), len(g.oobs[i]))])
				if g.segs[i] > 0 && g.segs[i] < g.sizes[i] {
					t.ctr.add(ctrRxGRO, 1)
				}
				g.from[i] = t.mr.from(i)
			}
			g.n, g.mi, g.off = n, 0, 0
			continue
		}
		total, seg := g.sizes[g.mi], g.segs[g.mi]
		if seg <= 0 || seg > total {
			seg = total
		}
		l := min(seg, total-g.off)
		sizes[k] = copy(bufs[k], g.bufs[g.mi][g.off:g.off+l])
		from[k] = g.from[g.mi]
		k++
		g.off += l
		if g.off >= total {
			g.mi++
			g.off = 0
		}
	}
	return k, nil
}

// groSegSize returns the UDP_GRO segment size in oob, or 0.
func groSegSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// putGSO writes a UDP_SEGMENT control message for segments of size seg
// into b (len >= unix.CmsgSpace(2)) and returns it.
func putGSO(b []byte, seg int) []byte {
	b = b[:unix.CmsgSpace(2)]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(seg)
	return b
}

// gsoUnsupported reports whether a send error means the kernel or device
// cannot do UDP GSO at all.
func gsoUnsupported(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP)
}

// sendGSO is send with UDP GSO: items to one destination are grouped
// (order per destination kept) and runs of equal-sized frames leave as
// one entry. A failed GSO entry is retried datagram by datagram.
func (t *udpTransport) sendGSO(items []outItem) error {
	if !oneDest(items) {
		slices.SortStableFunc(items, func(a, b outItem) int { return a.ap.Compare(b.ap) })
	}
	for a := 0; a < len(items); {
		b := a + 1
		for b < len(items) && items[b].ap == items[a].ap {
			b++
		}
		t.reorderFragments(items[a:b])
		a = b
	}
	if cap(t.smsgs) < len(items) {
		t.smsgs = make([]ipv4.Message, len(items))
		t.sbufs = make([][]byte, len(items))
		t.soob = make([][]byte, len(items))
		for i := range t.soob {
			t.soob[i] = make([]byte, oobSize)
		}
		t.sfirst = make([]int, len(items))
	}
	for i := range items {
		t.sbufs[i] = items[i].frame
	}
	ms := t.smsgs[:0]
	for i := 0; i < len(items); {
		seg := len(items[i].frame)
		total := seg
		j := i + 1
		for j < len(items) && j-i < gsoMaxSegments && items[j].ap == items[i].ap {
			l := len(items[j].frame)
			if l > seg || l == 0 || total+l > gsoMaxBytes {
				break
			}
			total += l
			j++
			if l < seg {
				break // a shorter datagram ends a GSO train
			}
		}
		m := len(ms)
		ms = ms[:m+1]
		ms[m].Buffers = t.sbufs[i:j:j]
		ms[m].Addr = items[i].ua
		ms[m].OOB = nil
		if j-i > 1 {
			ms[m].OOB = putGSO(t.soob[m], seg)
			t.ctr.add(ctrTxGSO, 1)
		}
		t.sfirst[m] = i
		i = j
	}
	for k := 0; k < len(ms); {
		n, err := t.bc.WriteBatch(ms[k:], 0)
		if err == nil {
			for _, m := range ms[k : k+n] {
				t.ctr.add(ctrTxDatagrams, uint64(len(m.Buffers)))
			}
			k += n
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return net.ErrClosed
		}
		if n > 0 { // entries before the failing one went out
			for _, m := range ms[k : k+n] {
				t.ctr.add(ctrTxDatagrams, uint64(len(m.Buffers)))
			}
			k += n
			continue
		}
		m := &ms[k]
		if m.OOB == nil {
			t.ctr.add(ctrTxErrors, 1)
		} else {
			if gsoUnsupported(err) {
				t.gso.Store(false)
			}
			first := t.sfirst[k]
			if err := t.sendPlain(items[first : first+len(m.Buffers)]); err != nil {
				return err
			}
		}
		k++
	}
	for i := range ms {
		ms[i].Buffers, ms[i].Addr, ms[i].OOB = nil, nil, nil
	}
	clear(t.sbufs[:len(items)])
	return nil
}

// oneDest reports whether every item goes to the same address (the common
// case: a batch of unicast to one peer needs no sorting).
func oneDest(items []outItem) bool {
	for i := 1; i < len(items); i++ {
		if items[i].ap != items[0].ap {
			return false
		}
	}
	return true
}

// maxFragChunk is how many fragmented frames reorderFragments groups: the
// receiver's reassembler keeps a pending first fragment while it is at
// most 7 Seq behind the newest first of its host (fence.Reassembler).
const maxFragChunk = 7

// reorderFragments rewrites run, the datagrams to one destination, so that
// consecutive fragment pairs (first, last) of up to maxFragChunk frames
// with increasing Seq leave as all firsts, then all lasts: two GSO trains
// instead of one two-datagram entry per frame. Frames still complete in
// their original order, and a chunk never holds two frames with one Seq.
func (t *udpTransport) reorderFragments(run []outItem) {
	isPair := func(i int) bool {
		if i+1 >= len(run) || len(run[i].frame) < fence.EncapLen || len(run[i+1].frame) < fence.EncapLen {
			return false
		}
		f, l := fence.Frame(run[i].frame).Header(), fence.Frame(run[i+1].frame).Header()
		return f.FragType() == fence.First && l.FragType() == fence.Last && f.Seq() == l.Seq()
	}
	seq := func(i int) uint8 { return fence.Frame(run[i].frame).Header().Seq() }
	out := t.reorder[:0]
	changed := false
	for i := 0; i < len(run); {
		if !isPair(i) || !isPair(i+2) {
			out = append(out, run[i])
			i++
			continue
		}
		s0, last, j := seq(i), -1, i
		for n := 0; n < maxFragChunk && isPair(j); n++ {
			d := int((seq(j) - s0) & fence.SeqMask)
			if d <= last || d >= maxFragChunk {
				break
			}
			last = d
			j += 2
		}
		for k := i; k < j; k += 2 {
			out = append(out, run[k])
		}
		for k := i + 1; k < j; k += 2 {
			out = append(out, run[k])
		}
		changed = changed || j-i > 2
		i = j
	}
	if changed {
		copy(run, out)
	}
	clear(out)
	t.reorder = out[:0]
}

// setBuffers sizes the socket buffers: SO_RCVBUFFORCE/SO_SNDBUFFORCE when
// privileged (beyond net.core.rmem_max), else the capped ordinary options.
func setBuffers(conn *net.UDPConn, size int) {
	rc, err := conn.SyscallConn()
	if err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
			}
		})
	}
}
