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
//  1. readBatch reads a batch of outer frames from the transport (and
//     offers them to the uplink's captures).
//  2. accept checks the source address (unsealed UDP: a peer's) and
//     parses and checks each frame (drops counted by reason).
//  3. Sealed: fragments are reassembled, then open opens the frame
//     (authentication, replay window); unsealed: nothing to do.
//  4. rxBatch.sender learns or refreshes its sender, once per run of
//     frames from one sender: sealed, only from a frame that opened.
//  5. hellos go to rxHello; inner puts whole frames and reassembled
//     fragments in place for the switch.
//  6. rxBatch counts per batch (per run of one fence), not per frame.

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
	// replay holds the replay windows of a sealed uplink (nil unsealed).
	replay *fence.ReplayTable
	// dupLog rate-limits the duplicate outer MAC error per address.
	dupLog map[netip.AddrPort]time.Time

	// reasm is safe for concurrent use: the control goroutine expires it
	// and Status reads its counters without mu.
	reasm *fence.Reassembler
}

// init allocates the receive state for batches of up to batch frames.
func (rx *receiver) init(batch int, sealed bool) {
	if sealed {
		rx.replay = fence.NewReplayTable(0)
	}
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
// be at least fence.EncapLen, fence.SealedHeaderLen sealed: a sealed
// frame is opened in place); fragments are reassembled, hellos consumed,
// invalid frames dropped and counted by reason.
func (u *Uplink) ReadTrunk(bufs [][]byte, sizes []int, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	if offset < u.hdrLen {
		return 0, fmt.Errorf("uplink: ReadTrunk offset %d < %d", offset, u.hdrLen)
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
// bufs[k][offset-u.hdrLen:] (so that a whole frame's inner frame lands at
// offset), its length into rx.sizes[k] and its source into
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
			views[i] = bufs[i][offset-u.hdrLen:]
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

	// The unsealed address filter's last answer.
	lastAddr     netip.AddrPort
	lastAddrOK   bool
	lastAddrSeen bool

	// The key stats of the last (peer, fence) of a sealed uplink.
	lastKS    keyStatKey
	lastKSPtr *keyStat

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
	start := offset - u.hdrLen
	if t := u.taps.Load(); t != nil {
		t.received(bufs[:n], rx.sizes[:n], start, b.now)
	}
	j := 0
	for i := 0; i < n; i++ {
		from := rx.from[i]
		fr, ok := u.accept(&b, bufs[i][start:start+rx.sizes[i]], from)
		if !ok {
			continue
		}
		var size int
		if u.seal != nil {
			size, ok = u.open(&b, fr, from, bufs[j], offset, i != j)
		} else {
			size, ok = u.plain(&b, fr, from, bufs[j][offset:], i != j)
		}
		if !ok {
			continue
		}
		fenceID := fr.Header().Fence()
		sizes[j], fences[j], hosts[j] = size, fenceID, fr.Src()
		b.count(u, fenceID, size)
		j++
	}
	b.flush(u)
	return j
}

// accept checks where the outer frame comes from and parses it, and
// reports whether it is for the switch or the control channel. Frames
// from an address that is not a peer's (unsealed UDP uplink without
// LearnPeers or a group), invalid frames, frames with our own outer
// source (see ownMAC) and unicast for another host are dropped and
// counted.
func (u *Uplink) accept(b *rxBatch, outer []byte, from netip.AddrPort) (fence.Frame, bool) {
	if u.peerAddrs != nil && !b.peerAddr(u, from) {
		u.ctr.add(ctrDropNotPeer, 1)
		return nil, false
	}
	fr, err := u.params.Parse(outer)
	if err != nil {
		u.ctr.countParse(err)
		return nil, false
	}
	if fr.Src() == u.self {
		u.ownMAC(fr, from)
		return nil, false
	}
	if u.cfg.Directory && !b.directoryPeer(u, fr.Src(), from) {
		u.ctr.add(ctrDropNotPeer, 1)
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

// peerAddr reports whether from is a configured peer's address (the
// unsealed UDP uplink's filter), looked up once per run of datagrams from
// one address.
func (b *rxBatch) peerAddr(u *Uplink, from netip.AddrPort) bool {
	if !b.lastAddrSeen || from != b.lastAddr {
		b.lastAddr, b.lastAddrOK, b.lastAddrSeen = from, u.peerAddrs[from], true
	}
	return b.lastAddrOK
}

// directoryPeer reports whether a frame from outer source src at address
// from may come in on an uplink run by a directory: src must be a peer
// of the directory's view and, unsealed, send from the address it
// announced (sealed, a frame that opens may move it).
func (b *rxBatch) directoryPeer(u *Uplink, src fence.OuterMAC, from netip.AddrPort) bool {
	p := b.table.byMAC[src]
	return p != nil && (u.seal != nil || p.ap == from)
}

// plain delivers the unsealed frame fr from address from: its sender is
// learned, a hello goes to rxHello, a data frame (reassembled when a
// fragment) is put at dst.
func (u *Uplink) plain(b *rxBatch, fr fence.Frame, from netip.AddrPort, dst []byte, moved bool) (int, bool) {
	src := fr.Src()
	if u.confirm != nil && !b.confirmed(u, src, from) {
		u.unconfirmed(b, fr, src, from, len(fr))
		return 0, false
	}
	b.sender(u, src, from, !u.cfg.Directory)
	if fr.Header().Fence() == fence.ControlFence {
		u.rxHello(src, fr.Inner(), from, b.now)
		return 0, false
	}
	return u.inner(fr, dst, moved, b.now)
}

// open delivers the sealed frame fr from address from: a fragment is
// reassembled into buf (at offset - fence.SealPrefixLen); the frame is
// opened in place (its inner frame lands at buf[offset:], or, for a whole
// frame read into an earlier buffer, is moved there); only then is its
// sender learned (or its address changed, on a frame newer than every
// other from it on the fence). Frames that do not open are dropped and
// counted, and for a known peer counted on its (peer, fence) key state.
func (u *Uplink) open(b *rxBatch, fr fence.Frame, from netip.AddrPort, buf []byte, offset int, moved bool) (int, bool) {
	h := fr.Header()
	fenceID, src := h.Fence(), fr.Src()
	payload := fr.Inner()
	if h.FragType() != fence.Whole {
		p, ok := u.reassemble(fr, buf[offset-fence.SealPrefixLen:], b.now)
		if !ok {
			return 0, false
		}
		payload, moved = p, false // opened where the switch wants it
	}
	inner, newest, err := u.seal.Open(u.rx.replay, fr.Dst(), src, fenceID, payload)
	if err != nil {
		u.ctr.countOpen(err)
		if b.table.byMAC[src] != nil { // an authenticated peer: its key state
			if ks := b.keyStat(u, src, fenceID, true); ks != nil {
				ks.failed.Add(1)
			}
		}
		return 0, false
	}
	b.sender(u, src, from, newest)
	if ks := b.keyStat(u, src, fenceID, true); ks != nil {
		ks.opened.Add(1)
		ks.failedAtOpen.Store(ks.failed.Load())
		ks.lastKeyID.Store(uint32(payload[0]))
	}
	if fenceID == fence.ControlFence {
		u.rxHello(src, inner, from, b.now)
		return 0, false
	}
	if moved {
		copy(buf[offset:], inner)
	}
	return len(inner), true
}

// keyStat returns the key state of (src, fenceID), looked up once per run.
func (b *rxBatch) keyStat(u *Uplink, src fence.OuterMAC, fenceID uint32, create bool) *keyStat {
	k := keyStatKey{src, fenceID}
	if b.lastKSPtr != nil && b.lastKS == k {
		return b.lastKSPtr
	}
	ks := u.keyStats.get(src, fenceID, create)
	if ks != nil {
		b.lastKS, b.lastKSPtr = k, ks
	}
	return ks
}

// sender refreshes src's host table entry, or, when learn is set, learns
// src at from when it is new or has moved: a table lookup once per run of
// frames from one sender.
func (b *rxBatch) sender(u *Uplink, src fence.OuterMAC, from netip.AddrPort, learn bool) {
	if !b.lastOK || src != b.lastSrc || from != b.lastFrom {
		b.lookup(u, src, from, learn)
	}
}

// lookup is sender for a sender other than the last one.
func (b *rxBatch) lookup(u *Uplink, src fence.OuterMAC, from netip.AddrPort, learn bool) {
	if p := b.table.byMAC[src]; p != nil && p.ap == from {
		p.seen.Store(b.nowNano)
		b.lastSrc, b.lastFrom, b.lastOK = src, from, true
		return
	}
	b.lastOK = false
	if !learn {
		return
	}
	u.learn(src, from, b.now)
	b.table = u.hosts.load()
}

// inner puts the inner frame of fr at dst and returns its length. A whole
// frame is already there unless moved (frames before it in the batch were
// dropped, so it moves down); a fragment is copied out and reassembled
// into dst once its other half is in. ok is false when there is no frame
// (yet): a first half, or a fragment the reassembler refused (counted).
func (u *Uplink) inner(fr fence.Frame, dst []byte, moved bool, now time.Time) (size int, ok bool) {
	if fr.Header().FragType() != fence.Whole {
		out, ok := u.reassemble(fr, dst, now)
		return len(out), ok
	}
	if moved {
		copy(dst, fr.Inner())
	}
	return len(fr) - fence.EncapLen, true
}

// reassemble adds the fragment fr; when it completes a frame, the
// frame's payload (the inner frame; sealed, the sealed payload) is
// returned at dst[:n].
func (u *Uplink) reassemble(fr fence.Frame, dst []byte, now time.Time) ([]byte, bool) {
	rx := &u.rx
	u.ctr.add(ctrRxFragments, 1)
	// Copy the fragment out: the reassembled frame is written to dst,
	// which may overlap it.
	c := fence.Frame(rx.scratch[:copy(rx.scratch, fr)])
	out, done, err := rx.reasm.Add(c, now, dst)
	if err != nil {
		u.ctr.add(ctrDropReassembly, 1)
		return nil, false
	}
	if !done {
		return nil, false
	}
	u.ctr.add(ctrReassembled, 1)
	if len(out) > 0 && &out[0] != &dst[0] {
		out = dst[:copy(dst, out)]
	}
	return out, true
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
		u.plog.Info("peer moved", "peer", src.String(), "from", old.String(), "to", from.String())
	case learnNew:
		u.plog.Info("peer learned", "peer", src.String(), "addr", from.String())
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
	payload := fr.Inner()
	if u.seal != nil {
		// Only a host with the installation's keys can claim our MAC.
		if fr.Header().FragType() != fence.Whole {
			u.ctr.add(ctrDropOwnMAC, 1)
			return
		}
		inner, _, err := u.seal.Open(rx.replay, fr.Dst(), fr.Src(), fence.ControlFence, payload)
		if err != nil {
			u.ctr.countOpen(err)
			return
		}
		payload = inner
	}
	h := &rx.hello
	if err := h.Decode(payload); err != nil {
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

// rxHello applies the hello payload of peer src (its source is already
// learned; rx.mu held).
func (u *Uplink) rxHello(src fence.OuterMAC, payload []byte, from netip.AddrPort, now time.Time) {
	h := &u.rx.hello
	if err := h.Decode(payload); err != nil {
		u.ctr.add(ctrDropBadHello, 1)
		return
	}
	u.ctr.add(ctrRxHellos, 1)
	if h.IsProbe() {
		// Return routability: a probe announces nothing; its cookie is
		// echoed (the sender is a peer here: at most one probe back per
		// probe, of the same size).
		if h.Cookie != 0 && u.link.udp != nil && u.seal == nil {
			select {
			case u.ctl.echo <- probeReq{ap: from, echo: h.Cookie}:
			default:
			}
		}
		return
	}
	p, restarted, changed := u.hosts.hello(src, h, now)
	if p == nil { // table full
		return
	}
	if restarted {
		u.plog.Info("peer restarted", "peer", src.String(), "name", h.Name)
		select { // its MACs were learned in its previous life
		case u.ctl.down <- src:
		default:
		}
	}
	if changed {
		u.plog.Info("peer hello", "peer", src.String(), "name", h.Name, "addr", from.String(),
			"fences", p.fences, "gateways", p.gateways)
		if u.gw.peerClaims(src, p.name, p.gateways, now) {
			u.kickHello()
		}
	}
}
