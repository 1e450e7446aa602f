package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mrand "math/rand/v2"

	"github.com/hashicorp/memberlist"
)

// Errors of the setters.
var (
	ErrFenceNotLocal = errors.New("gossip: fence is not among the local fences")
	ErrTooManyMACs   = errors.New("gossip: more MACs than MaxMACsPerHost")
	ErrBadMAC        = errors.New("gossip: MAC is not a nonzero unicast address")
	ErrClosed        = errors.New("gossip: node closed")
)

// maxPacketMsg is the largest fence-state message sent as one packet
// (memberlist's UDPBufferSize is 1400, less its compound, label, CRC and
// encryption overhead); larger ones go over a stream.
const maxPacketMsg = 1200

// snapshotSpacing is the least time between two snapshot rebuilds: a
// burst of changes (a thousand joins) costs one rebuild per spacing.
const snapshotSpacing = 50 * time.Millisecond

// Node is one corral host's membership in the gossip cluster and its
// view of the fence state. Create it with [New]; stop it with [Node.Leave]
// (announce the departure) and [Node.Close]. Its methods are safe for
// concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	ml       *memberlist.Memberlist
	tr       *countingTransport
	keyring  *memberlist.Keyring // nil: gossip unencrypted
	instance uint64
	addr     netip.AddrPort         // advertised gossip address, set once by New
	meta     atomic.Pointer[[]byte] // encoded local metadata
	snap     atomic.Pointer[Snapshot]
	ctr      counters

	inbox  chan []byte
	outBE  chan outMsg // best effort (packet)
	outRel chan outMsg // reliable (stream)
	dirty  chan struct{}
	// announce asks the announcer to broadcast the metadata.
	announce chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool

	mu sync.Mutex // mu guards the following fields; never held while calling memberlist
	// +checklocks:mu
	peers map[string]*peer
	// +checklocks:mu
	byOuter map[[6]byte]*peer
	// +checklocks:mu
	fences []uint32 // local fences, gateways included, sorted
	// +checklocks:mu
	gateways []uint32
	// +checklocks:mu
	tables map[uint32]*fenceTable // one per local fence
	// +checklocks:mu
	remoteMACs int
	// +checklocks:mu
	seq uint64
	// +checklocks:mu
	gen uint64
	// +checklocks:mu
	dupOuter map[[6]byte]string // outer MACs claimed twice: the loser's name
	// +checklocks:mu
	syncSoon map[uint32]struct{} // fences whose membership changed: sync them early
}

// peer is another member as this host knows it.
type peer struct {
	name  string
	node  memberlist.Node // for sending
	state State
	since time.Time
	valid bool
	meta  Meta // immutable once set; replaced on change
	// fences is meta's fences and gateways, sorted and unique, as
	// snapshots list them: made once per metadata change, not per
	// snapshot (immutable, shared by the snapshots).
	fences []uint32
}

// up reports whether the data path uses p.
func (p *peer) up() bool { return p.valid && p.state.up() }

// has reports whether p is up and has fence id.
func (p *peer) has(id uint32) bool { return p.up() && p.meta.Has(id) }

// outMsg is a queued fence-state message.
type outMsg struct {
	to memberlist.Node
	b  []byte
}

// New starts a node: it creates the memberlist (listening on
// Config.BindAddr or using Config.Transport) and, when Config.Join is
// set, starts joining in the background. It does not wait for the join.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "gossip"),
		inbox:    make(chan []byte, inboxLen),
		outBE:    make(chan outMsg, outboxLen),
		outRel:   make(chan outMsg, outboxLen/8),
		dirty:    make(chan struct{}, 1),
		announce: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		peers:    map[string]*peer{},
		byOuter:  map[[6]byte]*peer{},
		tables:   map[uint32]*fenceTable{},
		dupOuter: map[[6]byte]string{},
		syncSoon: map[uint32]struct{}{},
	}
	var ib [8]byte
	_, _ = rand.Read(ib[:])
	n.instance = binary.BigEndian.Uint64(ib[:])
	if err := n.storeMeta(nil, nil, false); err != nil {
		return nil, err
	}

	mc := memberlistConfig(cfg.Profile)
	mc.Name = cfg.Name
	mc.Label = "corral/" + strconv.Itoa(int(cfg.Installation))
	mc.Delegate = (*delegate)(n)
	mc.Events = (*events)(n)
	mc.Logger = log.New(&logWriter{log: cfg.Logger, suppressed: &n.ctr.logSuppressed}, "", 0)
	mc.LogOutput = nil
	if cfg.SecretKey != nil {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
		if len(cfg.PreviousKeys) > 0 {
			kr, err := memberlist.NewKeyring(cfg.PreviousKeys, mc.SecretKey)
			if err != nil {
				return nil, fmt.Errorf("gossip: keyring: %w", err)
			}
			mc.Keyring = kr
		}
	}
	var inner memberlist.NodeAwareTransport
	if cfg.Transport != nil {
		inner = cfg.Transport
	} else {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{cfg.BindAddr.Addr().String()},
			BindPort:  int(cfg.BindAddr.Port()),
			Logger:    mc.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("gossip: listen on %v: %w", cfg.BindAddr, err)
		}
		inner = nt
		mc.BindAddr = cfg.BindAddr.Addr().String()
		mc.BindPort = nt.GetAutoBindPort()
		mc.AdvertisePort = mc.BindPort
	}
	if cfg.AdvertiseAddr.IsValid() {
		mc.AdvertiseAddr = cfg.AdvertiseAddr.Addr().String()
		mc.AdvertisePort = int(cfg.AdvertiseAddr.Port())
	}
	cfg.dilateMemberlist(mc)
	if cfg.tune != nil {
		cfg.tune(mc)
	}
	n.tr = newCountingTransport(inner, &n.ctr.bytesIn, &n.ctr.bytesOut)
	mc.Transport = n.tr
	n.publish(time.Now())
	ml, err := memberlist.Create(mc)
	if err != nil {
		n.tr.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist %q: %w", cfg.Name, err)
	}
	n.ml = ml
	n.keyring = mc.Keyring // memberlist made one from SecretKey; nil unencrypted
	ln := ml.LocalNode()
	ip, _ := netip.AddrFromSlice(ln.Addr)
	n.addr = netip.AddrPortFrom(ip.Unmap(), ln.Port)
	if n.resolveDataAddrs() {
		// Before any join: the others learn the resolved addresses.
		if err := n.storeMeta(nil, nil, false); err == nil {
			_ = ml.UpdateNode(0)
		}
		n.publish(time.Now())
	}
	n.wg.Add(4)
	go n.announcer()
	go n.loop()
	go n.send(n.outBE, false)
	go n.send(n.outRel, true)
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	n.log.Info("gossip started", "name", cfg.Name, "addr", n.LocalAddr(), "profile", string(cfg.Profile),
		"encrypted", cfg.SecretKey != nil, "join", cfg.Join)
	return n, nil
}

// resolveDataAddrs replaces the unspecified IP of a data address (an
// uplink listening on 0.0.0.0) with the advertised gossip address's IP,
// of the same family; it reports whether it changed one. (Before the
// node's goroutines start.)
func (n *Node) resolveDataAddrs() bool {
	changed := false
	addrs := slices.Clone(n.cfg.DataAddrs)
	for i, a := range addrs {
		if !a.Addr().IsUnspecified() {
			continue
		}
		ip := n.addr.Addr()
		if a.Addr().Is4() && !ip.Is4() {
			continue
		}
		addrs[i] = netip.AddrPortFrom(ip, a.Port())
		changed = true
	}
	n.cfg.DataAddrs = addrs
	return changed
}

// SetKeys replaces the gossip keys at run time (a rotation of the
// installation secret): key becomes the one gossip is sent with, previous
// keys are accepted on receive, every other key is dropped. Only a node
// started with a SecretKey has keys to replace.
func (n *Node) SetKeys(key []byte, previous [][]byte) error {
	if n.keyring == nil {
		return errors.New("gossip: not encrypted: no keys to replace")
	}
	for _, k := range append([][]byte{key}, previous...) {
		if len(k) != SecretKeyLen {
			return fmt.Errorf("gossip: key is %d bytes, want %d", len(k), SecretKeyLen)
		}
	}
	for _, k := range append(slices.Clone(previous), key) {
		if err := n.keyring.AddKey(k); err != nil {
			return fmt.Errorf("gossip: add key: %w", err)
		}
	}
	if err := n.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	for _, k := range n.keyring.GetKeys() {
		if !bytes.Equal(k, key) && !slices.ContainsFunc(previous, func(p []byte) bool { return bytes.Equal(p, k) }) {
			if err := n.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("gossip: remove key: %w", err)
			}
		}
	}
	return nil
}

// MaxMACsPerHost is the most MACs SetLocalMACs takes for one fence.
func (n *Node) MaxMACsPerHost() int { return n.cfg.MaxMACsPerHost }

// LocalAddr returns the gossip address this node advertises.
func (n *Node) LocalAddr() netip.AddrPort { return n.addr }

// Snapshot returns the current view. It is one atomic load: call it once
// per batch.
func (n *Node) Snapshot() *Snapshot { return n.snap.Load() }

// Leave announces this host's departure and waits up to timeout for the
// announcement to spread; the others withdraw its fences and MACs at
// once instead of after failure detection. Call Close afterwards.
func (n *Node) Leave(timeout time.Duration) error {
	if n.closed.Load() {
		return ErrClosed
	}
	// Flag the metadata first (waiting up to half the time for it to
	// spread), so that the others list this host as left, not dead.
	n.mu.Lock()
	err := n.storeMeta(n.fences, n.gateways, true)
	n.mu.Unlock()
	if err == nil {
		_ = n.ml.UpdateNode(timeout / 2)
	}
	if err := n.ml.Leave(timeout / 2); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Close stops the node without announcing it (the others detect it as
// failed unless Leave was called) and waits for its goroutines.
func (n *Node) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	close(n.stop)
	err := n.ml.Shutdown()
	n.wg.Wait()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// SetLocalFences sets the fences this host has local ports for and the
// fences whose gateway it serves (a gateway fence is a local fence too).
// Each must be a valid fence ID. Newly shared fences get this host's full
// MAC set; MACs of dropped fences are forgotten. The change is announced
// in the metadata at once. It fails with ErrMetaTooLarge when the lists
// do not fit the metadata (MaxMetaFences with one IPv4 data address).
func (n *Node) SetLocalFences(fences, gateways []uint32) error {
	if n.closed.Load() {
		return ErrClosed
	}
	gw := sortedUnique(gateways)
	all := sortedUnique(append(slices.Clone(fences), gw...))
	n.mu.Lock()
	if slices.Equal(all, n.fences) && slices.Equal(gw, n.gateways) {
		n.mu.Unlock()
		return nil
	}
	if err := n.storeMeta(all, gw, false); err != nil {
		n.mu.Unlock()
		return err
	}
	old := n.fences
	n.fences, n.gateways = all, gw
	for _, f := range old {
		if _, ok := slices.BinarySearch(all, f); !ok {
			n.dropTable(f)
		}
	}
	for _, f := range all {
		if _, ok := slices.BinarySearch(old, f); ok {
			continue
		}
		t := newFenceTable()
		n.tables[f] = t
		n.seq = nextSeq(n.seq)
		t.set(n.cfg.OuterMAC, &ownerState{instance: n.instance, seq: n.seq, macs: map[[6]byte]struct{}{}})
		for _, p := range n.peers {
			if p.has(f) {
				n.queueFull(p, f, n.cfg.OuterMAC)
			}
		}
		n.syncSoon[f] = struct{}{}
	}
	n.markDirty()
	n.mu.Unlock()
	// Announced by the announcer goroutine: memberlist's UpdateNode waits
	// for its broadcast to go out, which may be never while a member that
	// is gone is not declared dead yet.
	select {
	case n.announce <- struct{}{}:
	default:
	}
	return nil
}

// announceTimeout bounds how long the announcer waits for one metadata
// broadcast to go out.
const announceTimeout = 2 * time.Second

// announcer announces the metadata after each change (SetLocalFences),
// one change at a time, until Close.
func (n *Node) announcer() {
	defer n.wg.Done()
	for {
		select {
		case <-n.announce:
			if err := n.ml.UpdateNode(n.cfg.dur(announceTimeout)); err != nil && !n.closed.Load() {
				n.log.Debug("metadata broadcast not complete", "err", err)
			}
		case <-n.stop:
			return
		}
	}
}

// storeMeta encodes the local metadata with fences and gateways.
func (n *Node) storeMeta(all, gw []uint32, leaving bool) error {
	m := Meta{
		Leaving:      leaving,
		Installation: n.cfg.Installation,
		OuterMAC:     n.cfg.OuterMAC,
		Instance:     n.instance,
		DataAddrs:    n.cfg.DataAddrs,
		Fences:       slices.DeleteFunc(slices.Clone(all), func(f uint32) bool { _, ok := slices.BinarySearch(gw, f); return ok }),
		Gateways:     gw,
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("gossip: %d fences, %d gateways: %w", len(all), len(gw), err)
	}
	b := m.AppendTo(make([]byte, 0, m.Len()))
	n.meta.Store(&b)
	return nil
}

func sortedUnique(l []uint32) []uint32 {
	l = slices.Clone(l)
	slices.Sort(l)
	return slices.Compact(l)
}

// nextSeq returns a version greater than prev that also orders versions
// across restarts: the wall clock in nanoseconds when it is ahead.
func nextSeq(prev uint64) uint64 {
	return max(prev+1, uint64(time.Now().UnixNano()))
}

// SetLocalMACs sets the full set of inner MACs this host's local ports
// hold in fence id; the node sends the difference to the fence's other
// hosts. At most MaxMACsPerHost MACs, each nonzero unicast.
func (n *Node) SetLocalMACs(id uint32, macs [][6]byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(macs) > n.cfg.MaxMACsPerHost {
		return fmt.Errorf("gossip: fence %d: %d MACs: %w", id, len(macs), ErrTooManyMACs)
	}
	set := make(map[[6]byte]struct{}, len(macs))
	for _, m := range macs {
		if !validMAC(m) {
			return fmt.Errorf("gossip: fence %d: %x: %w", id, m, ErrBadMAC)
		}
		set[m] = struct{}{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.tables[id]
	if t == nil {
		return fmt.Errorf("gossip: fence %d: %w", id, ErrFenceNotLocal)
	}
	cur := t.owners[n.cfg.OuterMAC]
	var add, del [][6]byte
	for m := range set {
		if _, ok := cur.macs[m]; !ok {
			add = append(add, m)
		}
	}
	for m := range cur.macs {
		if _, ok := set[m]; !ok {
			del = append(del, m)
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	n.seq = nextSeq(n.seq)
	msg := Message{Type: MsgUpdate, Sender: n.cfg.OuterMAC, Fence: id, Owner: n.cfg.OuterMAC,
		Instance: n.instance, Base: cur.seq, Seq: n.seq, Add: add, Del: del}
	t.set(n.cfg.OuterMAC, &ownerState{instance: n.instance, seq: n.seq, macs: set})
	if msg.Len() > maxPacketMsg {
		msg.Base, msg.Add, msg.Del = 0, slices.Collect(mapsKeys(set)), nil
	}
	b := msg.AppendTo(nil)
	for _, p := range n.peers {
		if p.has(id) {
			n.queue(p, b)
			n.ctr.macsSent.Add(uint64(len(msg.Add) + len(msg.Del)))
			n.ctr.updatesSent.Add(1)
		}
	}
	n.markDirty()
	return nil
}

func validMAC(m [6]byte) bool { return m[0]&1 == 0 && m != [6]byte{} }

func mapsKeys(m map[[6]byte]struct{}) func(func([6]byte) bool) {
	return func(yield func([6]byte) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// queue queues the encoded message b to p: as a packet when it fits,
// else over a stream. A full queue drops it (counted; anti-entropy
// repairs the loss).
//
// +checklocks:n.mu
func (n *Node) queue(p *peer, b []byte) {
	ch := n.outBE
	if len(b) > maxPacketMsg {
		ch = n.outRel
	}
	select {
	case ch <- outMsg{to: p.node, b: b}:
	default:
		n.ctr.outDropped.Add(1)
	}
}

// queueFull queues owner's full MAC set in fence id to p.
//
// +checklocks:n.mu
func (n *Node) queueFull(p *peer, id uint32, owner [6]byte) {
	t := n.tables[id]
	if t == nil {
		return
	}
	os := t.owners[owner]
	if os == nil {
		return
	}
	msg := Message{Type: MsgUpdate, Sender: n.cfg.OuterMAC, Fence: id, Owner: owner,
		Instance: os.instance, Seq: os.seq, Add: slices.Collect(mapsKeys(os.macs))}
	n.queue(p, msg.AppendTo(nil))
	n.ctr.macsSent.Add(uint64(len(msg.Add)))
	n.ctr.updatesSent.Add(1)
}

// sendRate and sendBurst pace the fence-state packets a host sends (a
// join's burst, hundreds of full sets, would otherwise overflow the
// receivers' socket buffers).
const (
	sendRate  = 1000 // per second
	sendBurst = 100
)

// send sends queued messages until Close, at most sendRate a second
// after a burst of sendBurst.
func (n *Node) send(ch chan outMsg, reliable bool) {
	defer n.wg.Done()
	tokens, last := float64(sendBurst), time.Now()
	rate := sendRate / float64(n.cfg.dur(time.Second)/time.Second) // per real second
	for {
		select {
		case m := <-ch:
			now := time.Now()
			tokens = min(sendBurst, tokens+now.Sub(last).Seconds()*rate)
			last = now
			if tokens < 1 {
				d := time.Duration((1 - tokens) / rate * float64(time.Second))
				select {
				case <-time.After(d):
				case <-n.stop:
					return
				}
				tokens, last = 1, time.Now()
			}
			tokens--
			var err error
			if reliable {
				err = n.ml.SendReliable(&m.to, m.b)
			} else {
				err = n.ml.SendBestEffort(&m.to, m.b)
			}
			if err != nil {
				n.ctr.sendErrors.Add(1)
			}
		case <-n.stop:
			return
		}
	}
}

// markDirty asks the loop for a new snapshot.
func (n *Node) markDirty() {
	select {
	case n.dirty <- struct{}{}:
	default:
	}
}

// loop applies inbound fence-state messages, rebuilds snapshots, runs
// anti-entropy, refreshes suspect states and reaps dead members.
func (n *Node) loop() {
	defer n.wg.Done()
	syncT := time.NewTimer(jitter(n.cfg.SyncInterval))
	tick := time.NewTicker(n.cfg.dur(time.Second))
	defer syncT.Stop()
	defer tick.Stop()
	var msg Message
	var lastBuild time.Time
	var rebuild, soon <-chan time.Time
	for {
		select {
		case b := <-n.inbox:
			n.handle(&msg, b)
		case <-n.dirty:
			if rebuild == nil {
				rebuild = time.After(max(0, n.cfg.dur(snapshotSpacing)-time.Since(lastBuild)))
			}
		case <-rebuild:
			rebuild = nil
			lastBuild = time.Now()
			n.publish(lastBuild)
		case <-syncT.C:
			n.antiEntropy(false)
			syncT.Reset(jitter(n.cfg.SyncInterval))
		case <-soon:
			soon = nil
			n.antiEntropy(true)
		case now := <-tick.C:
			n.refresh(now)
			if soon == nil && n.hasSyncSoon() {
				soon = time.After(jitter(n.cfg.dur(earlySync)))
			}
		case <-n.stop:
			return
		}
	}
}

// jitter returns d ± 25 %.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// refresh marks suspect members (memberlist reports suspicion only in
// its member list) and forgets members dead or left for DeadRetention.
func (n *Node) refresh(now time.Time) {
	suspect := map[string]bool{}
	for _, m := range n.ml.Members() {
		suspect[m.Name] = m.State == memberlist.StateSuspect
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	for name, p := range n.peers {
		switch s, ok := suspect[name]; {
		case ok && s && p.state == StateAlive:
			p.state, p.since, changed = StateSuspect, now, true
		case ok && !s && p.state == StateSuspect:
			p.state, p.since, changed = StateAlive, now, true
		case !p.state.up() && now.Sub(p.since) > n.cfg.DeadRetention:
			delete(n.peers, name)
			if n.byOuter[p.meta.OuterMAC] == p {
				delete(n.byOuter, p.meta.OuterMAC)
			}
			changed = true
		}
	}
	if changed {
		n.markDirty()
	}
}

// earlySync is how soon after a fence's membership changed it gets an
// anti-entropy round of its own: it repairs at once the updates lost in
// the burst of a join (refused because they arrived before the sender's
// metadata, or dropped by a full queue) instead of at the next period.
const earlySync = 2 * time.Second

func (n *Node) hasSyncSoon() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.syncSoon) > 0
}

// antiEntropy sends, for every local fence (only those marked for an
// early round when early is set), the hash of its table to one random
// other host of the fence.
func (n *Node) antiEntropy(early bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var cands []*peer
	for _, f := range n.fences {
		if _, ok := n.syncSoon[f]; early && !ok {
			continue
		}
		delete(n.syncSoon, f)
		t := n.tables[f]
		cands = cands[:0]
		for _, p := range n.peers {
			if p.has(f) {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			continue
		}
		p := cands[mrand.IntN(len(cands))]
		msg := Message{Type: MsgSyncHash, Sender: n.cfg.OuterMAC, Fence: f, Count: uint16(len(t.owners)), Hash: t.hash}
		n.queue(p, msg.AppendTo(make([]byte, 0, SyncHashLen)))
		n.ctr.syncsSent.Add(1)
	}
}

// publish builds and stores a new snapshot.
func (n *Node) publish(now time.Time) {
	n.mu.Lock()
	n.gen++
	s := &Snapshot{
		Gen:     n.gen,
		Time:    now,
		self:    n.cfg.OuterMAC,
		members: make([]Member, 0, len(n.peers)+1),
		byOuter: make(map[[6]byte]int32, len(n.byOuter)+1),
		hosts:   make(map[uint32][][6]byte, len(n.fences)),
		macs:    make(map[fenceMAC][6]byte, n.remoteMACs),
		claims:  map[uint32][][6]byte{},
	}
	s.members = append(s.members, Member{Name: n.cfg.Name, Self: true, State: StateAlive, Addr: n.LocalAddr(), Valid: true,
		Installation: n.cfg.Installation, OuterMAC: n.cfg.OuterMAC, Instance: n.instance, DataAddrs: n.cfg.DataAddrs,
		Fences: n.fences, Gateways: n.gateways})
	for _, p := range n.peers {
		m := Member{Name: p.name, State: p.state, Since: p.since, Valid: p.valid}
		if ip, ok := netip.AddrFromSlice(p.node.Addr); ok {
			m.Addr = netip.AddrPortFrom(ip.Unmap(), p.node.Port)
		}
		if p.valid {
			m.Installation, m.OuterMAC, m.Instance, m.DataAddrs = p.meta.Installation, p.meta.OuterMAC, p.meta.Instance, p.meta.DataAddrs
			m.Fences = p.fences
			m.Gateways = p.meta.Gateways
		}
		s.members = append(s.members, m)
	}
	slices.SortFunc(s.members, func(a, b Member) int { return cmpString(a.Name, b.Name) })
	for i, m := range s.members {
		if m.Self {
			s.byOuter[m.OuterMAC] = int32(i)
		} else if p := n.byOuter[m.OuterMAC]; p != nil && p.name == m.Name {
			s.byOuter[m.OuterMAC] = int32(i)
		}
	}
	// Dead and left members stay findable by outer MAC while no up
	// member has it.
	for i, m := range s.members {
		if _, ok := s.byOuter[m.OuterMAC]; !ok && m.Valid {
			s.byOuter[m.OuterMAC] = int32(i)
		}
	}
	for _, g := range n.gateways {
		s.claims[g] = append(s.claims[g], n.cfg.OuterMAC)
	}
	for _, f := range n.fences {
		s.hosts[f] = [][6]byte{}
	}
	for _, p := range n.byOuter {
		if !p.up() {
			continue
		}
		for _, g := range p.meta.Gateways {
			s.claims[g] = append(s.claims[g], p.meta.OuterMAC)
		}
		for _, f := range n.fences {
			if p.meta.Has(f) {
				s.hosts[f] = append(s.hosts[f], p.meta.OuterMAC)
			}
		}
	}
	for _, l := range s.hosts {
		slices.SortFunc(l, func(a, b [6]byte) int { return bytes.Compare(a[:], b[:]) })
	}
	for _, l := range s.claims {
		slices.SortFunc(l, func(a, b [6]byte) int { return bytes.Compare(a[:], b[:]) })
	}
	// MACs: a MAC announced by two hosts of a fence (a VM that moved) goes
	// to the more recent announcement.
	for f, t := range n.tables {
		seen := map[[6]byte]uint64{}
		for owner, os := range t.owners {
			if owner == n.cfg.OuterMAC {
				continue
			}
			for m := range os.macs {
				if s, ok := seen[m]; ok && s >= os.seq {
					continue
				}
				seen[m] = os.seq
				s.macs[fenceMAC{f, m}] = owner
			}
		}
	}
	onChange := n.cfg.OnChange
	n.snap.Store(s)
	n.mu.Unlock()
	if onChange != nil {
		onChange(s)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// joinLoop joins Config.Join, retrying with exponential backoff until a
// member answers, and again whenever this host is alone. After each
// successful join it also exchanges state with two random members (after
// about 1 s and 5 s): the seed may not have known every member yet (hosts
// that booted together), and memberlist would otherwise fill the gap only
// at the next push/pull, minutes away at scale.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	backoff := n.cfg.JoinBackoff
	failures := 0
	joined := false
	var catchUp []time.Duration
	for {
		wait := n.cfg.JoinMaxBackoff
		switch {
		case !joined || n.ml.NumMembers() <= 1:
			// Join until a configured member answers: being joined by
			// another host is not enough (two hosts that boot together
			// would make an island).
			n.ctr.joinAttempts.Add(1)
			k, err := n.ml.Join(n.cfg.Join)
			joined = k > 0 && n.ml.NumMembers() > 1
			if joined {
				n.log.Info("joined the gossip cluster", "members", n.ml.NumMembers(), "after_failures", failures)
				backoff, failures = n.cfg.JoinBackoff, 0
				catchUp = []time.Duration{jitter(n.cfg.dur(time.Second)), jitter(n.cfg.dur(4 * time.Second))}
				wait = catchUp[0]
			} else {
				failures++
				if failures == 1 || failures%10 == 0 {
					n.log.Warn("joining the gossip cluster failed; retrying", "join", n.cfg.Join, "failures", failures,
						"retry_in", backoff, "err", err)
				}
				wait = jitter(backoff)
				backoff = min(2*backoff, n.cfg.JoinMaxBackoff)
			}
		case len(catchUp) > 0:
			catchUp = catchUp[1:]
			if m := n.randomMember(); m != "" {
				_, _ = n.ml.Join([]string{m})
			}
			if len(catchUp) > 0 {
				wait = catchUp[0]
			}
		}
		select {
		case <-time.After(wait):
		case <-n.stop:
			return
		}
	}
}

// randomMember returns the gossip address of a random up member, or "".
func (n *Node) randomMember() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var l []*peer
	for _, p := range n.peers {
		if p.state.up() {
			l = append(l, p)
		}
	}
	if len(l) == 0 {
		return ""
	}
	return l[mrand.IntN(len(l))].node.Address()
}

// delegate implements memberlist.Delegate for a Node.
type delegate Node

// NodeMeta implements memberlist.Delegate.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *(*Node)(d).meta.Load()
	if len(b) > limit {
		return nil // cannot happen: SetLocalFences checks MaxMetaLen
	}
	return b
}

// NotifyMsg implements memberlist.Delegate: it queues a copy for the loop.
func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	select {
	case n.inbox <- slices.Clone(b):
	default:
		n.ctr.inDropped.Add(1)
	}
}

// GetBroadcasts implements memberlist.Delegate: fence state never rides
// on cluster-wide gossip.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate: push/pull carries only
// memberlist's own state (metadata included), never fence tables.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// events implements memberlist.EventDelegate for a Node.
type events Node

// NotifyJoin implements memberlist.EventDelegate.
func (e *events) NotifyJoin(m *memberlist.Node) { (*Node)(e).update(m, StateAlive) }

// NotifyUpdate implements memberlist.EventDelegate.
func (e *events) NotifyUpdate(m *memberlist.Node) { (*Node)(e).update(m, StateAlive) }

// NotifyLeave implements memberlist.EventDelegate.
func (e *events) NotifyLeave(m *memberlist.Node) { (*Node)(e).update(m, StateDead) }

// update applies a memberlist event about member m, now in state s.
func (n *Node) update(m *memberlist.Node, s State) {
	if m.Name == n.cfg.Name {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[m.Name]
	if p == nil {
		p = &peer{name: m.Name, state: StateDead}
		n.peers[m.Name] = p
	}
	if s == StateDead && p.meta.Leaving {
		s = StateLeft
	}
	var meta Meta
	valid := s.up()
	if valid {
		if err := meta.Decode(m.Meta); err != nil || meta.Installation != n.cfg.Installation {
			valid = false
			n.ctr.badMeta.Add(1)
			n.log.Warn("member with unusable metadata ignored", "member", m.Name, "err", err,
				"installation", meta.Installation)
		}
	}
	wasUp := p.up()
	restarted := valid && p.valid && meta.Instance != p.meta.Instance
	// Fences p no longer shares (or all of them, when it went down or
	// restarted): withdraw its MACs there.
	if wasUp {
		for _, f := range n.fences {
			if p.meta.Has(f) && (!valid || restarted || !meta.Has(f)) {
				n.dropOwner(f, p.meta.OuterMAC)
			}
		}
	}
	if p.valid && (!valid || meta.OuterMAC != p.meta.OuterMAC) && n.byOuter[p.meta.OuterMAC] == p {
		delete(n.byOuter, p.meta.OuterMAC)
		n.promoteDup(p.meta.OuterMAC)
	}
	if p.state != s {
		p.since = now
	}
	p.node, p.state = *m, s
	p.node.Meta = nil
	if valid {
		oldMeta, wasValid := p.meta, p.valid && wasUp && !restarted
		p.meta, p.valid = meta, true
		p.fences = slices.Clip(sortedUnique(append(slices.Clone(meta.Fences), meta.Gateways...)))
		n.claimOuter(p)
		// Fences p newly shares: send it our full set and ask for its own
		// (it may have sent it before its metadata reached this host, and
		// then it was refused).
		for _, f := range n.fences {
			if meta.Has(f) && !(wasValid && oldMeta.Has(f)) {
				n.queueFull(p, f, n.cfg.OuterMAC)
				n.syncSoon[f] = struct{}{}
				pm := Message{Type: MsgPull, Sender: n.cfg.OuterMAC, Fence: f, Owners: [][6]byte{meta.OuterMAC}}
				n.queue(p, pm.AppendTo(make([]byte, 0, pm.Len())))
			}
		}
	} else {
		p.valid = p.valid && !s.up() // keep the last metadata of a dead member for Status
	}
	n.markDirty()
}

// claimOuter maps p's outer MAC to p unless another up member holds it
// (a duplicate outer MAC: logged, counted, listed in Status).
//
// +checklocks:n.mu
func (n *Node) claimOuter(p *peer) {
	o := p.meta.OuterMAC
	if o == n.cfg.OuterMAC {
		if n.dupOuter[o] != p.name {
			n.ctr.dupOuter.Add(1)
			n.log.Error("another member uses this host's outer MAC; it gets no frames", "member", p.name, "outer_mac", macString(o))
		}
		n.dupOuter[o] = p.name
		return
	}
	q := n.byOuter[o]
	switch {
	case q == nil || q == p || !q.up():
		n.byOuter[o] = p
		if n.dupOuter[o] == p.name {
			delete(n.dupOuter, o)
		}
	default:
		if n.dupOuter[o] != p.name {
			n.ctr.dupOuter.Add(1)
			n.log.Error("two members claim one outer MAC; the later one gets no frames", "member", p.name,
				"other", q.name, "outer_mac", macString(o))
		}
		n.dupOuter[o] = p.name
	}
}

// promoteDup gives outer MAC o to a waiting duplicate, if one is up.
//
// +checklocks:n.mu
func (n *Node) promoteDup(o [6]byte) {
	if name, ok := n.dupOuter[o]; ok {
		if q := n.peers[name]; q != nil && q.up() && q.meta.OuterMAC == o && o != n.cfg.OuterMAC {
			n.byOuter[o] = q
			delete(n.dupOuter, o)
		}
	}
}

func macString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
