package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/corralnet/corral/fence"
)

// The receive path (inbound) runs in stages, as wireguard-go's does
// (device/receive.go: read a batch, decode each element, handle it per
// peer):
//
//  1. readBatch reads a batch of outer frames from the transport.
//  2. accept parses and checks each one (drops counted by reason).
//  3. rxBatch.sender learns or refreshes its sender, once per run of
//     frames from one sender.
//  4. hellos go to rxHello; inner puts whole frames and reassembled
//     fragments in place for the switch.
//  5. rxBatch counts per batch (per run of one fence), not per frame.

// rxErrorPause is how long ReadTrunk pauses after a transient error.
const rxErrorPause = 20 * time.Millisecond

// maxDupLog bounds the addresses remembered for rate-limiting duplicate
// outer MAC errors.
const maxDupLog = 256

// receiver is the state of the receive path. The switch reads the trunk
// from one goroutine; mu makes concurrent ReadTrunk calls safe anyway.
type receiver struct {
	mu      sync.Mutex       // mu guards the following fields
	sizes   []int            // per batch slot: outer frame length
	from    []netip.AddrPort // per batch slot: UDP source (zero on raw)
	views   [][]byte         // per batch slot: where the outer frame is read
	scratch []byte           // a copy of a fragment being reassembled
	hello   fence.Hello      // decode scratch
	// dupLog rate-limits the duplicate outer MAC error per address.
	dupLog map[netip.AddrPort]time.Time

	// reasm is safe for concurrent use: the control goroutine expires it
	// and Status reads its counters without mu.
	reasm *fence.Reassembler
}

// init allocates the receive state for batches of up to batch frames.
func (rx *receiver) init(batch int) {
	rx.sizes = make([]int, batch)
	rx.from = make([]netip.AddrPort, batch)
	rx.views = make([][]byte, batch)
	rx.scratch = make([]byte, fence.EncapLen+fence.MaxInnerLen)
	rx.dupLog = map[netip.AddrPort]time.Time{}
	rx.reasm = fence.NewReassembler(fence.ReassemblyConfig{
		MaxPerHost: reassemblyPerHost, MaxTotal: reassemblyTotal, Timeout: reassemblyTimeout,
	})
}

// transient reports whether a receive error is worth retrying.
func transient(err error) bool {
	for _, e := range []error{syscall.ENETDOWN, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNREFUSED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EINTR, syscall.EAGAIN, syscall.ENXIO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ReadTrunk implements vswitch.Trunk.ReadTrunk. It blocks until at least
// one valid inner frame has arrived. Encapsulated frames are received into
// bufs[i] so that their inner frame lands at bufs[i][offset:] (offset must
// be at least fence.EncapLen); fragments are reassembled, hellos consumed,
// invalid frames dropped and counted by reason.
func (u *Uplink) ReadTrunk(bufs [][]byte, sizes []int, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	if offset < fence.EncapLen {
		return 0, fmt.Errorf("uplink: ReadTrunk offset %d < %d", offset, fence.EncapLen)
	}
	u.rx.mu.Lock()
	defer u.rx.mu.Unlock()
	for {
		n, err := u.readBatch(bufs, offset)
		if err != nil {
			return 0, err
		}
		if j := u.deliverBatch(bufs, n, sizes, fences, hosts, offset); j > 0 {
			return j, nil
		}
	}
}

// readBatch reads outer frames from the transport, frame k into
// bufs[k][offset-fence.EncapLen:] (so that a whole frame's inner frame
// lands at offset), its length into rx.sizes[k] and its source into
// rx.from[k]. Transient errors are counted and retried after a pause; any
// other error is returned, net.ErrClosed after Close.
func (u *Uplink) readBatch(bufs [][]byte, offset int) (int, error) {
	rx := &u.rx
	views := rx.views[:min(len(bufs), len(rx.views))]
	for {
		if u.closed.Load() {
			return 0, net.ErrClosed
		}
		for i := range views {
			views[i] = bufs[i][offset-fence.EncapLen:]
		}
		n, err := u.link.tr.recv(views, rx.sizes, rx.from)
		clear(views)
		if err == nil {
			return n, nil
		}
		if u.closed.Load() {
			return 0, net.ErrClosed
		}
		if !transient(err) {
			return 0, err
		}
		// The interface went down, an ICMP error was queued …: count
		// it, pause briefly, go on.
		u.ctr.add(ctrRxErrors, 1)
		select {
		case <-u.done:
		case <-time.After(rxErrorPause):
		}
	}
}

// rxBatch is what the receive path keeps for one batch, so that it looks
// up and counts once per batch rather than per frame: the host table
// snapshot and the last sender found in it (frames of a batch mostly come
// from one peer), and the counts (the counters share cache lines with the
// sending goroutine), with the current run of frames of one fence.
type rxBatch struct {
	now     time.Time
	nowNano int64
	table   *hostTable

	lastSrc  fence.OuterMAC
	lastFrom netip.AddrPort
	lastOK   bool // lastSrc at lastFrom is known and refreshed

	frames, bytes uint64
	fence         uint32 // the fence of the current run
	inFence       uint64 // frames of the current run
}

// deliverBatch turns the n outer frames read by readBatch into inner
// frames for the switch, compacted to the front of bufs (frame j at
// bufs[j][offset:], with sizes[j], fences[j] and hosts[j]), and returns
// how many there are.
func (u *Uplink) deliverBatch(bufs [][]byte, n int, sizes []int, fences []uint32, hosts [][6]byte, offset int) int {
	rx := &u.rx
	b := rxBatch{now: time.Now(), table: u.hosts.load()}
	b.nowNano = b.now.UnixNano()
	j := 0
	for i := 0; i < n; i++ {
		from := rx.from[i]
		fr, ok := u.accept(bufs[i][offset-fence.EncapLen:offset-fence.EncapLen+rx.sizes[i]], from)
		if !ok {
			continue
		}
		src := fr.Src()
		b.sender(u, src, from)
		fenceID := fr.Header().Fence()
		if fenceID == fence.ControlFence {
			u.rxHello(fr, from, b.now)
			continue
		}
		size, ok := u.inner(fr, bufs[j][offset:], i != j, b.now)
		if !ok {
			continue
		}
		sizes[j], fences[j], hosts[j] = size, fenceID, src
		b.count(u, fenceID, size)
		j++
	}
	b.flush(u)
	return j
}

// accept parses the outer frame fr from address from and reports whether
// it is for the switch or the control channel. Invalid frames, frames with
// our own outer source (see ownMAC) and unicast for another host are
// dropped and counted.
func (u *Uplink) accept(outer []byte, from netip.AddrPort) (fence.Frame, bool) {
	fr, err := u.params.Parse(outer)
	if err != nil {
		u.ctr.countParse(err)
		return nil, false
	}
	if fr.Src() == u.self {
		u.ownMAC(fr, from)
		return nil, false
	}
	if d := fr.Dst(); d != u.self && !d.IsBroadcast() {
		// Unicast for another host (a raw segment flooding unknown
		// unicast): not ours to deliver.
		u.ctr.add(ctrDropOtherDst, 1)
		return nil, false
	}
	return fr, true
}

// sender refreshes src's host table entry, or learns src at from when it
// is new or has moved: a table lookup once per run of frames from one
// sender.
func (b *rxBatch) sender(u *Uplink, src fence.OuterMAC, from netip.AddrPort) {
	if !b.lastOK || src != b.lastSrc || from != b.lastFrom {
		b.lookup(u, src, from)
	}
}

// lookup is sender for a sender other than the last one.
func (b *rxBatch) lookup(u *Uplink, src fence.OuterMAC, from netip.AddrPort) {
	if p := b.table.byMAC[src]; p != nil && p.ap == from {
		p.seen.Store(b.nowNano)
		b.lastSrc, b.lastFrom, b.lastOK = src, from, true
		return
	}
	u.learn(src, from, b.now)
	b.table = u.hosts.load()
	b.lastOK = false
}

// inner puts the inner frame of fr at dst and returns its length. A whole
// frame is already there unless moved (frames before it in the batch were
// dropped, so it moves down); a fragment is copied out and reassembled
// into dst once its other half is in. ok is false when there is no frame
// (yet): a first half, or a fragment the reassembler refused (counted).
func (u *Uplink) inner(fr fence.Frame, dst []byte, moved bool, now time.Time) (size int, ok bool) {
	if fr.Header().FragType() != fence.Whole {
		return u.reassemble(fr, dst, now)
	}
	if moved {
		copy(dst, fr.Inner())
	}
	return len(fr) - fence.EncapLen, true
}

// reassemble is inner for a fragment.
func (u *Uplink) reassemble(fr fence.Frame, dst []byte, now time.Time) (size int, ok bool) {
	rx := &u.rx
	u.ctr.add(ctrRxFragments, 1)
	// Copy the fragment out: the reassembled frame is written to dst,
	// which may overlap it.
	c := fence.Frame(rx.scratch[:copy(rx.scratch, fr)])
	out, done, err := rx.reasm.Add(c, now, dst)
	if err != nil {
		u.ctr.add(ctrDropReassembly, 1)
		return 0, false
	}
	if !done {
		return 0, false
	}
	u.ctr.add(ctrReassembled, 1)
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out)
	}
	return len(out), true
}

// count counts one inner frame of fenceID for the switch; a run of frames
// of one fence is added to its counter when the run ends.
func (b *rxBatch) count(u *Uplink, fenceID uint32, size int) {
	b.frames++
	b.bytes += uint64(size)
	if fenceID != b.fence {
		b.newRun(u, fenceID)
	}
	b.inFence++
}

// newRun ends the run of frames of b.fence and starts one of fenceID.
func (b *rxBatch) newRun(u *Uplink, fenceID uint32) {
	if b.inFence > 0 {
		u.fenceCtr.add(b.fence, b.inFence)
	}
	b.fence, b.inFence = fenceID, 0
}

// flush adds the batch's counts to the counters.
func (b *rxBatch) flush(u *Uplink) {
	if b.inFence > 0 {
		u.fenceCtr.add(b.fence, b.inFence)
	}
	if b.frames > 0 {
		u.ctr.add(ctrRxFrames, b.frames)
		u.ctr.add(ctrRxBytes, b.bytes)
	}
}

// learn records (or moves) the peer src at address from.
func (u *Uplink) learn(src fence.OuterMAC, from netip.AddrPort, now time.Time) {
	switch res, old := u.hosts.learn(src, from, now.UnixNano()); res {
	case learnFull:
		u.ctr.add(ctrDropTableFull, 1)
	case learnMoved:
		u.log.Info("peer moved", "peer", src.String(), "from", old.String(), "to", from.String())
	case learnNew:
		u.log.Info("peer learned", "peer", src.String(), "addr", from.String())
		u.kickHello()
	}
}

// ownMAC handles a frame whose outer source is our own MAC: our own
// multicast echo, or another host claiming our MAC (rx.mu held).
func (u *Uplink) ownMAC(fr fence.Frame, from netip.AddrPort) {
	if fr.Header().Fence() != fence.ControlFence {
		u.ctr.add(ctrDropOwnMAC, 1)
		return
	}
	rx := &u.rx
	h := &rx.hello
	if err := h.Decode(fr.Inner()); err != nil {
		u.ctr.add(ctrDropBadHello, 1)
		return
	}
	if h.Instance == u.instance {
		u.ctr.add(ctrDropOwnEcho, 1) // our own hello, looped back by a group
		return
	}
	u.ctr.add(ctrDupMAC, 1)
	if len(rx.dupLog) >= maxDupLog {
		clear(rx.dupLog) // bounded: forged hellos from many addresses
	}
	if last, ok := rx.dupLog[from]; ok && time.Since(last) < u.cfg.HelloInterval {
		return
	}
	rx.dupLog[from] = time.Now()
	if from.IsValid() {
		select { // so that it sees the conflict too, even if it does not know us
		case u.ctl.dupReply <- from:
		default:
		}
	}
	u.log.Error("DUPLICATE OUTER MAC: another host claims this host's outer MAC; set distinct host.id values",
		"other_addr", from.String(), "other_name", h.Name, "other_host_id", h.HostID,
		"our_name", u.cfg.HostName, "our_host_id", u.cfg.HostID)
}

// rxHello applies a peer's hello (its source is already learned; rx.mu
// held).
func (u *Uplink) rxHello(fr fence.Frame, from netip.AddrPort, now time.Time) {
	h := &u.rx.hello
	if err := h.Decode(fr.Inner()); err != nil {
		u.ctr.add(ctrDropBadHello, 1)
		return
	}
	u.ctr.add(ctrRxHellos, 1)
	src := fr.Src()
	p, restarted, changed := u.hosts.hello(src, h, now)
	if p == nil { // table full
		return
	}
	if restarted {
		u.log.Info("peer restarted", "peer", src.String(), "name", h.Name)
		select { // its MACs were learned in its previous life
		case u.ctl.down <- src:
		default:
		}
	}
	if changed {
		u.log.Info("peer hello", "peer", src.String(), "name", h.Name, "addr", from.String(),
			"fences", p.fences, "gateways", p.gateways)
		if u.gw.peerClaims(src, p.name, p.gateways, now) {
			u.kickHello()
		}
	}
}
