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

const (
	// batchSize is the largest batch Read returns and Write takes.
	batchSize = 64
	// outQueueLen bounds the outbound queue (frames the stack sent that the
	// switch has not read yet). When it is full, frames are dropped and
	// counted (STYLE 4.7): TCP recovers, and a slow switch never blocks the
	// stack's goroutines.
	outQueueLen = 1024
)

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
// Loosely modeled after gVisor's link/channel and Tailscale's
// wgengine/netstack/link_endpoint.go.
type linkEndpoint struct {
	mac tcpip.LinkAddress
	mtu atomic.Uint32 // L3 MTU

	// groMu serializes Write batches (the switch calls Write from one
	// goroutine; tests may not); gro coalesces TCP segments per batch.
	groMu sync.Mutex
	gro   gro.GRO

	// seg holds a large outbound TCP segment being split (Read only).
	seg offload.Pending

	out       chan *stack.PacketBuffer
	closed    chan struct{}
	closeOnce sync.Once

	// policy decides which inbound frames reach the stack (policy.go).
	// Set before the first Write, read-only afterwards.
	policy linkPolicy

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	// Counters.
	outDrops   atomic.Uint64 // outbound queue full
	outTooLong atomic.Uint64 // outbound frame longer than the switch buffer
	inDrops    atomic.Uint64 // inbound frames too short (or before attach)
	inFiltered atomic.Uint64 // inbound frames for others: foreign unicast, ARP/NDP for other addresses
	inFrames   atomic.Uint64
	outFrames  atomic.Uint64
	gsoSplits  atomic.Uint64 // large TCP segments split into several frames
}

func newLinkEndpoint(mac [6]byte, l3mtu int) *linkEndpoint {
	e := &linkEndpoint{
		mac:    tcpip.LinkAddress(mac[:]),
		out:    make(chan *stack.PacketBuffer, outQueueLen),
		closed: make(chan struct{}),
	}
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
			return 0, net.ErrClosed
		default:
		}
		n := e.emitSegments(bufs, sizes, offset, 0)
		if n == len(bufs) {
			e.outFrames.Add(uint64(n))
			return n, nil
		}
		var pkt *stack.PacketBuffer
		if n == 0 {
			select {
			case pkt = <-e.out:
			case <-e.closed:
				return 0, net.ErrClosed
			}
		} else {
			select {
			case pkt = <-e.out:
			default:
			}
		}
		for pkt != nil {
			if g := pkt.GSOOptions; g.Type != stack.GSONone && g.NeedsCsum {
				if !e.startGSO(pkt) {
					e.outTooLong.Add(1)
				} else if e.seg.Remaining() > 1 {
					e.gsoSplits.Add(1)
				}
				pkt.DecRef()
				n = e.emitSegments(bufs, sizes, offset, n)
			} else {
				if sz, ok := copyPacket(bufs[n][offset:], pkt); ok {
					sizes[n] = sz
					n++
				} else {
					e.outTooLong.Add(1)
				}
				pkt.DecRef()
			}
			pkt = nil
			if n == len(bufs) {
				break
			}
			select {
			case pkt = <-e.out:
			default:
			}
		}
		if n > 0 {
			e.outFrames.Add(uint64(n))
			return n, nil
		}
	}
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
// those the policy filters or consumes.
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
		e.gro.Dispatcher = d
		e.gro.Enqueue(pkt)
		pkt.DecRef()
	}
	e.gro.Flush()
	e.inFrames.Add(uint64(len(bufs)))
	return len(bufs), nil
}

// BatchSize implements vswitch.Port.
func (e *linkEndpoint) BatchSize() int { return batchSize }

// enqueue queues an outbound packet, taking over the caller's reference;
// when the queue is full or the endpoint closed the packet is released and
// the drop counted.
func (e *linkEndpoint) enqueue(pkt *stack.PacketBuffer) bool {
	select {
	case <-e.closed:
	default:
		select {
		case e.out <- pkt:
			return true
		default:
			e.outDrops.Add(1)
		}
	}
	pkt.DecRef()
	return false
}

// closePort unblocks Read and Write and frees queued frames.
func (e *linkEndpoint) closePort() {
	e.closeOnce.Do(func() {
		close(e.closed)
		for {
			select {
			case pkt := <-e.out:
				pkt.DecRef()
			default:
				return
			}
		}
	})
}

// ---- stack.LinkEndpoint side ----

// WritePackets implements stack.LinkWriter. It takes a reference on each
// queued packet; Read releases it after copying.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	select {
	case <-e.closed:
		return 0, &tcpip.ErrClosedForSend{}
	default:
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if e.enqueue(pkt.IncRef()) {
			n++
		}
	}
	if n == 0 && pkts.Len() > 0 {
		return 0, &tcpip.ErrNoBufferSpace{}
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

// Capabilities implements stack.LinkEndpoint. RX checksum offload: GRO
// (Write) verifies TCP checksums once, before coalescing, and the stack
// then skips verifying each coalesced segment again. Frames reach the
// gateway over memory-to-memory transports (unix sockets, TAP, the switch)
// or uplinks with their own checksums, so UDP and ICMP are not re-verified.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
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
