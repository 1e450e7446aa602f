package stack

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
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

// guest is a second gVisor stack wired back to back to a gateway through
// the Port interface, playing a VM.
type guest struct {
	s   *gstack.Stack
	ep  *linkEndpoint
	mac [6]byte
	ip  netip.Addr
}

func newGuest(t *testing.T, g *Gateway, mac [6]byte, ip netip.Addr) *guest {
	t.Helper()
	gs := &guest{mac: mac, ip: ip, ep: newLinkEndpoint(mac, 1500)}
	gs.ep.policy.allowARP = []netip.Addr{ip}
	gs.s = gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := gs.s.CreateNIC(1, gs.ep); err != nil {
		t.Fatalf("guest NIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(ip.As4()), PrefixLen: g.cfg.Subnet.Bits()}}
	if err := gs.s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); err != nil {
		t.Fatalf("guest address: %v", err)
	}
	gs.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(g.gwIP.As4()), NIC: 1}})
	done := make(chan struct{}, 2)
	go func() { pump(g, gs.ep); done <- struct{}{} }()
	go func() { pump(gs.ep, g); done <- struct{}{} }()
	t.Cleanup(func() {
		gs.ep.closePort()
		g.Close()
		<-done
		<-done
		gs.s.Close()
		gs.s.Wait()
	})
	return gs
}

// port is the Port side of both Gateway and linkEndpoint.
type port interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
}

// pump moves frames from src to dst until either fails.
func pump(src, dst port) {
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, batchSize)
	out := make([][]byte, batchSize)
	for {
		n, err := src.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			out[i] = bufs[i][:vswitch.Headroom+sizes[i]]
		}
		if _, err := dst.Write(out[:n], vswitch.Headroom); err != nil {
			return
		}
	}
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
