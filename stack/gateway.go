package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/corralnet/corral/stack/dns"
	"github.com/corralnet/corral/stack/socks"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const nicID tcpip.NICID = 1

// TCP buffer sizes, sized for throughput (the defaults cap the window at
// 4 MiB; Tailscale's netstack uses the same ranges, netstack_tcpbuf_default.go).
const (
	tcpRXBufMin = tcp.MinBufferSize
	tcpRXBufDef = tcp.DefaultReceiveBufferSize
	tcpRXBufMax = 8 << 20
	tcpTXBufMin = tcp.MinBufferSize
	tcpTXBufDef = tcp.DefaultSendBufferSize
	tcpTXBufMax = 6 << 20
)

// Gateway is one fence's gateway: a gVisor stack with DHCP, DNS, NAT and
// connections into the fence for port forwards. It implements vswitch.Port (Read, Write, BatchSize,
// Close): the switch attaches it to its fence like a VM.
type Gateway struct {
	cfg Config
	log *slog.Logger
	ep  *linkEndpoint
	s   *stack.Stack

	gwIP, dnsIP netip.Addr
	// IPv6 (invalid when Config.NoIPv6): link-local, ::2, ::3.
	ll6, gw6, dns6 netip.Addr
	ra             []byte // router advertisement frame, immutable
	// hostIPv6Loopback: the host has ::1, so ::2 reaches it (DNS answers
	// AAAA for "host" only then).
	hostIPv6Loopback bool
	rsCh             chan struct{} // router solicitations seen

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	mu        sync.Mutex
	closing   bool
	closers   []func() error // services, closed in reverse order

	nat  natState
	icmp icmpNAT

	dhcp   *dhcpService
	dnsSrv *dns.Server

	socks     *socks.Server // nil without Config.Socks
	socksAddr netip.AddrPort
}

// New builds and starts the gateway of one fence. Port forwards into the
// fence are package forward's, through DialTCP and DialUDP.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Gateway{
		cfg:   cfg,
		log:   cfg.Logger,
		gwIP:  hostAddr(cfg.Subnet, gatewayHost),
		dnsIP: hostAddr(cfg.Subnet, dnsHost),
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.ep = newLinkEndpoint(cfg.MAC, cfg.MTU)
	g.ep.policy.allowARP = []netip.Addr{g.gwIP, g.dnsIP}
	if !cfg.NoIPv6 {
		g.ll6, g.gw6, g.dns6 = g.ipv6Addrs()
		g.ep.policy.allowNDP = []netip.Addr{g.ll6, g.gw6, g.dns6}
		g.rsCh = make(chan struct{}, 1)
		g.ep.policy.onRS = func() {
			select {
			case g.rsCh <- struct{}{}:
			default:
			}
		}
		g.ra = g.buildRA()
		g.hostIPv6Loopback = hasIPv6Loopback()
	}
	if err := g.initStack(); err != nil {
		g.Close()
		return nil, err
	}
	g.nat.init(g)
	g.icmp.start(g)
	g.ep.policy.onEcho = g.icmp.intercept
	if err := g.startServices(); err != nil {
		g.Close()
		return nil, err
	}
	if g.cfg.Socks.IsValid() {
		if err := g.startSocks(); err != nil {
			g.Close()
			return nil, err
		}
	}
	g.goOwned(g.summaryLoop)
	g.log.Info("gateway started", "subnet", cfg.Subnet, "gateway", g.gwIP, "dns", g.dnsIP,
		"mac", netMAC(cfg.MAC), "mtu", cfg.MTU, "ipv6", g.gw6)
	return g, nil
}

func netMAC(m [6]byte) string {
	return tcpip.LinkAddress(m[:]).String()
}

func (g *Gateway) initStack() error {
	netProtos := []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol}
	if !g.cfg.NoIPv6 {
		// The gateway is the router: it ignores RAs, sends no RSs and
		// skips DAD (its addresses are its own by configuration).
		netProtos = append(netProtos, ipv6.NewProtocolWithOptions(ipv6.Options{
			NDPConfigs: ipv6.NDPConfigurations{HandleRAs: ipv6.HandlingRAsDisabled},
			DADConfigs: stack.DADConfigurations{DupAddrDetectTransmits: 0},
		}))
	}
	g.s = stack.New(stack.Options{
		NetworkProtocols:   netProtos,
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// HandleLocal stays off: with a promiscuous NIC it would take every
		// source address for a local one and drop all inbound packets as
		// martians (ipv4.go, InvalidSourceAddressesReceived).
		HandleLocal: false,
	})
	// Non-default options (STYLE 1.7):
	// - SACK on: loss recovery on lossy overlays without a full window
	//   retransmit (Linux default; gVisor's is off).
	sack := tcpip.TCPSACKEnabled(true)
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("set TCP SACK: %v", err)
	}
	// - Buffers sized for throughput, with receive buffer auto-tuning.
	rx := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpRXBufMin, Default: tcpRXBufDef, Max: tcpRXBufMax}
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &rx); err != nil {
		return fmt.Errorf("set TCP receive buffer range: %v", err)
	}
	tx := tcpip.TCPSendBufferSizeRangeOption{Min: tcpTXBufMin, Default: tcpTXBufDef, Max: tcpTXBufMax}
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &tx); err != nil {
		return fmt.Errorf("set TCP send buffer range: %v", err)
	}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod); err != nil {
		return fmt.Errorf("set TCP moderate receive buffer: %v", err)
	}
	// - RACK loss detection off: with it on, Tailscale measured spurious
	//   retransmits and throughput collapse
	//   (https://github.com/tailscale/tailscale/issues/9707).
	rec := tcpip.TCPRecovery(0)
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &rec); err != nil {
		return fmt.Errorf("set TCP recovery: %v", err)
	}

	if err := g.s.CreateNICWithOptions(nicID, g.ep, stack.NICOptions{Name: "fence"}); err != nil {
		return fmt.Errorf("create NIC: %v", err)
	}
	// Promiscuous and spoofing: the NAT accepts connections to any
	// destination and answers from it. ARP is restricted to the gateway's
	// own addresses by the link endpoint (spoofing would otherwise answer
	// ARP for every address, including other guests').
	if err := g.s.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("set promiscuous mode: %v", err)
	}
	if err := g.s.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("set spoofing: %v", err)
	}
	for _, a := range []netip.Addr{g.gwIP, g.dnsIP} {
		pa := tcpip.ProtocolAddress{
			Protocol: ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddressWithPrefix{
				Address:   tcpip.AddrFrom4(a.As4()),
				PrefixLen: g.cfg.Subnet.Bits(),
			},
		}
		if err := g.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("add address %v: %v", a, err)
		}
	}
	if !g.cfg.NoIPv6 {
		for _, a := range []netip.Addr{g.ll6, g.gw6, g.dns6} {
			pa := tcpip.ProtocolAddress{
				Protocol:          ipv6.ProtocolNumber,
				AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(a.As16()), PrefixLen: 64},
			}
			if err := g.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
				return fmt.Errorf("add address %v: %v", a, err)
			}
		}
	}
	g.s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return nil
}

// Read implements vswitch.Port: frames the gateway sends to the fence.
func (g *Gateway) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return g.ep.Read(bufs, sizes, offset)
}

// Write implements vswitch.Port: frames from the fence to the gateway.
func (g *Gateway) Write(bufs [][]byte, offset int) (int, error) {
	return g.ep.Write(bufs, offset)
}

// BatchSize implements vswitch.Port.
func (g *Gateway) BatchSize() int { return g.ep.BatchSize() }

// MAC returns the gateway's MAC address.
func (g *Gateway) MAC() [6]byte { return g.cfg.MAC }

// Addr returns the gateway's IPv4 address (host .2 of the subnet).
func (g *Gateway) Addr() netip.Addr { return g.gwIP }

// Addr6 returns the gateway's IPv6 address (::2 of the prefix), or the
// zero Addr when IPv6 is off.
func (g *Gateway) Addr6() netip.Addr { return g.gw6 }

// DNSAddr6 returns the DNS server's IPv6 address (::3), or the zero Addr.
func (g *Gateway) DNSAddr6() netip.Addr { return g.dns6 }

// DNSAddr returns the DNS server's IPv4 address (host .3).
func (g *Gateway) DNSAddr() netip.Addr { return g.dnsIP }

// Close stops every service and the stack. Read and Write return
// net.ErrClosed afterwards. It is safe to call more than once.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closing = true
		g.mu.Unlock()
		g.cancel()
		// First the link: a goroutine waiting for room in the outbound
		// queue (a connection's Write, a TCP processor) may hold the locks
		// that closing connections and services need, and nobody may be
		// reading any more.
		g.ep.closePort()
		for i := len(g.closers) - 1; i >= 0; i-- {
			g.closers[i]()
		}
		g.nat.closeAll()
		if g.s != nil {
			g.s.Close()
		}
		g.wg.Wait()
		if g.s != nil {
			g.s.Wait()
		}
		g.log.Info("gateway stopped")
	})
	return nil
}

// enter adds one to the goroutines Close waits for; false once closing.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.wg.Add(1)
	return true
}

// goOwned runs f on a goroutine the gateway owns and waits for on Close.
func (g *Gateway) goOwned(f func()) {
	if !g.enter() {
		return
	}
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// Stats are the gateway's counters.
type Stats struct {
	InFrames, OutFrames uint64 // frames from / to the fence
	InDrops             uint64 // inbound frames malformed (runts)
	InFiltered          uint64 // inbound frames for others (foreign unicast, ARP/NDP for other addresses, router solicitations)
	InBadChecksum       uint64 // inbound packets with a bad IPv4, TCP, UDP, ICMP or ICMPv6 checksum, dropped
	// OutDrops counts outbound packets released unsent: only when the
	// gateway closes (the queue applies backpressure and never drops
	// while open).
	OutDrops uint64
	// OutWaits counts the times the stack waited for room in the
	// outbound queue (backpressure from a slow switch).
	OutWaits  uint64
	OutQueued int64 // outbound packets queued now

	TCPConns    int64  // NATed TCP connections open now (port-forward connections included)
	TCPRefused  uint64 // sum of TCPRefusals
	UDPFlows    int64  // NATed UDP flows open now (port-forward flows included)
	UDPRefused  uint64 // sum of UDPRefusals
	ICMPRelayed uint64 // echo requests sent on the host
	ICMPReplies uint64 // echo replies delivered to guests
	ICMPDropped uint64 // sum of ICMPRefusals
	// TCPRefusals, UDPRefusals and ICMPRefusals count refusals by reason
	// (index: Refusal).
	TCPRefusals, UDPRefusals, ICMPRefusals [NumRefusals]uint64
	// NATGuests is the number of guests (source MACs) holding NAT
	// connections, flows or connections being set up.
	NATGuests int

	DHCPLeases               int
	DHCPRequests, DNSQueries uint64
	// Socks are the SOCKS5 endpoint's counters (zero without one).
	Socks socks.Stats
}

// Stats returns a snapshot of the counters.
func (g *Gateway) Stats() Stats {
	st := Stats{
		InFrames:      g.ep.inFrames.Load(),
		OutFrames:     g.ep.outFrames.Load(),
		InDrops:       g.ep.inDrops.Load(),
		InFiltered:    g.ep.inFiltered.Load(),
		InBadChecksum: g.ep.inBadCsum.Load() + g.stackChecksumErrors(),
		OutDrops:      g.ep.outDrops.Load(),
		OutWaits:      g.ep.out.waits.Load(),
		OutQueued:     g.ep.out.queued.Load(),
		TCPConns:      g.nat.tcpConns.Load(),
		UDPFlows:      g.nat.udpFlows.Load(),
		TCPRefusals:   g.nat.tcpRefusals.load(),
		UDPRefusals:   g.nat.udpRefusals.load(),
		ICMPRefusals:  g.icmp.refusals.load(),
		NATGuests:     g.nat.numGuests(),

		ICMPRelayed: g.icmp.relayed.Load(),
		ICMPReplies: g.icmp.replies.Load(),
	}
	st.TCPRefusals[RefusedForwardLimit] += g.nat.tcpRefused.Load()
	st.UDPRefusals[RefusedForwardLimit] += g.nat.udpRefused.Load()
	st.TCPRefused = sumRefusals(st.TCPRefusals)
	st.UDPRefused = sumRefusals(st.UDPRefusals)
	st.ICMPDropped = sumRefusals(st.ICMPRefusals)
	if g.dhcp != nil {
		st.DHCPLeases = g.dhcp.srv.NumLeases()
		st.DHCPRequests = g.dhcp.srv.Requests()
	}
	if g.dnsSrv != nil {
		st.DNSQueries = g.dnsSrv.Queries()
	}
	if g.socks != nil {
		st.Socks = g.socks.Stats()
	}
	return st
}

// stackChecksumErrors counts the packets the stack itself found a bad
// checksum in: reassembled IP fragments (csum.go).
func (g *Gateway) stackChecksumErrors() uint64 {
	if g.s == nil {
		return 0
	}
	st := g.s.Stats()
	return st.TCP.ChecksumErrors.Value() + st.UDP.ChecksumErrors.Value()
}

// summaryInterval is how often changed drop counters are logged (STYLE
// 5.3: per-frame failures are counted, never logged one by one).
const summaryInterval = time.Minute

// summaryLoop logs the drop and refusal counters that changed in the last
// interval, once per interval at most, until Close.
func (g *Gateway) summaryLoop() {
	t := time.NewTicker(summaryInterval)
	defer t.Stop()
	var last Stats
	var lastTooLong uint64
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		st := g.Stats()
		tooLong := g.ep.outTooLong.Load()
		if st.InDrops == last.InDrops && st.InBadChecksum == last.InBadChecksum && st.TCPRefused == last.TCPRefused &&
			st.UDPRefused == last.UDPRefused && st.ICMPDropped == last.ICMPDropped && tooLong == lastTooLong {
			continue
		}
		args := []any{"interval", summaryInterval,
			"in_dropped", st.InDrops - last.InDrops, "in_bad_checksum", st.InBadChecksum - last.InBadChecksum,
			"out_too_long", tooLong - lastTooLong, "tcp_conns", st.TCPConns, "udp_flows", st.UDPFlows, "nat_guests", st.NATGuests}
		// Refusals by protocol and reason, the ones that grew.
		for _, p := range []struct {
			name      string
			now, prev [NumRefusals]uint64
		}{{"tcp", st.TCPRefusals, last.TCPRefusals}, {"udp", st.UDPRefusals, last.UDPRefusals}, {"icmp", st.ICMPRefusals, last.ICMPRefusals}} {
			for r := range NumRefusals {
				if d := p.now[r] - p.prev[r]; d > 0 {
					args = append(args, p.name+"_refused_"+r.String(), d)
				}
			}
		}
		g.log.Info("gateway drops and NAT refusals in the last interval", args...)
		last, lastTooLong = st, tooLong
	}
}
