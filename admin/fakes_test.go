package admin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// Fakes of the server's sources with every field set.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)

// richSwitch has fences blue (1) and red (0x20), two ports and a trunk.
func richSwitch() *fakeSwitch {
	return &fakeSwitch{
		st: vswitch.Status{
			Fences: []vswitch.FenceStatus{
				{ID: 1, Name: "blue", Ports: 2, MACs: 3, MaxMACs: 65536, MaxPorts: 4096, PortsRefused: 5, FramesIn: 10, BytesIn: 1000, FramesOut: 9, BytesOut: 900, Floods: 4, Moves: 1, LearnRefused: 2, Drops: map[string]uint64{"runt": 2, "pinned": 1}},
				{ID: 0x20, Name: "red"},
			},
			Ports: []vswitch.PortStatus{
				{ID: 7, Name: "unix:///run/blue.sock#1", Fence: 1, MACs: 1, MaxMACs: 16, PinMAC: "00:00:5e:00:53:01", QueueLen: 256, Queued: 3, QueueBytes: 1 << 20, QueuedBytes: 180, RxFrames: 5, RxBytes: 500, TxFrames: 6, TxBytes: 600, Drops: map[string]uint64{"queue_full": 3}},
				{ID: 8, Name: "gateway:blue", Fence: 1},
			},
			Trunk: &vswitch.TrunkStatus{RxFrames: 1, RxBytes: 2, TxFrames: 3, TxBytes: 4, QueueLen: 5, Queued: 6, QueueBytes: 7, QueuedBytes: 8, Drops: map[string]uint64{"no_fence": 9}},
		},
		fdb: map[uint32][]vswitch.FDBEntry{
			1: {{MAC: "00:00:5e:00:53:01", Port: 7, PortName: "unix:///run/blue.sock#1", Age: 1.5}, {MAC: "00:00:5e:00:53:02", Host: "02:fe:0c:01:00:02", Age: 0.25}},
		},
	}
}

type fakeUplink struct{ st uplink.Status }

func (u fakeUplink) Status() uplink.Status { return u.st }

func (u fakeUplink) Capture(int) (*uplink.Capture, error) {
	return nil, errors.New("fake uplink: no capture")
}

// richUplink has one peer that announces the gateway of fence 1.
func richUplink() fakeUplink {
	u := fakeUplink{uplink.Status{
		Transport: "udp", Addr: "192.0.2.1:7407", OuterMAC: "02:fe:0c:01:00:01", HostID: 1, Installation: 1, Name: "h1", MTU: 1500, MaxEncapLen: 1472,
		HelloInterval: "5s", Group: "239.7.4.7:7407", GSO: true, GRO: true, StaticPeers: []string{"192.0.2.2:7407"},
		Peers:         []uplink.PeerStatus{{OuterMAC: "02:fe:0c:01:00:02", Addr: "192.0.2.2:7407", Name: "h2", HostID: 2, HelloKnown: true, Fences: []uint32{1, 2}, Gateways: []uint32{1}, LastHello: t0, LastSeen: t0.Add(time.Second)}},
		Counters:      map[string]uint64{"rx_frames": 5, "drop_runt": 1},
		RxByFence:     map[uint32]uint64{1: 4, 2: 1},
		Reassembly:    fence.ReassemblyStats{Whole: 1, Firsts: 2, Completed: 3, Replaced: 4, Orphans: 5, Mismatched: 6, Expired: 7, EvictedHost: 8, EvictedTotal: 9, EvictedWindow: 10, TooBig: 11, Invalid: 12},
		GatewayYields: []uplink.GatewayYield{{Fence: 2, Peer: "02:fe:0c:01:00:02", PeerName: "h2", Since: t0}},
		Accept:        "sealed",
		Seal: &uplink.SealStatus{Cipher: "aes-256-gcm", Counter: 1000, CounterLimit: 1 << 33, KeyChanges: 1,
			Keys: []uplink.SealKeyStatus{{Fence: 0, SendKeyID: &keyID, KeyIDs: []uint8{keyID}}, {Fence: 1, SendKeyID: &keyID, KeyIDs: []uint8{0x17, keyID}}}},
	}}
	u.st.Peers[0].Keys = []uplink.PeerKey{{Fence: 1, State: "ok", KeyID: &keyID, Opened: 7}, {Fence: 2, State: "no key"}}
	return u
}

// keyID is the key ID of the fake sealed uplink.
var keyID uint8 = 0x2a

// fakeGateway keeps its forwards in memory, by route (proto, listen, sni,
// host). AddForward fails by listen port: 1 EADDRINUSE, 2 EADDRNOTAVAIL,
// 3 EACCES, 4 invalid, 5 closed, 6 another error, 8 another fence's; port
// 0 is bound to 40000.
type fakeGateway struct {
	st GatewayStatus

	mu  sync.Mutex
	fws []ForwardSpec
}

func (g *fakeGateway) Status() GatewayStatus { return g.st }

func (g *fakeGateway) Forwards() []Forward {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Forward
	for _, f := range g.fws {
		out = append(out, f.Forward())
	}
	return out
}

func (g *fakeGateway) AddForward(f ForwardSpec) (Forward, error) {
	bind := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: f.Proto, Err: os.NewSyscallError("bind", errno)}
	}
	switch f.Listen.Port() {
	case 1:
		return Forward{}, bind(syscall.EADDRINUSE)
	case 2:
		return Forward{}, bind(syscall.EADDRNOTAVAIL)
	case 3:
		return Forward{}, bind(syscall.EACCES)
	case 4:
		return Forward{}, fmt.Errorf("%w: forward target %s: IPv6 is off", ErrInvalidForward, f.Target)
	case 5:
		return Forward{}, fmt.Errorf("%w: closed", ErrGatewayClosed)
	case 6:
		return Forward{}, errors.New("disk on fire")
	case 8:
		return Forward{}, fmt.Errorf("%w: fence red forwards it", ErrForwardConflict)
	case 0:
		f.Listen = netip.AddrPortFrom(f.Listen.Addr(), 40000)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, x := range g.fws {
		if x.Route() == f.Route() {
			return Forward{}, fmt.Errorf("%w: %s", ErrForwardExists, f.Route())
		}
	}
	g.fws = append(g.fws, f)
	return f.Forward(), nil
}

func (g *fakeGateway) RemoveForward(f ForwardSpec) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.fws {
		if x.Route() == f.Route() {
			g.fws = slices.Delete(g.fws, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrForwardNotFound, f.Route())
}

// fakeGateways serves the gateways in gws; configured fences without one
// were yielded to the peer in yielded.
type fakeGateways struct {
	gws        map[uint32]*fakeGateway
	configured map[uint32]bool
	yielded    map[uint32]string
}

func (s *fakeGateways) Gateway(id uint32) Gateway {
	if g := s.gws[id]; g != nil {
		return g
	}
	return nil
}
func (s *fakeGateways) Configured(id uint32) bool  { return s.configured[id] }
func (s *fakeGateways) YieldedTo(id uint32) string { return s.yielded[id] }
func (s *fakeGateways) Served() []uint32 {
	var ids []uint32
	for id := range s.gws {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// richGateways serves the gateways of blue (1, with a lease and a
// forward) and red (0x20, IPv6 off).
func richGateways() *fakeGateways {
	return &fakeGateways{
		gws: map[uint32]*fakeGateway{
			1: {
				st: GatewayStatus{MAC: "52:55:0a:00:00:01", Subnet: "10.0.2.0/24", Addr: "10.0.2.2", DNS: "10.0.2.3",
					IPv6Prefix: "fd63:6f72:7261::/64", Addr6: "fd63:6f72:7261::2", DNS6: "fd63:6f72:7261::3",
					Leases: []Lease{{MAC: "00:00:5e:00:53:01", IP: netip.MustParseAddr("10.0.2.15"), Hostname: "vm1", Expiry: t0},
						{MAC: "00:00:5e:00:53:02", IP: netip.MustParseAddr("10.0.2.16")}},
					Stats: GatewayStats{InFrames: 1, OutFrames: 2, InDrops: 3, InFiltered: 4, OutDrops: 5, TCPConns: 6, TCPRefused: 7,
						UDPFlows: 8, UDPRefused: 9, ICMPRelayed: 10, ICMPReplies: 11, ICMPDropped: 12, DHCPLeases: 13, DHCPRequests: 14,
						DNSQueries: 15, InBadChecksum: 16, OutWaits: 17, OutQueued: 18, NATGuests: 19,
						TCPRefusals:  map[string]uint64{"limit_guest": 4, "self": 3},
						UDPRefusals:  map[string]uint64{"limit_fence": 9},
						ICMPRefusals: map[string]uint64{"no_raw_socket": 12}}},
				fws: []ForwardSpec{{Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:2222"), Target: netip.MustParseAddrPort("10.0.2.15:22")}},
			},
			0x20: {st: GatewayStatus{MAC: "52:55:0a:00:00:02", Subnet: "10.0.3.0/24", Addr: "10.0.3.2", DNS: "10.0.3.3"}},
		},
		configured: map[uint32]bool{1: true, 0x20: true},
	}
}

// richServer serves richSwitch, richUplink and richGateways.
func richServer(t interface{ Fatal(...any) }) *Server {
	s, err := New(Config{Switch: richSwitch(), Uplink: richUplink(), Gateways: richGateways(), Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	s.started = t0
	return s
}
