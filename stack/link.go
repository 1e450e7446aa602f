package stack

import (
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/corralnet/corral/offload"
)

// batchSize is the largest batch Read returns and Write takes.
const batchSize = 64

// linkEndpoint adapts a gVisor stack to the batch Port interface. It speaks
// Ethernet itself (adds the header on output, strips it on input) so that
// inbound TCP segments of a batch go through gVisor's GRO and reach the
// stack coalesced.
//
// The endpoint is transport only: queues, the Port's Read and Write, and
// the gVisor stack.LinkEndpoint methods. What the gateway lets in is its
// policy ([linkPolicy]), consulted once per inbound frame, as Tailscale's
// netstack keeps its link endpoint apart from its packet filter.
//
// Directions: inbound frames come from the fence (Port.Write) and go into the
// stack; outbound frames are sent by the stack and leave through Port.Read.
//
// Outbound, the endpoint applies backpressure and never drops while open
// (outQueue); inbound, it verifies checksums (csum.go).
//
// Loosely modeled after gVisor's link/channel and Tailscale's
// wgengine/netstack/link_endpoint.go.
type linkEndpoint struct {
	mac tcpip.LinkAddress
	mtu atomic.Uint32 // L3 MTU

	// groMu serializes Write batches (the switch calls Write from one
	// goroutine; tests may not); gro coalesces TCP segments per batch.
	groMu sync.Mutex
	gro   gro.GRO
	// rxd sits between gro and the stack's dispatcher (csum.go); set
	// under groMu.
	rxd rxDispatcher
	// rxValidated: the packet being delivered had its checksums verified
	// (Capabilities).
	rxValidated atomic.Bool

	// Read goroutine only: seg holds a large outbound TCP segment being
	// split; held[heldHead:heldHead+heldN] are packets taken from out
	// and not yet copied out.
	seg      offload.Pending
	held     [batchSize]*stack.PacketBuffer
	heldHead int
	heldN    int

	out       outQueue
	closed    chan struct{}
	closeOnce sync.Once

	// policy decides which inbound frames reach the stack (policy.go).
	// Set before the first Write, read-only afterwards.
	policy linkPolicy

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	// Counters.
	outDrops   atomic.Uint64 // outbound packets released unsent because the endpoint closed
	outTooLong atomic.Uint64 // outbound frame longer than the switch buffer
	inDrops    atomic.Uint64 // inbound frames too short (or before attach)
	inFiltered atomic.Uint64 // inbound frames for others: foreign unicast, ARP/NDP for other addresses
	inBadCsum  atomic.Uint64 // inbound packets with a bad IPv4, TCP, UDP or ICMP checksum
	inFrames   atomic.Uint64
	outFrames  atomic.Uint64
	gsoSplits  atomic.Uint64 // large TCP segments split into several frames
}

func newLinkEndpoint(mac [6]byte, l3mtu int) *linkEndpoint {
	e := &linkEndpoint{
		mac:    tcpip.LinkAddress(mac[:]),
		closed: make(chan struct{}),
	}
	e.out.init(outQueueLen, outQueueBytes)
	e.rxd.e = e
	e.mtu.Store(uint32(l3mtu))
	e.gro.Init(true)
	return e
}

// ---- vswitch.Port side ----

// Read implements vswitch.Port: it returns outbound frames. Large TCP
// segments (GSO) are split into frames of at most the MTU, possibly across
// calls.
func (e *linkEndpoint) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		select {
		case <-e.closed:
			e.releaseHeld()
			return 0, net.ErrClosed
		default:
		}
		n := e.emitSegments(bufs, sizes, offset, 0)
		n = e.emitHeld(bufs, sizes, offset, n)
		if n < len(bufs) && e.heldN == 0 && e.seg.Remaining() == 0 {
			k, closed := e.out.pop(e.held[:min(len(bufs)-n, len(e.held))], n == 0)
			if closed && n == 0 {
				continue // returns net.ErrClosed above
			}
			e.heldHead, e.heldN = 0, k
			n = e.emitHeld(bufs, sizes, offset, n)
		}
		if n > 0 {
			e.outFrames.Add(uint64(n))
			return n, nil
		}
	}
}

// emitHeld copies held packets into bufs[n:] in order, as long as there is
// room and no GSO segment is pending, and returns the new count.
func (e *linkEndpoint) emitHeld(bufs [][]byte, sizes []int, offset, n int) int {
	for n < len(bufs) && e.heldN > 0 && e.seg.Remaining() == 0 {
		pkt := e.held[e.heldHead]
		e.held[e.heldHead] = nil
		e.heldHead++
		e.heldN--
		if g := pkt.GSOOptions; g.Type != stack.GSONone && g.NeedsCsum {
			if !e.startGSO(pkt) {
				e.outTooLong.Add(1)
			} else if e.seg.Remaining() > 1 {
				e.gsoSplits.Add(1)
			}
			pkt.DecRef()
			n = e.emitSegments(bufs, sizes, offset, n)
			continue
		}
		if sz, ok := copyPacket(bufs[n][offset:], pkt); ok {
			sizes[n] = sz
			n++
		} else {
			e.outTooLong.Add(1)
		}
		pkt.DecRef()
	}
	return n
}

// releaseHeld releases the packets Read took and did not copy out (after
// close).
func (e *linkEndpoint) releaseHeld() {
	for ; e.heldN > 0; e.heldN-- {
		e.held[e.heldHead].DecRef()
		e.held[e.heldHead] = nil
		e.heldHead++
		e.outDrops.Add(1)
	}
	e.seg.Reset()
}

// emitSegments writes pending GSO segments into bufs[n:] and returns the
// new count.
func (e *linkEndpoint) emitSegments(bufs [][]byte, sizes []int, offset, n int) int {
	for n < len(bufs) && e.seg.Remaining() > 0 {
		sz, err := e.seg.Next(bufs[n][offset:])
		if err != nil {
			e.outTooLong.Add(1)
			e.seg.Reset()
			break
		}
		sizes[n] = sz
		n++
	}
	return n
}

// copyPacket copies the whole packet (link header included) into dst.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) (int, bool) {
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		s = s[off:]
		off = 0
		if len(s) > len(dst)-n {
			return 0, false
		}
		n += copy(dst[n:], s)
	}
	return n, true
}

// Write implements vswitch.Port: it delivers inbound frames to the stack.
// Frames not addressed to the gateway's MAC, broadcast or multicast are
// dropped (the switch floods unknown unicast to every port), and so are
// those with a bad checksum and those the policy filters or consumes.
// Write may block while the stack, answering, waits for room in the
// outbound queue (outQueue).
func (e *linkEndpoint) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-e.closed:
		return 0, net.ErrClosed
	default:
	}
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	e.groMu.Lock()
	defer e.groMu.Unlock()
	e.rxd.d = d
	e.gro.Dispatcher = &e.rxd
	for _, b := range bufs {
		frame := b[offset:]
		if len(frame) < header.EthernetMinimumSize || d == nil {
			e.inDrops.Add(1)
			continue
		}
		dst := header.Ethernet(frame).DestinationAddress()
		if dst[0]&1 == 0 && dst != e.mac {
			e.inFiltered.Add(1)
			continue
		}
		ok, validated := verifyChecksums(frame)
		if !ok {
			e.inBadCsum.Add(1)
			continue
		}
		switch e.policy.inbound(frame) {
		case verdictFilter:
			e.inFiltered.Add(1)
			continue
		case verdictConsumed:
			continue
		}
		// One copy: the switch owns b and reuses it after Write returns.
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			Payload: buffer.MakeWithData(frame),
		})
		eth := header.Ethernet(frame)
		if !e.ParseHeader(pkt) {
			pkt.DecRef()
			e.inDrops.Add(1)
			continue
		}
		switch {
		case dst == header.EthernetBroadcastAddress:
			pkt.PktType = tcpip.PacketBroadcast
		case header.IsMulticastEthernetAddress(dst):
			pkt.PktType = tcpip.PacketMulticast
		default:
			pkt.PktType = tcpip.PacketHost
		}
		pkt.NetworkProtocolNumber = eth.Type()
		pkt.RXChecksumValidated = validated
		e.gro.Enqueue(pkt)
		pkt.DecRef()
	}
	e.gro.Flush()
	e.inFrames.Add(uint64(len(bufs)))
	return len(bufs), nil
}

// BatchSize implements vswitch.Port.
func (e *linkEndpoint) BatchSize() int { return batchSize }

// enqueue queues an outbound packet, waiting for room (outQueue), and
// takes over the caller's reference; false (the packet released and
// counted) once the endpoint is closed.
func (e *linkEndpoint) enqueue(pkt *stack.PacketBuffer) bool {
	ok := e.out.push1(pkt)
	if !ok {
		e.outDrops.Add(1)
	}
	pkt.DecRef()
	return ok
}

// closePort unblocks Read, Write and waiting writers and frees queued
// frames.
func (e *linkEndpoint) closePort() {
	e.closeOnce.Do(func() {
		close(e.closed)
		e.outDrops.Add(uint64(e.out.close()))
	})
}

// ---- stack.LinkEndpoint side ----

// WritePackets implements stack.LinkWriter. It queues every packet, with
// a reference of its own that Read releases after copying, waiting for
// room while the queue is full: the calling goroutine (a TCP processor, an
// application's Write) is held, which is how gVisor learns it cannot send
// now. It fails only once the endpoint is closed.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n, closed := e.out.push(pkts.AsSlice())
	if closed {
		e.outDrops.Add(uint64(pkts.Len() - n))
		return n, &tcpip.ErrClosedForSend{}
	}
	return n, nil
}

// MTU implements stack.LinkEndpoint.MTU.
func (e *linkEndpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU.
func (e *linkEndpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: the
// Ethernet header.
func (e *linkEndpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress; it does
// nothing.
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {
	// The gateway's MAC is fixed by its configuration.
}

// Capabilities implements stack.LinkEndpoint. RX checksum offload is
// claimed only while a packet whose checksums were verified is being
// delivered (csum.go): the stack verifies every other packet itself.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	c := stack.CapabilityResolutionRequired
	if e.rxValidated.Load() {
		c |= stack.CapabilityRXChecksumOffload
	}
	return c
}

// Attach implements stack.LinkEndpoint.Attach.
func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *linkEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait; the endpoint starts no
// goroutines, so there is nothing to wait for.
func (e *linkEndpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (e *linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint: it pushes the Ethernet header.
func (e *linkEndpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint: it consumes the Ethernet header.
func (e *linkEndpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *linkEndpoint) SetOnCloseAction(f func()) { e.mu.Lock(); e.onClose = f; e.mu.Unlock() }

// Close implements stack.LinkEndpoint.Close: it closes the port and runs
// the on-close action.
func (e *linkEndpoint) Close() {
	e.closePort()
	e.mu.RLock()
	f := e.onClose
	e.mu.RUnlock()
	if f != nil {
		f()
	}
}

var _ stack.LinkEndpoint = (*linkEndpoint)(nil)
