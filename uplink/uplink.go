package uplink

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralnet/corral/fence"
)

// DefaultBatchSize is the number of frames ReadTrunk returns and WriteTrunk
// takes at most. The switch reads the trunk 64 frames at a time whatever
// it is, and hands WriteTrunk up to this many queued frames: a large batch
// is fewer sendmmsg calls (and, with UDP GSO, up to four 64-datagram
// trains per call) when the trunk's queue is backed up.
const DefaultBatchSize = 256

// scratchSlots is how many last fragments one WriteTrunk holds before it
// sends what it has staged (each slot is MaxEncapLen bytes).
const scratchSlots = 64

// Reassembly bounds (DESIGN.md 3.4).
const (
	reassemblyPerHost = 64
	reassemblyTotal   = 1024
	reassemblyTimeout = time.Second
)

// dropSummaryInterval is how often dropped frames are summarized in the
// log (never one line per frame).
const dropSummaryInterval = 30 * time.Second

// logDrops logs the drop counters that grew since last and returns the
// current ones.
func (u *Uplink) logDrops(last map[string]uint64) map[string]uint64 {
	cur := u.ctr.drops()
	var attrs []any
	for k, v := range cur {
		if d := v - last[k]; d > 0 {
			attrs = append(attrs, k, d)
		}
	}
	if len(attrs) > 0 {
		u.log.Warn("uplink dropped frames in the last interval", append(attrs, "interval", dropSummaryInterval)...)
	}
	return cur
}

// maxDupLog bounds the addresses remembered for rate-limiting duplicate
// outer MAC errors.
const maxDupLog = 256

// rxErrorPause is how long ReadTrunk pauses after a transient error.
const rxErrorPause = 20 * time.Millisecond

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

// pollInterval is how often the control goroutine checks for expired peers
// and changed local fences (a changed fence list is announced at once).
const pollInterval = 100 * time.Millisecond

// Uplink carries the frames of every fence to and from remote hosts over
// one transport (UDP or raw Ethernet). *Uplink implements vswitch.Trunk.
type Uplink struct {
	cfg      Config
	log      *slog.Logger
	params   fence.Params
	self     fence.OuterMAC
	tr       transport
	udp      *udpTransport // nil on the raw uplink
	raw      *rawTransport // nil on the UDP uplink
	maxEncap int           // longest encapsulated frame sent whole
	group    *net.UDPAddr  // nil: no multicast group
	statics  []staticPeer
	instance uint64 // random per process, sent in hellos

	ctr      counters
	fenceCtr fenceCounters

	mu    sync.Mutex // serializes host table updates (copy-on-write)
	table atomic.Pointer[hostTable]

	frag fence.Fragmenter

	rx struct {
		sync.Mutex // the switch reads from one goroutine; this makes misuse safe
		sizes      []int
		from       []netip.AddrPort
		views      [][]byte
		scratch    []byte // a copy of a fragment being reassembled
		reasm      *fence.Reassembler
		hello      fence.Hello
	}
	tx struct {
		sync.Mutex
		items   []outItem
		scratch [][]byte // per batch slot: the last fragment
	}

	kick      chan struct{}       // asks the control goroutine for a hello now
	down      chan fence.OuterMAC // restarted peers, for OnPeerDown
	dupReply  chan netip.AddrPort // hosts claiming our MAC: tell them too
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup

	helloTrimmed bool // owned by the control goroutine

	dupMu  sync.Mutex // guards dupLog
	dupLog map[netip.AddrPort]time.Time

	gw struct { // gateway conflicts (gateway.go)
		sync.Mutex
		yielded map[uint32]gwYield
		events  []gwEvent
	}
}

// New validates cfg, binds the transport and starts hellos. The raw uplink
// without CAP_NET_RAW fails here with an error that says so.
func New(cfg Config) (*Uplink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := newBase(cfg)
	batch := DefaultBatchSize
	if u.cfg.RawInterface != "" {
		rt, err := openRaw(u.cfg.RawInterface, u.cfg.EtherType, u.self, &u.ctr)
		if err != nil {
			return nil, err
		}
		u.raw, u.tr = rt, rt
		mtu := min(u.cfg.MTU, rt.mtu)
		u.maxEncap = fence.MaxEncapLenRaw(mtu)
	} else {
		ut, err := listenUDP(&u.cfg, batch, !u.cfg.noOffload, &u.ctr)
		if err != nil {
			return nil, err
		}
		u.udp, u.tr = ut, ut
		u.maxEncap = fence.MaxEncapLenUDP(u.cfg.MTU, ut.v6)
		for _, p := range u.cfg.Peers {
			p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
			u.statics = append(u.statics, staticPeer{ap: p, ua: ut.udpAddr(p)})
		}
		if u.cfg.Group.IsValid() {
			u.group = ut.udpAddr(u.cfg.Group)
		}
	}
	u.start(batch)
	return u, nil
}

// newBase returns an Uplink without a transport.
func newBase(cfg Config) *Uplink {
	cfg = cfg.withDefaults()
	u := &Uplink{
		cfg:      cfg,
		params:   fence.Params{OUI: cfg.OUI, Installation: cfg.Installation, EtherType: cfg.EtherType},
		kick:     make(chan struct{}, 1),
		down:     make(chan fence.OuterMAC, 64),
		dupReply: make(chan netip.AddrPort, 8),
		done:     make(chan struct{}),
		dupLog:   map[netip.AddrPort]time.Time{},
	}
	u.gw.yielded = map[uint32]gwYield{}
	for u.instance == 0 {
		u.instance = rand.Uint64()
	}
	u.self = u.params.OuterMAC(cfg.HostID)
	u.log = cfg.Logger.With("outer_mac", u.self.String())
	return u
}

// start allocates the batch state and starts the control goroutine; u.tr
// and u.maxEncap are set.
func (u *Uplink) start(batch int) {
	u.table.Store(rebuildTable(map[fence.OuterMAC]*peer{}, u.statics))

	u.rx.sizes = make([]int, batch)
	u.rx.from = make([]netip.AddrPort, batch)
	u.rx.views = make([][]byte, batch)
	u.rx.scratch = make([]byte, fence.EncapLen+fence.MaxInnerLen)
	u.rx.reasm = fence.NewReassembler(fence.ReassemblyConfig{
		MaxPerHost: reassemblyPerHost, MaxTotal: reassemblyTotal, Timeout: reassemblyTimeout,
	})
	u.tx.scratch = make([][]byte, min(batch, scratchSlots))
	for i := range u.tx.scratch {
		u.tx.scratch[i] = make([]byte, u.maxEncap)
	}

	u.wg.Add(1)
	// The first hello is sent before New returns, hence before any hello
	// is read: every host announces its configured gateways once, so that
	// a gateway conflict is seen (and logged) by both hosts.
	fences, gws := u.hook(u.cfg.LocalFences), u.servedGateways()
	buf := u.sendHello(make([]byte, 0, 64<<10), fences, gws, nil)
	go u.control(buf, fences, gws, time.Now())
	u.log.Info("uplink up", "transport", u.transportName(), "addr", u.addrString(),
		"max_encap_len", u.maxEncap, "hello_interval", u.cfg.HelloInterval)
}

// OuterMAC returns this host's outer MAC.
func (u *Uplink) OuterMAC() [6]byte { return u.self }

// LocalAddr returns the bound UDP address (zero on the raw uplink).
func (u *Uplink) LocalAddr() netip.AddrPort {
	if u.udp == nil {
		return netip.AddrPort{}
	}
	return u.udp.local
}

// MaxEncapLen is the longest encapsulated frame sent without fragmenting.
func (u *Uplink) MaxEncapLen() int { return u.maxEncap }

func (u *Uplink) transportName() string {
	if u.raw != nil {
		return "raw"
	}
	return "udp"
}

func (u *Uplink) addrString() string {
	switch {
	case u.raw != nil:
		return u.cfg.RawInterface
	case u.udp != nil:
		return u.udp.local.String()
	}
	return ""
}

// BatchSize implements vswitch.Trunk.BatchSize.
func (u *Uplink) BatchSize() int { return DefaultBatchSize }

// Close implements vswitch.Trunk.Close: it closes the socket, stops the
// hellos and waits for the control goroutine. Blocked ReadTrunk and
// WriteTrunk return net.ErrClosed. Close may be called more than once.
func (u *Uplink) Close() error {
	var err error
	u.closeOnce.Do(func() {
		u.closed.Store(true)
		close(u.done)
		err = u.tr.close()
		u.wg.Wait()
	})
	return err
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
	rx := &u.rx
	rx.Lock()
	defer rx.Unlock()
	nb := min(len(bufs), len(rx.views))
	for {
		if u.closed.Load() {
			return 0, net.ErrClosed
		}
		views := rx.views[:nb]
		for i := range views {
			views[i] = bufs[i][offset-fence.EncapLen:]
		}
		n, err := u.tr.recv(views, rx.sizes, rx.from)
		for i := range views {
			views[i] = nil
		}
		if err != nil {
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
			continue
		}
		now := time.Now()
		nowNano := now.UnixNano()
		t := u.table.Load()
		j := 0
		// Per batch, not per frame: the counters (shared with the
		// sending goroutine's cache lines) and the last sender's table
		// entry (frames of a batch mostly come from one peer).
		var nFrames, nBytes, nFence uint64
		lastFence := uint32(0)
		var lastSrc fence.OuterMAC
		var lastFrom netip.AddrPort
		lastOK := false
		for i := 0; i < n; i++ {
			outer := bufs[i][offset-fence.EncapLen : offset-fence.EncapLen+rx.sizes[i]]
			fr, err := u.params.Parse(outer)
			if err != nil {
				u.ctr.countParse(err)
				continue
			}
			src := fr.Src()
			h := fr.Header()
			fenceID := h.Fence()
			if src == u.self {
				u.ownMAC(fr, fenceID, rx.from[i])
				continue
			}
			if d := fr.Dst(); d != u.self && !d.IsBroadcast() {
				// Unicast for another host (a raw segment flooding
				// unknown unicast): not ours to deliver.
				u.ctr.add(ctrDropOtherDst, 1)
				continue
			}
			if !lastOK || src != lastSrc || rx.from[i] != lastFrom {
				if p := t.byMAC[src]; p != nil && p.ap == rx.from[i] {
					p.seen.Store(nowNano)
					lastSrc, lastFrom, lastOK = src, rx.from[i], true
				} else {
					u.learn(src, rx.from[i], now)
					t = u.table.Load()
					lastOK = false
				}
			}
			if fenceID == fence.ControlFence {
				u.rxHello(fr, rx.from[i], now)
				continue
			}
			var inner []byte
			switch h.FragType() {
			case fence.Whole:
				inner = fr.Inner()
				if i != j {
					copy(bufs[j][offset:], inner)
				}
			default:
				u.ctr.add(ctrRxFragments, 1)
				// Copy the fragment out: the reassembled frame is written
				// to bufs[j][offset:], which may overlap it.
				c := fence.Frame(rx.scratch[:copy(rx.scratch, fr)])
				out, done, err := rx.reasm.Add(c, now, bufs[j][offset:])
				if err != nil {
					u.ctr.add(ctrDropReassembly, 1)
					continue
				}
				if !done {
					continue
				}
				u.ctr.add(ctrReassembled, 1)
				if len(out) > 0 && &out[0] != &bufs[j][offset] {
					copy(bufs[j][offset:], out)
				}
				inner = out
			}
			sizes[j] = len(inner)
			fences[j], hosts[j] = fenceID, src
			nFrames++
			nBytes += uint64(len(inner))
			if fenceID != lastFence {
				if nFence > 0 {
					u.fenceCtr.add(lastFence, nFence)
				}
				lastFence, nFence = fenceID, 0
			}
			nFence++
			j++
		}
		if nFence > 0 {
			u.fenceCtr.add(lastFence, nFence)
		}
		if j > 0 {
			u.ctr.add(ctrRxFrames, nFrames)
			u.ctr.add(ctrRxBytes, nBytes)
			return j, nil
		}
	}
}

// ownMAC handles a frame whose outer source is our own MAC: our own
// multicast echo, or another host claiming our MAC.
func (u *Uplink) ownMAC(fr fence.Frame, fenceID uint32, from netip.AddrPort) {
	if fenceID != fence.ControlFence {
		u.ctr.add(ctrDropOwnMAC, 1)
		return
	}
	h := &u.rx.hello
	if err := h.Decode(fr.Inner()); err != nil {
		u.ctr.add(ctrDropBadHello, 1)
		return
	}
	if h.Instance == u.instance {
		u.ctr.add(ctrDropOwnEcho, 1) // our own hello, looped back by a group
		return
	}
	u.ctr.add(ctrDupMAC, 1)
	u.dupMu.Lock()
	if len(u.dupLog) >= maxDupLog {
		clear(u.dupLog) // bounded: forged hellos from many addresses
	}
	last, ok := u.dupLog[from]
	logIt := !ok || time.Since(last) >= u.cfg.HelloInterval
	if logIt {
		u.dupLog[from] = time.Now()
	}
	u.dupMu.Unlock()
	if logIt {
		if from.IsValid() {
			select { // so that it sees the conflict too, even if it does not know us
			case u.dupReply <- from:
			default:
			}
		}
		u.log.Error("DUPLICATE OUTER MAC: another host claims this host's outer MAC; set distinct host.id values",
			"other_addr", from.String(), "other_name", h.Name, "other_host_id", h.HostID,
			"our_name", u.cfg.HostName, "our_host_id", u.cfg.HostID)
	}
}

// learn records (or moves) the peer src at address from.
func (u *Uplink) learn(src fence.OuterMAC, from netip.AddrPort, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.table.Load()
	old := t.byMAC[src]
	if old != nil && old.ap == from {
		old.seen.Store(now.UnixNano())
		return
	}
	if old == nil && len(t.byMAC) >= maxPeers {
		u.ctr.add(ctrDropTableFull, 1)
		return
	}
	var p *peer
	if old != nil {
		cp := *old
		p = &cp
		u.log.Info("peer moved", "peer", src.String(), "from", old.ap.String(), "to", from.String())
	} else {
		p = &peer{mac: src, seen: new(atomic.Int64)}
		u.log.Info("peer learned", "peer", src.String(), "addr", from.String())
		u.kickHello()
	}
	p.raw = u.raw != nil
	p.ap = from
	if u.udp != nil {
		p.ua = u.udp.udpAddr(from)
	}
	p.seen.Store(now.UnixNano())
	m := t.cloneMap()
	m[src] = p
	u.table.Store(rebuildTable(m, u.statics))
}

// kickHello asks the control goroutine for a hello now.
func (u *Uplink) kickHello() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// rxHello applies a peer's hello (its source is already learned).
func (u *Uplink) rxHello(fr fence.Frame, from netip.AddrPort, now time.Time) {
	h := &u.rx.hello
	if err := h.Decode(fr.Inner()); err != nil {
		u.ctr.add(ctrDropBadHello, 1)
		return
	}
	u.ctr.add(ctrRxHellos, 1)
	src := fr.Src()
	u.mu.Lock()
	t := u.table.Load()
	old := t.byMAC[src]
	if old == nil { // table full
		u.mu.Unlock()
		return
	}
	restarted := old.helloKnown && old.instance != h.Instance
	changed := restarted || !old.helloKnown || old.name != h.Name || !slices.Equal(old.fences, h.Fences) ||
		!slices.Equal(old.gateways, h.Gateways)
	cp := *old
	p := &cp
	p.helloKnown = true
	p.hostID = h.HostID
	p.instance = h.Instance
	p.lastHello = now
	if changed {
		p.name = h.Name
		p.fences = slices.Clone(h.Fences)
		slices.Sort(p.fences)
		p.gateways = slices.Clone(h.Gateways)
		slices.Sort(p.gateways)
	}
	m := t.cloneMap()
	m[src] = p
	u.table.Store(rebuildTable(m, u.statics))
	u.mu.Unlock()
	if restarted {
		u.log.Info("peer restarted", "peer", src.String(), "name", h.Name)
		select { // its MACs were learned in its previous life
		case u.down <- src:
		default:
		}
	}
	if changed {
		u.log.Info("peer hello", "peer", src.String(), "name", h.Name, "addr", from.String(),
			"fences", p.fences, "gateways", p.gateways)
		u.checkGatewayClaims(src, p.name, p.gateways, now)
	}
}

// WriteTrunk implements vswitch.Trunk.WriteTrunk. Each inner frame
// bufs[i][offset:] is encapsulated in place (the outer and fence headers
// are written into bufs[i][offset-18:offset]), fragmented when it does not
// fit the uplink, and sent: to hosts[i]'s address for known unicast, or
// for hosts[i] == ff:ff:ff:ff:ff:ff once to the multicast group, or else to
// every peer that has the fence (or whose hello is not known yet). Frames
// for unknown hosts, invalid fences or too big for two fragments are
// dropped and counted. It returns len(bufs) unless the uplink is closed.
// The uplink does not keep bufs after it returns.
func (u *Uplink) WriteTrunk(bufs [][]byte, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	if u.closed.Load() {
		return 0, net.ErrClosed
	}
	if offset < fence.EncapLen {
		return 0, fmt.Errorf("uplink: WriteTrunk offset %d < %d", offset, fence.EncapLen)
	}
	tx := &u.tx
	tx.Lock()
	defer tx.Unlock()
	t := u.table.Load()
	items := tx.items[:0]
	// Counted once per batch; the last unicast destination is looked up
	// once per run of frames to it.
	var nFrames, nBytes, nFrag uint64
	defer func() {
		u.ctr.add(ctrTxFrames, nFrames)
		u.ctr.add(ctrTxBytes, nBytes)
		if nFrag > 0 {
			u.ctr.add(ctrTxFragmented, nFrag)
		}
	}()
	var lastHost [6]byte
	var lastPeer *peer
	used := 0 // scratch slots holding last fragments of items
	for i := range bufs {
		innerLen := len(bufs[i]) - offset
		fenceID, host := fences[i], hosts[i]
		if innerLen < fence.MinInnerLen || innerLen > fence.MaxInnerLen || !fence.ValidFenceID(fenceID) {
			u.ctr.add(ctrDropTxInvalid, 1)
			continue
		}
		flood := host == fence.BroadcastMAC
		var p *peer
		dst := fence.BroadcastMAC
		if !flood {
			if lastPeer != nil && host == lastHost {
				p = lastPeer
			} else {
				p = t.byMAC[host]
				lastHost, lastPeer = host, p
			}
			if p == nil {
				u.ctr.add(ctrDropTxNoHost, 1)
				continue
			}
			dst = p.mac
		}
		fr := u.params.Encap(bufs[i], offset, innerLen, dst, u.self, fence.HeaderFields{Fence: fenceID})
		sc := tx.scratch[0] // untouched unless fr is split
		if len(fr) > u.maxEncap {
			if used == len(tx.scratch) {
				// Scratch slots are reused: send what uses them first.
				if err := u.tr.send(items); err != nil {
					return 0, err
				}
				clear(items)
				items, used = items[:0], 0
			}
			sc = tx.scratch[used]
			used++
		}
		first, last, err := u.frag.Split(fr, u.maxEncap, sc)
		if err != nil {
			u.ctr.add(ctrDropTooBig, 1)
			continue
		}
		if last != nil {
			nFrag++
		}
		nFrames++
		nBytes += uint64(innerLen)
		before := len(items)
		items = u.dests(items, t, first, p, fenceID)
		if last != nil {
			for k, n := before, len(items); k < n; k++ {
				it := items[k]
				it.frame = last
				items = append(items, it)
			}
		}
	}
	err := u.tr.send(items)
	for k := range items {
		items[k] = outItem{}
	}
	tx.items = items[:0]
	if err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// dests appends the sends of frame fr (of fence fenceID) to items: to p, or
// for a flood (p nil) to the group or every peer that wants the fence.
func (u *Uplink) dests(items []outItem, t *hostTable, fr []byte, p *peer, fenceID uint32) []outItem {
	if p != nil {
		return append(items, outItem{frame: fr, dst: p.mac, ua: p.ua, ap: p.ap})
	}
	if u.raw != nil {
		// One L2 segment: broadcast when every peer wants it (or none is
		// known yet), else unicast copies to those that do.
		want := 0
		for _, q := range t.peers {
			if q.wants(fenceID) {
				want++
			}
		}
		if want == len(t.peers) {
			return append(items, outItem{frame: fr, dst: fence.BroadcastMAC})
		}
		for _, q := range t.peers {
			if q.wants(fenceID) {
				items = append(items, outItem{frame: fr, dst: q.mac})
			}
		}
		return items
	}
	if u.group != nil {
		return append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: u.group, ap: u.cfg.Group})
	}
	for _, q := range t.peers {
		if q.wants(fenceID) {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: q.ua, ap: q.ap})
		}
	}
	for _, s := range t.unmatched {
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: s.ua, ap: s.ap})
	}
	return items
}

// control sends hellos and expires silent peers until Close.
// The first hello (buf, lastFences, lastGW, lastHello) was sent by start.
func (u *Uplink) control(buf []byte, lastFences, lastGW []uint32, lastHello time.Time) {
	defer u.wg.Done()
	tick := time.NewTicker(min(pollInterval, u.cfg.HelloInterval))
	defer tick.Stop()
	lastSummary, lastDrops := time.Now(), u.ctr.drops()
	for {
		now := time.Now()
		if now.Sub(lastSummary) >= dropSummaryInterval {
			lastSummary, lastDrops = now, u.logDrops(lastDrops)
		}
		u.checkYields(u.table.Load())
		u.runGatewayEvents()
		fences, gws := u.hook(u.cfg.LocalFences), u.servedGateways()
		if now.Sub(lastHello) >= u.cfg.HelloInterval || !slices.Equal(fences, lastFences) || !slices.Equal(gws, lastGW) {
			buf = u.sendHello(buf[:0], fences, gws, nil)
			lastHello, lastFences, lastGW = now, fences, gws
		}
		u.expire(now)
		u.rx.reasm.Expire(now)
		select {
		case <-u.done:
			return
		case <-tick.C:
		case <-u.kick:
			lastHello = time.Time{}
		case ap := <-u.dupReply:
			if u.udp != nil {
				buf = u.sendHello(buf[:0], lastFences, lastGW, u.udp.udpAddr(ap))
			}
		case mac := <-u.down:
			if u.cfg.OnPeerDown != nil {
				u.cfg.OnPeerDown(mac)
			}
		}
	}
}

func (u *Uplink) hook(f func() []uint32) []uint32 {
	if f == nil {
		return nil
	}
	l := slices.Clone(f())
	slices.Sort(l)
	return slices.Compact(l)
}

// sendHello builds a hello in buf and sends it to every peer (or the
// group), or only to the UDP address to when it is not nil.
func (u *Uplink) sendHello(buf []byte, fences, gws []uint32, to *net.UDPAddr) []byte {
	buf = append(buf[:0], make([]byte, fence.EncapLen)...)
	// A hello is never fragmented: trim the lists to what one frame holds
	// (gateways first, then fences), and say so.
	room := (u.maxEncap - fence.EncapLen - fence.HelloHeaderLen - min(len(u.cfg.HostName), fence.MaxHelloName)) / 3
	room = min(room, fence.MaxHelloFences+fence.MaxHelloGateways)
	if nf, ng := min(len(fences), fence.MaxHelloFences, room), len(gws); nf+ng > room || nf < len(fences) || ng > fence.MaxHelloGateways {
		gws = gws[:min(ng, room-nf, fence.MaxHelloGateways)]
		fences = fences[:nf]
		if !u.helloTrimmed {
			u.helloTrimmed = true
			u.log.Warn("hello trimmed: too many fences for one hello; peers may not send floods of the others here",
				"fences_sent", len(fences), "gateways_sent", len(gws))
		}
	}
	h := fence.Hello{HostID: u.cfg.HostID, Instance: u.instance, Name: u.cfg.HostName, Fences: fences, Gateways: gws}
	buf = h.AppendTo(buf)
	fr := u.params.Encap(buf, fence.EncapLen, len(buf)-fence.EncapLen, fence.BroadcastMAC, u.self,
		fence.HeaderFields{Fence: fence.ControlFence})
	var items []outItem
	switch {
	case to != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: to})
	case u.raw != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC})
	case u.group != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: u.group, ap: u.cfg.Group})
		fallthrough // peers outside the group (static) hear us too
	default:
		t := u.table.Load()
		for _, q := range t.peers {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: q.ua, ap: q.ap})
		}
		for _, s := range t.unmatched {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: s.ua, ap: s.ap})
		}
	}
	if len(items) > 0 {
		if err := u.tr.send(items); err == nil {
			u.ctr.add(ctrTxHellos, 1)
		}
	}
	return buf
}

// expire removes peers silent for PeerExpiryIntervals hello intervals and
// calls OnPeerDown for each, outside the lock.
func (u *Uplink) expire(now time.Time) {
	limit := now.Add(-PeerExpiryIntervals * u.cfg.HelloInterval).UnixNano()
	t := u.table.Load()
	var dead []fence.OuterMAC
	for _, p := range t.peers {
		if p.seen.Load() < limit {
			dead = append(dead, p.mac)
		}
	}
	if len(dead) == 0 {
		return
	}
	u.mu.Lock()
	t = u.table.Load()
	m := t.cloneMap()
	var gone []*peer
	for _, mac := range dead {
		if p := m[mac]; p != nil && p.seen.Load() < limit {
			delete(m, mac)
			gone = append(gone, p)
		}
	}
	u.table.Store(rebuildTable(m, u.statics))
	u.mu.Unlock()
	for _, p := range gone {
		u.ctr.add(ctrPeersExpired, 1)
		u.log.Warn("peer expired", "peer", p.mac.String(), "name", p.name, "addr", p.ap.String(),
			"silent", time.Duration(now.UnixNano()-p.seen.Load()).Round(time.Millisecond))
		if u.cfg.OnPeerDown != nil {
			u.cfg.OnPeerDown(p.mac)
		}
	}
}
