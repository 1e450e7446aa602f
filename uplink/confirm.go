package uplink

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/corralnet/corral/fence"
)

// Return routability of learned addresses (issue 9, item 5; DESIGN.md
// 4.6). An unsealed UDP uplink that learns peers (Config.LearnPeers or a
// group) trusts an address only once it has shown that it receives what
// is sent to it: a datagram from an address that is neither a confirmed
// peer's nor configured is not delivered, and is answered with a probe
// (a version-2 hello without name or fences, fence.HelloProbeLen bytes)
// whose cookie is bound to the address, the sender's outer MAC and the
// time (a keyed hash: no state is kept for it). The sender becomes a peer
// at that address only when a probe from it echoes the cookie. Until
// then it gets no flood, no hello, no unicast: only probes, one per
// datagram received and never larger than it (regular hellos are padded
// to the probe's length), so the uplink is no amplifier, and a spoofed
// source draws nothing but probes to the spoofed address. A peer that
// moves (the same outer MAC from another address) is confirmed at the
// new address the same way before anything is sent there.

// probeQueue bounds the probes waiting for the control goroutine; when it
// is full, datagrams are dropped unanswered (counted as drop_unconfirmed).
const probeQueue = 64

// cookieEpoch is the lifetime step of a cookie: one is accepted during
// the epoch it was made in and the next.
const cookieEpoch = 30 * time.Second

// probeReq is a probe to send: to ap, with a cookie and an echo.
type probeReq struct {
	ap           netip.AddrPort
	cookie, echo uint64
}

// confirmer is the state of return-routability checks; nil on uplinks
// that do not learn addresses (sealed: a frame that opens authenticates
// its sender; static peers; raw; a directory).
type confirmer struct {
	key     [32]byte
	statics map[netip.AddrPort]bool // configured addresses: trusted
	probes  chan probeReq
}

func newConfirmer(statics []staticPeer) *confirmer {
	c := &confirmer{statics: map[netip.AddrPort]bool{}, probes: make(chan probeReq, probeQueue)}
	_, _ = rand.Read(c.key[:])
	for _, s := range statics {
		c.statics[s.ap] = true
	}
	return c
}

// cookie is the cookie of (ap, src) in epoch e: never zero.
func (c *confirmer) cookie(ap netip.AddrPort, src fence.OuterMAC, e int64) uint64 {
	var b [32 + 16 + 2 + 6 + 8]byte
	copy(b[:], c.key[:])
	a := ap.Addr().As16()
	copy(b[32:], a[:])
	binary.BigEndian.PutUint16(b[48:], ap.Port())
	copy(b[50:], src[:])
	binary.BigEndian.PutUint64(b[56:], uint64(e))
	s := sha256.Sum256(b[:])
	return binary.BigEndian.Uint64(s[:]) | 1
}

func epoch(now time.Time) int64 { return now.UnixNano() / int64(cookieEpoch) }

// valid reports whether echo is the cookie of (ap, src) now or in the
// previous epoch.
func (c *confirmer) valid(echo uint64, ap netip.AddrPort, src fence.OuterMAC, now time.Time) bool {
	e := epoch(now)
	return echo != 0 && (echo == c.cookie(ap, src, e) || echo == c.cookie(ap, src, e-1))
}

// confirmed reports whether frames of src from address from may come in
// (rx.mu held): src is a peer at that address, or the address is
// configured.
func (b *rxBatch) confirmed(u *Uplink, src fence.OuterMAC, from netip.AddrPort) bool {
	if b.lastOK && src == b.lastSrc && from == b.lastFrom {
		return true
	}
	if p := b.table.byMAC[src]; p != nil && p.ap == from {
		return true
	}
	return u.confirm.statics[from]
}

// unconfirmed handles the frame fr of src from an address not confirmed
// (rx.mu held; the datagram was size bytes): a probe echoing our cookie
// confirms the address (the sender is learned there); anything else is
// dropped and answered with a probe, when the probe is not larger.
func (u *Uplink) unconfirmed(b *rxBatch, fr fence.Frame, src fence.OuterMAC, from netip.AddrPort, size int) {
	c := u.confirm
	var theirs uint64
	if fr.Header().Fence() == fence.ControlFence && fr.Header().FragType() == fence.Whole {
		h := &u.rx.hello
		if h.Decode(fr.Inner()) == nil && h.IsProbe() {
			if c.valid(h.Echo, from, src, b.now) {
				u.ctr.add(ctrPeersConfirmed, 1)
				u.learn(src, from, b.now)
				b.table = u.hosts.load()
				if h.Cookie != 0 {
					u.queueProbe(probeReq{ap: from, echo: h.Cookie})
				}
				return
			}
			theirs = h.Cookie
		}
	}
	u.ctr.add(ctrDropUnconfirmed, 1)
	if size < fence.EncapLen+fence.HelloProbeLen {
		return // a probe would be larger than what came in
	}
	u.queueProbe(probeReq{ap: from, cookie: c.cookie(from, src, epoch(b.now)), echo: theirs})
}

// queueProbe hands a probe to the control goroutine, never blocking.
func (u *Uplink) queueProbe(p probeReq) {
	if u.confirm == nil {
		return
	}
	select {
	case u.confirm.probes <- p:
	default:
	}
}

// sendProbe sends the probe p (control goroutine; unsealed UDP only).
func (u *Uplink) sendProbe(buf []byte, p probeReq) []byte {
	if u.link.udp == nil || u.seal != nil {
		return buf
	}
	buf = append(buf[:0], make([]byte, fence.EncapLen)...)
	h := fence.Hello{Version: fence.HelloProbeVersion, HostID: u.cfg.HostID, Instance: u.instance, Cookie: p.cookie, Echo: p.echo}
	buf = h.AppendTo(buf)
	fr := u.params.Encap(buf, fence.EncapLen, len(buf)-fence.EncapLen, fence.BroadcastMAC, u.self,
		fence.HeaderFields{Fence: fence.ControlFence})
	items := []outItem{{frame: fr, dst: fence.BroadcastMAC, ua: u.link.udp.udpAddr(p.ap), ap: p.ap}}
	if err := u.send(items); err == nil {
		u.ctr.add(ctrTxProbes, 1)
	}
	return buf
}
