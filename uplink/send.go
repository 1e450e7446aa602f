package uplink

import (
	"fmt"
	"net"
	"sync"

	"github.com/corralnet/corral/fence"
)

// The send path (outbound) runs in stages, per frame of a WriteTrunk
// batch:
//
//  1. txBatch.resolve finds the destination: the peer of a known host
//     (looked up once per run of frames to it), or a flood.
//  2. The frame is encapsulated in place (fence.Params.Encap) and, when it
//     does not fit the uplink, split in two (fragment).
//  3. dests stages one send per destination host, for each part.
//
// Then the staged sends go out in one transport call (sendmmsg), and the
// batch is counted once.

// scratchSlots is how many last fragments one WriteTrunk holds before it
// sends what it has staged (each slot is MaxEncapLen bytes).
const scratchSlots = 64

// sender is the state of the send path. The switch writes the trunk from
// one goroutine; mu makes concurrent WriteTrunk calls safe anyway.
type sender struct {
	mu      sync.Mutex // mu guards the following fields
	items   []outItem  // kept for the next WriteTrunk's txBatch.items
	scratch [][]byte   // per slot: the last fragment of a split frame
	frag    fence.Fragmenter
	// sealBuf (sealed uplink only) holds a frame sealed out of the
	// caller's buffer, when that buffer has no room for the tag.
	sealBuf []byte
}

// init allocates the send state for WriteTrunk batches of up to batch
// frames that are split when longer than maxEncap.
func (tx *sender) init(batch, maxEncap int, sealed bool) {
	tx.scratch = make([][]byte, min(batch, scratchSlots))
	for i := range tx.scratch {
		tx.scratch[i] = make([]byte, maxEncap)
	}
	if sealed {
		tx.sealBuf = make([]byte, fence.SealedHeaderLen+fence.MaxInnerLen+fence.SealTagLen)
	}
}

// txBatch is what one WriteTrunk keeps across its frames: the sends it
// staged, the host table snapshot, the last unicast destination, the
// scratch slots in use and the counts, added once per batch.
type txBatch struct {
	items    []outItem // staged sends (tx.items, reused)
	table    *hostTable
	dir      Directory // Config.Directory's view; nil: none
	lastHost [6]byte
	lastPeer *peer
	used     int  // scratch slots holding last fragments of staged items
	sealUsed bool // tx.sealBuf holds a staged frame

	frames, bytes, fragmented uint64
	direct                    uint64 // unknown unicast sent to the directory's host
}

// WriteTrunk implements vswitch.Trunk.WriteTrunk. Each inner frame
// bufs[i][offset:] is encapsulated in place (the outer and fence headers
// are written into bufs[i][offset-18:offset]; sealed, the key ID and
// counter too, into bufs[i][offset-27:offset], the frame is encrypted
// where it is and the 16-byte tag written after it, within the slice's
// capacity: bufs[i][len:len+16]; a buffer without that room is sealed
// into the uplink's own buffer instead), fragmented when it does not
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
	if offset < u.hdrLen {
		return 0, fmt.Errorf("uplink: WriteTrunk offset %d < %d", offset, u.hdrLen)
	}
	tx := &u.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	b := txBatch{items: tx.items[:0], table: u.hosts.load()}
	if u.cfg.Directory {
		b.dir = u.loadDirectory()
	}
	defer b.flush(u)
	for i := range bufs {
		if err := u.stage(&b, bufs[i], fences[i], hosts[i], offset); err != nil {
			return 0, err
		}
	}
	if err := u.sendStaged(&b); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// stage stages the sends of one inner frame buf[offset:] of fence fenceID
// to host. Invalid frames, unknown hosts and frames too big for two
// fragments are dropped and counted; an error is the transport's (closed).
func (u *Uplink) stage(b *txBatch, buf []byte, fenceID uint32, host [6]byte, offset int) error {
	innerLen := len(buf) - offset
	if innerLen < fence.MinInnerLen || innerLen > fence.MaxInnerLen || !fence.ValidFenceID(fenceID) {
		u.ctr.add(ctrDropTxInvalid, 1)
		return nil
	}
	if host == fence.BroadcastMAC && b.dir != nil && buf[offset]&1 == 0 {
		// Unknown unicast here, but the directory knows the inner MAC's
		// host: straight there instead of a flood.
		var mac [6]byte
		copy(mac[:], buf[offset:])
		if o, ok := b.dir.Lookup(fenceID, mac); ok && b.table.byMAC[o] != nil {
			host = o
			b.direct++
		}
	}
	p, dst, ok := b.resolve(host)
	if !ok {
		u.ctr.add(ctrDropTxNoHost, 1)
		return nil
	}
	var first fence.Frame
	if u.seal != nil {
		var err error
		if first, err = u.sealFrame(b, buf, offset, innerLen, dst, fenceID); first == nil {
			return err
		}
	} else {
		first = u.params.Encap(buf, offset, innerLen, dst, u.self, fence.HeaderFields{Fence: fenceID})
	}
	var last []byte
	if len(first) > u.link.maxEncap {
		var err error
		if first, last, err = u.fragment(b, first); err != nil {
			return err
		}
		if first == nil {
			u.ctr.add(ctrDropTooBig, 1)
			return nil
		}
		b.fragmented++
	}
	b.frames++
	b.bytes += uint64(innerLen)
	// Fan out: one send per destination host, for each part.
	before := len(b.items)
	b.items = u.dests(b.items, b.table, first, p, fenceID)
	if last != nil {
		for k, n := before, len(b.items); k < n; k++ {
			it := b.items[k]
			it.frame = last
			b.items = append(b.items, it)
		}
	}
	return nil
}

// sealFrame seals the inner frame buf[offset:] of fence fenceID for dst,
// in place when buf has room for the tag after the frame, else in
// tx.sealBuf (sending what is staged first when that is in use). It
// returns nil when the frame is dropped (no key, counters used up:
// counted) or the transport failed (err).
func (u *Uplink) sealFrame(b *txBatch, buf []byte, offset, innerLen int, dst fence.OuterMAC, fenceID uint32) (fence.Frame, error) {
	if cap(buf)-len(buf) >= fence.SealTagLen {
		buf = buf[:len(buf)+fence.SealTagLen]
	} else {
		if b.sealUsed {
			if err := u.flushStaged(b); err != nil {
				return nil, err
			}
		}
		tx := &u.tx
		n := copy(tx.sealBuf[fence.SealedHeaderLen:], buf[offset:])
		buf, offset = tx.sealBuf[:fence.SealedHeaderLen+n+fence.SealTagLen], fence.SealedHeaderLen
		b.sealUsed = true
	}
	fr, err := u.seal.Encap(buf, offset, innerLen, dst, fenceID)
	switch err {
	case nil:
		return fr, nil
	case fence.ErrCounterLimit:
		u.ctr.add(ctrDropTxCounter, 1)
	default: // fence.ErrNoKey
		u.ctr.add(ctrDropTxNoKey, 1)
	}
	return nil, nil
}

// resolve returns the peer that host names and the outer destination MAC:
// the peer's for known unicast, broadcast (and p nil) for a flood. ok is
// false for an unknown host.
func (b *txBatch) resolve(host [6]byte) (p *peer, dst fence.OuterMAC, ok bool) {
	if host == fence.BroadcastMAC {
		return nil, fence.BroadcastMAC, true
	}
	if b.lastPeer == nil || host != b.lastHost {
		b.lastHost, b.lastPeer = host, b.table.byMAC[host]
	}
	if b.lastPeer == nil {
		return nil, dst, false
	}
	return b.lastPeer, b.lastPeer.mac, true
}

// fragment splits fr, which does not fit the uplink, into two fragments,
// the last in a scratch slot; when every slot holds a staged fragment, it
// first sends what is staged. first is nil when fr is too big for two
// fragments; err is a send error.
func (u *Uplink) fragment(b *txBatch, fr []byte) (first, last []byte, err error) {
	tx := &u.tx
	if b.used == len(tx.scratch) {
		// Scratch slots are reused: send what uses them first.
		if err := u.flushStaged(b); err != nil {
			return nil, nil, err
		}
	}
	sc := tx.scratch[b.used]
	b.used++
	first, last, err = tx.frag.Split(fr, u.link.maxEncap, sc)
	if err != nil {
		return nil, nil, nil
	}
	return first, last, nil
}

// dests appends the sends of frame fr (of fence fenceID) to items: to p, or
// for a flood (p nil) to the group or every peer that wants the fence.
func (u *Uplink) dests(items []outItem, t *hostTable, fr []byte, p *peer, fenceID uint32) []outItem {
	if p != nil {
		return append(items, outItem{frame: fr, dst: p.mac, ua: p.ua, ap: p.ap})
	}
	if u.link.raw != nil {
		// One L2 segment: broadcast when every peer wants it (or none is
		// known yet), else unicast copies to those that do.
		want := 0
		for _, q := range t.peers {
			if q.wants(fenceID) {
				want++
			}
		}
		// Sealed, the outer destination is authenticated (it is in the
		// additional data), so a flood sealed for broadcast cannot be
		// readdressed: it goes out once, broadcast; hosts without the
		// fence drop it (they hold no key of it).
		if want == len(t.peers) || u.seal != nil {
			return append(items, outItem{frame: fr, dst: fence.BroadcastMAC})
		}
		for _, q := range t.peers {
			if q.wants(fenceID) {
				items = append(items, outItem{frame: fr, dst: q.mac})
			}
		}
		return items
	}
	if u.link.group != nil {
		return append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: u.link.group, ap: u.cfg.Group})
	}
	for _, q := range t.peers {
		if q.wants(fenceID) {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: q.ua, ap: q.ap})
		}
	}
	if u.seal != nil {
		// Sealed: an address gets floods only once a frame from it has
		// opened (it is a peer in the table); configured addresses not
		// heard from yet get hellos only.
		return items
	}
	for _, s := range t.unmatched {
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: s.ua, ap: s.ap})
	}
	return items
}

// sendStaged sends the staged items and forgets them (tx.mu held).
func (u *Uplink) sendStaged(b *txBatch) error {
	err := u.send(b.items)
	clear(b.items)
	b.items = b.items[:0]
	u.tx.items = b.items // keep what append grew
	return err
}

// flushStaged sends the staged items; the scratch slots and the seal
// buffer are free again.
func (u *Uplink) flushStaged(b *txBatch) error {
	err := u.sendStaged(b)
	b.used, b.sealUsed = 0, false
	return err
}

// flush adds the batch's counts to the counters.
func (b *txBatch) flush(u *Uplink) {
	u.ctr.add(ctrTxFrames, b.frames)
	u.ctr.add(ctrTxBytes, b.bytes)
	if b.fragmented > 0 {
		u.ctr.add(ctrTxFragmented, b.fragmented)
	}
	if b.direct > 0 {
		u.ctr.add(ctrTxDirect, b.direct)
	}
}
