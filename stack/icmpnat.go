package stack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// maxEchoFlows bounds ICMP echo NAT flows (guest, id, destination).
	maxEchoFlows = 256
	// maxEchoFlowsPerGuest is one guest's (source MAC's) share of them.
	maxEchoFlowsPerGuest = maxEchoFlows / 4
	// echoIdle ends an echo flow without requests.
	echoIdle = 30 * time.Second
	// icmpEchoHeaderSize is type, code, checksum, id, seq.
	icmpEchoHeaderSize = 8
)

// echoKey identifies a guest's ping session to one destination.
type echoKey struct {
	guest netip.Addr
	id    uint16
	dst   netip.Addr // the guest's destination (what replies come from)
}

type echoFlow struct {
	key      echoKey
	guestMAC [6]byte // where replies go: the latest request's source
	owner    [6]byte // the guest charged: the first request's source
	natID    uint16
	host     netip.Addr // the address pinged on the host
	last     time.Time
}

// icmpNAT relays guests' ICMP echo requests through raw ICMP sockets on the
// host and turns the replies into frames back to the guests. Without raw
// sockets (no CAP_NET_RAW) it is off: echo requests to the gateway's own
// addresses are answered by the stack, others are dropped and counted.
type icmpNAT struct {
	g      *Gateway
	c4, c6 net.PacketConn

	mu      sync.Mutex
	flows   map[uint16]*echoFlow // by NAT id
	byKey   map[echoKey]*echoFlow
	byOwner map[[6]byte]int // flows per owner
	next    uint16

	relayed  atomic.Uint64 // echo requests sent on the host
	replies  atomic.Uint64 // echo replies delivered to guests
	refusals refusalCounters
}

func (n *icmpNAT) start(g *Gateway) {
	n.g = g
	n.flows = make(map[uint16]*echoFlow)
	n.byKey = make(map[echoKey]*echoFlow)
	n.byOwner = make(map[[6]byte]int)
	n.next = uint16(time.Now().UnixNano())
	var err error
	if n.c4, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
		g.log.Info("ICMP echo NAT off for IPv4 (no raw socket)", "err", err)
		n.c4 = nil
	}
	if !g.cfg.NoIPv6 {
		if n.c6, err = net.ListenPacket("ip6:ipv6-icmp", "::"); err != nil {
			g.log.Info("ICMP echo NAT off for IPv6 (no raw socket)", "err", err)
			n.c6 = nil
		}
	}
	for _, c := range []net.PacketConn{n.c4, n.c6} {
		if c != nil {
			g.closers = append(g.closers, c.Close)
			g.goOwned(func() { n.readLoop(c, c == n.c6) })
		}
	}
}

// intercept is called by the link endpoint for every inbound IPv4/IPv6
// frame. It takes ICMP echo requests to destinations other than the
// gateway's service addresses (and to .2/::2 when raw sockets work: the
// host's loopback answers) and reports whether it consumed the frame.
func (n *icmpNAT) intercept(frame []byte) bool {
	eth := header.Ethernet(frame)
	var (
		src, dst netip.Addr
		icmp     []byte
		v6       bool
	)
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(frame[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.ICMPv4ProtocolNumber || ip.More() || ip.FragmentOffset() != 0 {
			return false
		}
		icmp = ip.Payload()
		if len(icmp) < icmpEchoHeaderSize || header.ICMPv4(icmp).Type() != header.ICMPv4Echo {
			return false
		}
		src = netip.AddrFrom4(ip.SourceAddress().As4())
		dst = netip.AddrFrom4(ip.DestinationAddress().As4())
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(frame[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
			return false
		}
		icmp = ip.Payload()
		if len(icmp) < icmpEchoHeaderSize || header.ICMPv6(icmp).Type() != header.ICMPv6EchoRequest {
			return false
		}
		src = netip.AddrFrom16(ip.SourceAddress().As16())
		dst = netip.AddrFrom16(ip.DestinationAddress().As16())
		v6 = true
	default:
		return false
	}
	g := n.g
	conn := n.c4
	if v6 {
		conn = n.c6
	}
	switch {
	case dst == g.dnsIP || dst == g.dns6 || dst == g.ll6:
		return false // the stack answers
	case dst == g.gwIP || dst == g.gw6:
		if conn == nil || g.cfg.NoHostLoopback {
			return false // the stack answers
		}
	}
	if !g.sourceOK(tcpip.AddrFromSlice(src.AsSlice())) {
		n.refusals.add(RefusedSource)
		return true
	}
	host, why := g.natTarget("icmp", tcpip.AddrFromSlice(dst.AsSlice()), 0)
	if why == accepted && conn == nil {
		why = RefusedNoRawSocket
	}
	if why != accepted {
		n.refusals.add(why)
		return true
	}
	key := echoKey{guest: src, id: binary.BigEndian.Uint16(icmp[4:]), dst: dst}
	f, why := n.flow(key, [6]byte([]byte(eth.SourceAddress())), host.Addr())
	if f == nil {
		n.refusals.add(why)
		return true
	}
	// The request as sent on the host: same type, seq and payload, our id.
	msg := make([]byte, len(icmp))
	copy(msg, icmp)
	binary.BigEndian.PutUint16(msg[4:], f.natID)
	msg[2], msg[3] = 0, 0
	if !v6 { // the kernel computes ICMPv6 checksums on raw sockets
		binary.BigEndian.PutUint16(msg[2:], ^checksum.Checksum(msg, 0))
	}
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: host.Addr().AsSlice()}); err != nil {
		n.refusals.add(RefusedDialFailed)
		return true
	}
	n.relayed.Add(1)
	return true
}

// flow finds or creates the flow for key, charged to guest mac; nil and
// the reason when the table, or the guest's share of it, is full of
// active flows.
func (n *icmpNAT) flow(key echoKey, mac [6]byte, host netip.Addr) (*echoFlow, Refusal) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if f, ok := n.byKey[key]; ok {
		f.last, f.guestMAC = now, mac
		return f, accepted
	}
	if len(n.flows) >= maxEchoFlows || n.byOwner[mac] >= maxEchoFlowsPerGuest {
		for id, f := range n.flows {
			if now.Sub(f.last) > echoIdle {
				delete(n.flows, id)
				delete(n.byKey, f.key)
				if n.byOwner[f.owner]--; n.byOwner[f.owner] == 0 {
					delete(n.byOwner, f.owner)
				}
			}
		}
		if n.byOwner[mac] >= maxEchoFlowsPerGuest {
			return nil, RefusedLimitGuest
		}
		if len(n.flows) >= maxEchoFlows {
			return nil, RefusedLimitFence
		}
	}
	for n.flows[n.next] != nil {
		n.next++
	}
	f := &echoFlow{key: key, guestMAC: mac, owner: mac, natID: n.next, host: host, last: now}
	n.next++
	n.flows[f.natID] = f
	n.byKey[key] = f
	n.byOwner[mac]++
	return f, accepted
}

// readLoop reads ICMP messages from a raw socket until it is closed and
// turns echo replies of our flows into frames to the guests.
func (n *icmpNAT) readLoop(c net.PacketConn, v6 bool) {
	buf := make([]byte, 65536)
	for {
		m, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := buf[:m]
		if len(msg) < icmpEchoHeaderSize {
			continue
		}
		if v6 && header.ICMPv6Type(msg[0]) != header.ICMPv6EchoReply || !v6 && header.ICMPv4Type(msg[0]) != header.ICMPv4EchoReply {
			continue
		}
		ia, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		fromAddr, _ := netip.AddrFromSlice(ia.IP)
		n.mu.Lock()
		f := n.flows[binary.BigEndian.Uint16(msg[4:])]
		var fl echoFlow
		if f != nil {
			fl = *f
		}
		n.mu.Unlock()
		if f == nil || fl.host != fromAddr.Unmap() {
			continue
		}
		n.deliver(&fl, msg, v6)
	}
}

// deliver queues an echo reply frame from fl.key.dst to the guest.
func (n *icmpNAT) deliver(fl *echoFlow, msg []byte, v6 bool) {
	g := n.g
	var frame []byte
	src := tcpip.AddrFromSlice(fl.key.dst.AsSlice())
	dst := tcpip.AddrFromSlice(fl.key.guest.AsSlice())
	if !v6 {
		frame = make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(msg))
		header.Ethernet(frame).Encode(&header.EthernetFields{
			SrcAddr: tcpip.LinkAddress(g.cfg.MAC[:]), DstAddr: tcpip.LinkAddress(fl.guestMAC[:]), Type: header.IPv4ProtocolNumber})
		ip := header.IPv4(frame[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + len(msg)), TTL: 64,
			Protocol: uint8(header.ICMPv4ProtocolNumber), SrcAddr: src, DstAddr: dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		icmp := ip[header.IPv4MinimumSize:]
		copy(icmp, msg)
		binary.BigEndian.PutUint16(icmp[4:], fl.key.id)
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	} else {
		frame = make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(msg))
		header.Ethernet(frame).Encode(&header.EthernetFields{
			SrcAddr: tcpip.LinkAddress(g.cfg.MAC[:]), DstAddr: tcpip.LinkAddress(fl.guestMAC[:]), Type: header.IPv6ProtocolNumber})
		ip := header.IPv6(frame[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv6Fields{
			PayloadLength: uint16(len(msg)), TransportProtocol: header.ICMPv6ProtocolNumber,
			HopLimit: 64, SrcAddr: src, DstAddr: dst,
		})
		icmp := header.ICMPv6(ip[header.IPv6MinimumSize:])
		copy(icmp, msg)
		binary.BigEndian.PutUint16(icmp[4:], fl.key.id)
		icmp.SetChecksum(0)
		icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: icmp[:header.ICMPv6MinimumSize], Src: src, Dst: dst,
			PayloadCsum: checksum.Checksum(icmp[header.ICMPv6MinimumSize:], 0),
			PayloadLen:  len(icmp) - header.ICMPv6MinimumSize,
		}))
	}
	if g.ep.enqueue(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})) {
		n.replies.Add(1)
	}
}
