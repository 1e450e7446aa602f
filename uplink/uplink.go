package uplink

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralnet/corral/fence"
)

// DefaultBatchSize is the number of frames ReadTrunk returns and WriteTrunk
// takes at most. The switch reads the trunk 64 frames at a time whatever
// it is, and hands WriteTrunk up to this many queued frames: a large batch
// is fewer sendmmsg calls (and, with UDP GSO, up to four 64-datagram
// trains per call) when the trunk's queue is backed up.
const DefaultBatchSize = 256

// Reassembly bounds (DESIGN.md 3.4).
const (
	reassemblyPerHost = 64
	reassemblyTotal   = 1024
	reassemblyTimeout = time.Second
)

// Uplink carries the frames of every fence to and from remote hosts over
// one transport (UDP or raw Ethernet). *Uplink implements vswitch.Trunk.
//
// Its state is split by what changes together: the identity and the link
// are fixed by New; the host table, the gateway arbitration and the
// counters are shared by the receive path (receive.go), the send path
// (send.go) and the control goroutine (control.go), each part with its own
// synchronization; rx and tx are the batch state of the receive and send
// paths, ctl the control goroutine's.
type Uplink struct {
	// Identity, fixed by New.
	cfg      Config
	log      *slog.Logger
	params   fence.Params
	self     fence.OuterMAC
	instance uint64 // random per process, sent in hellos

	link link // the transport, fixed by New

	// Sealing (seal.go), fixed by New; nil when unsealed. The Sealer's
	// keys change with SetKeys.
	seal       *fence.Sealer
	hdrLen     int // outer frame bytes in front of the inner frame: fence.EncapLen, or fence.SealedHeaderLen sealed
	keyStats   keyStats
	keyChanges atomic.Uint64

	// peerAddrs is the unsealed UDP uplink's address filter (nil: every
	// address is accepted: sealed, raw, LearnPeers or a group).
	peerAddrs map[netip.AddrPort]bool
	// confirm checks the return routability of learned addresses
	// (confirm.go); nil when addresses are not learned unsealed.
	confirm *confirmer

	taps atomic.Pointer[tapSet] // captures of the outer frames (capture.go)
	plog rateLog                // peer events a remote host can cause (learned, moved, hello)

	hosts hosts     // the host table
	dir   directory // Config.Directory's view (directory.go)
	gw    gateways  // gateway arbitration (gateway.go)

	ctr      counters      // by reason
	fenceCtr fenceCounters // received frames by fence

	rx  receiver // ReadTrunk's state (receive.go)
	tx  sender   // WriteTrunk's state (send.go)
	ctl control  // the control goroutine's inbox (control.go)

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup // the control goroutine
}

// link is the network side of an Uplink, fixed when New returns.
type link struct {
	tr       transport
	udp      *udpTransport // nil on the raw uplink
	raw      *rawTransport // nil on the UDP uplink
	maxEncap int           // longest encapsulated frame sent whole
	group    *net.UDPAddr  // nil: no multicast group
	statics  []staticPeer  // configured UDP peers
}

// New validates cfg, binds the transport and starts hellos. The raw uplink
// without CAP_NET_RAW fails here with an error that says so.
func New(cfg Config) (*Uplink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := newBase(cfg)
	if err != nil {
		return nil, err
	}
	batch := DefaultBatchSize
	l := &u.link
	if u.cfg.RawInterface != "" {
		rt, err := openRaw(u.cfg.RawInterface, u.cfg.EtherType, u.self, &u.ctr)
		if err != nil {
			return nil, err
		}
		l.raw, l.tr = rt, rt
		mtu := min(u.cfg.MTU, rt.mtu)
		l.maxEncap = fence.MaxEncapLenRaw(mtu)
	} else {
		ut, err := listenUDP(&u.cfg, batch, !u.cfg.noOffload, &u.ctr)
		if err != nil {
			return nil, err
		}
		l.udp, l.tr = ut, ut
		l.maxEncap = fence.MaxEncapLenUDP(u.cfg.MTU, ut.v6)
		for _, p := range u.cfg.Peers {
			p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
			l.statics = append(l.statics, staticPeer{ap: p, ua: ut.udpAddr(p)})
		}
		if u.seal == nil && !u.cfg.LearnPeers && !u.cfg.Group.IsValid() && !u.cfg.Directory {
			u.peerAddrs = make(map[netip.AddrPort]bool, len(l.statics))
			for _, p := range l.statics {
				u.peerAddrs[p.ap] = true
			}
		}
		if u.cfg.Group.IsValid() {
			l.group = ut.udpAddr(u.cfg.Group)
		}
		if u.seal == nil && !u.cfg.Directory && (u.cfg.LearnPeers || u.cfg.Group.IsValid()) && !u.cfg.trustLearned {
			u.confirm = newConfirmer(l.statics)
		}
	}
	u.start(batch)
	return u, nil
}

// newBase returns an Uplink without a transport.
func newBase(cfg Config) (*Uplink, error) {
	cfg = cfg.withDefaults()
	u := &Uplink{
		cfg:    cfg,
		params: fence.Params{OUI: cfg.OUI, Installation: cfg.Installation, EtherType: cfg.EtherType, Sealed: cfg.Seal != nil},
		done:   make(chan struct{}),
		hdrLen: fence.EncapLen,
	}
	if cfg.Seal != nil {
		s, err := newSealer(u.params, cfg.HostID, cfg.Seal)
		if err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
		u.seal, u.hdrLen = s, fence.SealedHeaderLen
	}
	for u.instance == 0 {
		u.instance = rand.Uint64()
	}
	u.self = u.params.OuterMAC(cfg.HostID)
	u.log = cfg.Logger.With("outer_mac", u.self.String())
	u.ctl.init()
	u.dir.changed = make(chan struct{}, 1)
	u.gw = gateways{self: u.self, configured: cfg.GatewayFences, log: u.log, ctr: &u.ctr, yielded: map[uint32]gwYield{}}
	u.plog = rateLog{log: u.log, per: dropSummaryInterval, burst: peerLogBurst}
	return u, nil
}

// start allocates the batch state and starts the control goroutine; the
// link is set.
func (u *Uplink) start(batch int) {
	var udpAddr func(netip.AddrPort) *net.UDPAddr
	if u.link.udp != nil {
		udpAddr = u.link.udp.udpAddr
	}
	u.hosts.init(u.link.statics, udpAddr)
	u.rx.init(batch, u.seal != nil)
	u.tx.init(batch, u.link.maxEncap, u.seal != nil)

	u.wg.Add(1)
	// The first hello is sent before New returns, hence before any hello
	// is read: every host announces its configured gateways once, so that
	// a gateway conflict is seen (and logged) by both hosts.
	fences, gws := sortedSet(u.cfg.LocalFences), u.gw.served()
	buf := make([]byte, 0, 8<<10)
	if !u.cfg.Directory {
		buf = u.sendHello(buf, fences, gws, nil)
	}
	go u.control(buf, fences, gws, time.Now())
	attrs := []any{"transport", u.transportName(), "addr", u.addrString(),
		"max_encap_len", u.link.maxEncap}
	if u.cfg.Directory {
		attrs = append(attrs, "control", "directory (gossip)")
	} else {
		attrs = append(attrs, "hello_interval", u.cfg.HelloInterval)
	}
	if u.seal != nil {
		attrs = append(attrs, "sealed", u.cfg.Seal.Cipher.String(), "keys", keySummary(u.seal.Keys()))
	} else if u.peerAddrs != nil {
		attrs = append(attrs, "accept", "static peers only")
	}
	u.log.Info("uplink up", attrs...)
}

// OuterMAC returns this host's outer MAC.
func (u *Uplink) OuterMAC() [6]byte { return u.self }

// LocalAddr returns the bound UDP address (zero on the raw uplink).
func (u *Uplink) LocalAddr() netip.AddrPort {
	if u.link.udp == nil {
		return netip.AddrPort{}
	}
	return u.link.udp.local
}

// MaxEncapLen is the longest encapsulated frame sent without fragmenting.
func (u *Uplink) MaxEncapLen() int { return u.link.maxEncap }

func (u *Uplink) transportName() string {
	if u.link.raw != nil {
		return "raw"
	}
	return "udp"
}

func (u *Uplink) addrString() string {
	switch {
	case u.link.raw != nil:
		return u.cfg.RawInterface
	case u.link.udp != nil:
		return u.link.udp.local.String()
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
		err = u.link.tr.close()
		u.wg.Wait()
	})
	return err
}
