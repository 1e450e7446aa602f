package uplink

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/corralnet/corral/fence"
)

// pollInterval is how often the control goroutine checks for expired peers
// and changed local fences (a changed fence list is announced at once).
const pollInterval = 100 * time.Millisecond

// dropSummaryInterval is how often dropped frames are summarized in the
// log (never one line per frame).
const dropSummaryInterval = 30 * time.Second

// kickInterval bounds how often a new peer (or a gateway change) makes
// the uplink send its hello before the next period.
const kickInterval = 250 * time.Millisecond

// control is the control goroutine's inbox and state. The receive path
// asks it for work through the channels, never blocking (a full channel
// means the work is already asked for).
type control struct {
	kick     chan struct{}       // asks for a hello now
	down     chan fence.OuterMAC // restarted peers, for OnPeerDown
	dupReply chan netip.AddrPort // hosts claiming our MAC: tell them too
	echo     chan probeReq       // probes of peers to answer (confirm.go)

	// Owned by the control goroutine (and start, before it runs):
	helloTrimmed   bool
	lastReserveLog time.Time // last "cannot reserve" error
	lastKicked     time.Time // last hello sent because of a kick
}

func (c *control) init() {
	c.kick = make(chan struct{}, 1)
	c.down = make(chan fence.OuterMAC, 64)
	c.dupReply = make(chan netip.AddrPort, 8)
	c.echo = make(chan probeReq, probeQueue)
}

// control sends hellos and expires silent peers until Close.
// The first hello (buf, lastFences, lastGW, lastHello) was sent by start.
func (u *Uplink) control(buf []byte, lastFences, lastGW []uint32, lastHello time.Time) {
	defer u.wg.Done()
	tick := time.NewTicker(min(pollInterval, u.cfg.HelloInterval))
	defer tick.Stop()
	lastSummary, lastDrops := time.Now(), u.ctr.drops()
	kicked, dirChanged := false, false
	var probes chan probeReq // nil: none
	if u.confirm != nil {
		probes = u.confirm.probes
	}
	for {
		now := time.Now()
		if now.Sub(lastSummary) >= dropSummaryInterval {
			lastSummary, lastDrops = now, u.logDrops(lastDrops)
		}
		u.plog.flush(now)
		u.reserveCounter(now)
		if kicked && now.Sub(u.ctl.lastKicked) >= kickInterval {
			// A new peer or a gateway change: hello now, but at most
			// once per kickInterval however many peers appear.
			kicked, lastHello, u.ctl.lastKicked = false, time.Time{}, now
		}
		u.gw.recheck(u.hosts.load())
		u.runGatewayEvents()
		fences, gws := sortedSet(u.cfg.LocalFences), u.gw.served()
		if u.cfg.Directory {
			// No hellos, no expiry by silence: the directory's view
			// decides, applied on change and when the local fences do.
			if d := u.loadDirectory(); d != nil && (dirChanged || !slices.Equal(fences, lastFences)) {
				u.applyDirectory(d, now)
			}
			dirChanged, lastFences, lastGW = false, fences, gws
		} else {
			if now.Sub(lastHello) >= u.cfg.HelloInterval || !slices.Equal(fences, lastFences) || !slices.Equal(gws, lastGW) {
				buf = u.sendHello(buf[:0], fences, gws, nil)
				lastHello, lastFences, lastGW = now, fences, gws
			}
			u.expire(now)
		}
		u.rx.reasm.Expire(now)
		select {
		case <-u.done:
			return
		case <-u.dir.changed:
			dirChanged = true
		case <-tick.C:
		case <-u.ctl.kick:
			kicked = true
		case ap := <-u.ctl.dupReply:
			if u.link.udp != nil && !u.cfg.Directory {
				buf = u.sendHello(buf[:0], lastFences, lastGW, u.link.udp.udpAddr(ap))
			}
		case p := <-probes:
			buf = u.sendProbe(buf, p)
		case p := <-u.ctl.echo:
			buf = u.sendProbe(buf, p)
		case mac := <-u.ctl.down:
			if u.cfg.OnPeerDown != nil {
				u.cfg.OnPeerDown(mac)
			}
		}
	}
}

// kickHello asks the control goroutine for a hello now.
func (u *Uplink) kickHello() {
	select {
	case u.ctl.kick <- struct{}{}:
	default:
	}
}

// sortedSet returns what f returns, sorted and without duplicates (nil for
// a nil f).
func sortedSet(f func() []uint32) []uint32 {
	if f == nil {
		return nil
	}
	l := slices.Clone(f())
	slices.Sort(l)
	return slices.Compact(l)
}

// sendHello builds a hello in buf and sends it to every peer (or the
// group), or only to the UDP address to when it is not nil. Sealed, it
// is sealed with fence 0's key.
func (u *Uplink) sendHello(buf []byte, fences, gws []uint32, to *net.UDPAddr) []byte {
	buf = append(buf[:0], make([]byte, u.hdrLen)...)
	overhead := u.hdrLen
	if u.seal != nil {
		overhead += fence.SealTagLen
	}
	// A hello is never fragmented: trim the lists to what one frame holds
	// (gateways first, then fences), and say so.
	room := (u.link.maxEncap - overhead - fence.HelloHeaderLen - min(len(u.cfg.HostName), fence.MaxHelloName)) / 3
	room = min(room, fence.MaxHelloFences+fence.MaxHelloGateways)
	if nf, ng := min(len(fences), fence.MaxHelloFences, room), len(gws); nf+ng > room || nf < len(fences) || ng > fence.MaxHelloGateways {
		gws = gws[:min(ng, room-nf, fence.MaxHelloGateways)]
		fences = fences[:nf]
		if !u.ctl.helloTrimmed {
			u.ctl.helloTrimmed = true
			u.log.Warn("hello trimmed: too many fences for one hello; peers may not send floods of the others here",
				"fences_sent", len(fences), "gateways_sent", len(gws))
		}
	}
	h := fence.Hello{HostID: u.cfg.HostID, Instance: u.instance, Name: u.cfg.HostName, Fences: fences, Gateways: gws}
	buf = h.AppendTo(buf)
	if u.seal == nil {
		// Never smaller than a probe: a probe answering it is no larger
		// (confirm.go). Decoders ignore the padding.
		for len(buf)-u.hdrLen < fence.HelloProbeLen {
			buf = append(buf, 0)
		}
	}
	innerLen := len(buf) - u.hdrLen
	var fr fence.Frame
	if u.seal != nil {
		buf = append(buf, make([]byte, fence.SealTagLen)...)
		var err error
		if fr, err = u.seal.Encap(buf, u.hdrLen, innerLen, fence.BroadcastMAC, fence.ControlFence); err != nil {
			if err == fence.ErrCounterLimit {
				u.ctr.add(ctrDropTxCounter, 1)
			} else {
				u.ctr.add(ctrDropTxNoKey, 1)
			}
			return buf
		}
	} else {
		fr = u.params.Encap(buf, fence.EncapLen, innerLen, fence.BroadcastMAC, u.self,
			fence.HeaderFields{Fence: fence.ControlFence})
	}
	var items []outItem
	switch {
	case to != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: to})
	case u.link.raw != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC})
	case u.link.group != nil:
		items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: u.link.group, ap: u.cfg.Group})
		fallthrough // peers outside the group (static) hear us too
	default:
		t := u.hosts.load()
		for _, q := range t.peers {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: q.ua, ap: q.ap})
		}
		for _, s := range t.unmatched {
			items = append(items, outItem{frame: fr, dst: fence.BroadcastMAC, ua: s.ua, ap: s.ap})
		}
	}
	if len(items) > 0 {
		if err := u.send(items); err == nil {
			u.ctr.add(ctrTxHellos, 1)
		}
	}
	return buf
}

// expire removes peers silent for PeerExpiryIntervals hello intervals and
// calls OnPeerDown for each.
func (u *Uplink) expire(now time.Time) {
	limit := now.Add(-PeerExpiryIntervals * u.cfg.HelloInterval).UnixNano()
	for _, p := range u.hosts.expire(limit) {
		u.ctr.add(ctrPeersExpired, 1)
		u.log.Warn("peer expired", "peer", p.mac.String(), "name", p.name, "addr", p.ap.String(),
			"silent", time.Duration(now.UnixNano()-p.seen.Load()).Round(time.Millisecond))
		if u.cfg.OnPeerDown != nil {
			u.cfg.OnPeerDown(p.mac)
		}
	}
}

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
