package stack

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

var _ vswitch.Port = (*Gateway)(nil)

// needRoot is the gate of every test that needs root (for what): under
// -short (make unit) it skips, saying so; otherwise, when not root, it
// fails under CI=true and skips without.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped under -short (make unit): needs root (%s); make test runs it", what)
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root (%s); CI=true, so not skipping", what)
	}
	t.Skipf("needs root (%s)", what)
}

// newTestGateway starts a gateway with test defaults; Close on cleanup.
func newTestGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	if cfg.Fence == 0 {
		cfg.Fence = 7
	}
	if len(cfg.Resolvers) == 0 {
		// Never forward to the machine's resolvers from unit tests.
		cfg.Resolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// guest is a second gVisor stack wired to a gateway through the Port
// interface, playing a VM.
type guest struct {
	s   *gstack.Stack
	ep  *linkEndpoint
	mac [6]byte
	ip  netip.Addr
	// The wires, as the switch would be: fromGateway reads the gateway
	// (shared by the guests of one testLAN), toGuest writes this guest;
	// fromGuest reads it, toGateway writes the gateway (shared too).
	fromGateway, fromGuest *wireReader
	toGuest, toGateway     *wireSink
}

// newGuest wires one guest to g.
func newGuest(t *testing.T, g *Gateway, mac [6]byte, ip netip.Addr) *guest {
	t.Helper()
	return newGuests(t, g, []guestSpec{{mac, ip}})[0]
}

type guestSpec struct {
	mac [6]byte
	ip  netip.Addr
}

// newGuests wires guests to g through a small learning-free switch: frames
// from the gateway go to the guest whose MAC they are for (every guest for
// group addresses), frames from guests to the gateway.
func newGuests(t *testing.T, g *Gateway, specs []guestSpec) []*guest {
	t.Helper()
	lan := &testLAN{stop: make(chan struct{})}
	toGateway := lan.sink(g)
	var gss []*guest
	for _, sp := range specs {
		gs := &guest{mac: sp.mac, ip: sp.ip, ep: newLinkEndpoint(sp.mac, 1500), toGateway: toGateway}
		gs.ep.policy.allowARP = []netip.Addr{sp.ip}
		gs.s = gstack.New(gstack.Options{
			NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
			TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		})
		if err := gs.s.CreateNIC(1, gs.ep); err != nil {
			t.Fatalf("guest NIC: %v", err)
		}
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom4(sp.ip.As4()), PrefixLen: g.cfg.Subnet.Bits()}}
		if err := gs.s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); err != nil {
			t.Fatalf("guest address: %v", err)
		}
		gs.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(g.gwIP.As4()), NIC: 1}})
		gs.toGuest = lan.sink(gs.ep)
		gs.fromGuest = lan.reader(gs.ep, func([]byte) []*wireSink { return []*wireSink{toGateway} })
		gss = append(gss, gs)
	}
	all := make([]*wireSink, len(gss))
	for i, gs := range gss {
		all[i] = gs.toGuest
	}
	one := make([][]*wireSink, len(gss))
	for i := range gss {
		one[i] = all[i : i+1]
	}
	fromGateway := lan.reader(g, func(f []byte) []*wireSink {
		dst := [6]byte(f[:6])
		if dst[0]&1 != 0 {
			return all
		}
		for i, gs := range gss {
			if gs.mac == dst {
				return one[i]
			}
		}
		return nil
	})
	for _, gs := range gss {
		gs.fromGateway = fromGateway
	}
	t.Cleanup(func() {
		for _, gs := range gss {
			gs.ep.closePort()
		}
		g.Close()
		close(lan.stop)
		lan.wg.Wait()
		for _, gs := range gss {
			gs.s.Close()
			gs.s.Wait()
		}
	})
	return gss
}

// port is the Port side of both Gateway and linkEndpoint.
type port interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
}

// testLAN moves frames between ports as the switch does: a goroutine reads
// each port (wireReader), another writes each port (wireSink), with a
// bounded queue in between that drops (and counts) when full. Read and
// Write of the ports never run on one goroutine: a Write during which a
// stack sends, and waits for room in its outbound queue, never waits for
// itself.
type testLAN struct {
	stop chan struct{} // closed after the ports, at cleanup
	wg   sync.WaitGroup
}

// sinkBatches bounds the batches a sink holds (allocated as needed).
const sinkBatches = 64

// wireBatch is frames to write to a sink's port.
type wireBatch struct {
	bufs [][]byte
	out  [][]byte
	n    int
}

// wireSink writes queued frames to its port.
type wireSink struct {
	dst   port
	q     chan *wireBatch
	free  chan *wireBatch
	drops atomic.Uint64 // frames dropped, queue full

	mu        sync.Mutex
	allocated int // guarded by mu
}

// wireReader reads its port and queues each frame to the sinks route
// returns.
type wireReader struct {
	pause atomic.Bool // stops reading while set (tests)
}

func (l *testLAN) sink(dst port) *wireSink {
	s := &wireSink{dst: dst, q: make(chan *wireBatch, sinkBatches), free: make(chan *wireBatch, sinkBatches)}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		failed := false
		for {
			select {
			case b := <-s.q:
				if !failed {
					if _, err := s.dst.Write(b.out[:b.n], vswitch.Headroom); err != nil {
						failed = true
					}
				}
				s.free <- b
			case <-l.stop:
				return
			}
		}
	}()
	return s
}

// get returns a free batch, nil when all are in use.
func (s *wireSink) get() *wireBatch {
	select {
	case b := <-s.free:
		return b
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allocated == sinkBatches {
		return nil
	}
	s.allocated++
	b := &wireBatch{bufs: make([][]byte, batchSize), out: make([][]byte, batchSize)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, vswitch.SmallBufSize)
	}
	return b
}

// put queues copies of frames; it never blocks (every batch is free,
// queued or being written, and q holds them all).
func (s *wireSink) put(frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	b := s.get()
	if b == nil {
		s.drops.Add(uint64(len(frames)))
		return
	}
	for i, f := range frames {
		end := vswitch.Headroom + len(f)
		if cap(b.bufs[i]) < end {
			b.bufs[i] = make([]byte, end)
		}
		b.out[i] = append(b.bufs[i][:vswitch.Headroom], f...)
	}
	b.n = len(frames)
	s.q <- b
}

func (l *testLAN) reader(src port, route func(frame []byte) []*wireSink) *wireReader {
	r := &wireReader{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.BufSize)
		}
		sizes := make([]int, batchSize)
		per := map[*wireSink][][]byte{}
		for {
			for r.pause.Load() {
				select {
				case <-l.stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
			n, err := src.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				f := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]
				for _, s := range route(f) {
					per[s] = append(per[s], f)
				}
			}
			for s, fs := range per {
				s.put(fs)
				per[s] = fs[:0]
			}
		}
	}()
	return r
}

// frameReader reads a gateway's outbound frames (no guest attached): one
// goroutine reads until the gateway closes and queues copies.
type frameReader struct {
	ch chan []byte
}

func newFrameReader(g *Gateway) *frameReader {
	r := &frameReader{ch: make(chan []byte, 4096)}
	go func() {
		bufs := make([][]byte, batchSize)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.BufSize)
		}
		sizes := make([]int, batchSize)
		for {
			n, err := g.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				close(r.ch)
				return
			}
			for i := 0; i < n; i++ {
				select {
				case r.ch <- append([]byte(nil), bufs[i][vswitch.Headroom:vswitch.Headroom+sizes[i]]...):
				default:
				}
			}
		}
	}()
	return r
}

// next returns the next frame for which match is true, or nil after
// timeout.
func (r *frameReader) next(timeout time.Duration, match func([]byte) bool) []byte {
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-r.ch:
			if !ok {
				return nil
			}
			if match(f) {
				return f
			}
		case <-deadline:
			return nil
		}
	}
}

// writeFrame delivers one inbound frame to the gateway.
func writeFrame(t *testing.T, g *Gateway, frame []byte) {
	t.Helper()
	b := make([]byte, vswitch.Headroom+len(frame))
	copy(b[vswitch.Headroom:], frame)
	if _, err := g.Write([][]byte{b}, vswitch.Headroom); err != nil {
		t.Fatalf("gateway Write: %v", err)
	}
}

// udpFrame builds an Ethernet/IPv4/UDP frame with valid checksums.
func udpFrame(srcMAC, dstMAC [6]byte, src, dst netip.AddrPort, payload []byte) []byte {
	total := header.EthernetMinimumSize + header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)
	b := make([]byte, total)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(srcMAC[:]), DstAddr: tcpip.LinkAddress(dstMAC[:]), Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)),
		TTL:         64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(u)))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	return b
}

// udpPayload returns the UDP payload of an Ethernet/IPv4/UDP frame whose
// source port is sport, or nil.
func udpPayload(f []byte, sport, dport uint16) []byte {
	if len(f) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize ||
		header.Ethernet(f).Type() != header.IPv4ProtocolNumber {
		return nil
	}
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.UDPProtocolNumber {
		return nil
	}
	u := header.UDP(ip.Payload())
	if len(u) < header.UDPMinimumSize || u.SourcePort() != sport || u.DestinationPort() != dport {
		return nil
	}
	return u.Payload()
}

// arpRequest builds a who-has frame.
func arpRequest(srcMAC [6]byte, srcIP, target netip.Addr) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(srcMAC[:]), DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), srcMAC[:])
	s4, t4 := srcIP.As4(), target.As4()
	copy(a.ProtocolAddressSender(), s4[:])
	copy(a.ProtocolAddressTarget(), t4[:])
	return b
}

func isARPReplyFor(target netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		if len(f) < header.EthernetMinimumSize+header.ARPSize || header.Ethernet(f).Type() != header.ARPProtocolNumber {
			return false
		}
		a := header.ARP(f[header.EthernetMinimumSize:])
		t4 := target.As4()
		return a.Op() == header.ARPReply && [4]byte(a.ProtocolAddressSender()) == t4
	}
}

// ctxT returns a context bounded by d, canceled on cleanup.
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// echoTCP serves an echo server on 127.0.0.1:0 until cleanup.
func echoTCP(t *testing.T, prefix string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln, prefix)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echoUDP serves a UDP echo on 127.0.0.1:0 until cleanup.
func echoUDP(t *testing.T, prefix string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	serveEchoPacket(t, pc, prefix)
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// serveEcho answers what each connection ln accepts sends with the same
// bytes after prefix, until the peer closes. At cleanup it closes ln and
// the open connections and waits for its goroutines.
func serveEcho(t *testing.T, ln net.Listener, prefix string) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{} // guarded by mu
		closed bool                      // guarded by mu
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(append([]byte(prefix), buf[:n]...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// serveEchoPacket answers each datagram pc receives with the same bytes
// after prefix. At cleanup it closes pc and waits for its goroutine.
func serveEchoPacket(t *testing.T, pc net.PacketConn, prefix string) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				select {
				case <-done:
					return
				default:
					continue // a transient error: the socket is still open
				}
			}
			pc.WriteTo(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() {
		close(done)
		pc.Close()
		<-stopped
	})
}
