package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/corralnet/corral/offload"
)

// gsoMaxSize is the largest TCP segment the stack hands the endpoint: an
// IPv4 total length stays below 65536 (gVisor keeps payloads below
// GSOMaxSize - 61).
const gsoMaxSize = 65535 - header.IPv4MinimumSize

// GSOMaxSize implements stack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: host GSO, done in software by
// the endpoint's Read. gVisor's TCP builds one large segment per send
// instead of one per MSS (Tailscale measured 2 → 10 Gbit/s with GSO/GRO on
// its netstack), and the endpoint splits it into frames of at most the MTU
// while copying it out, which it does anyway.
func (e *linkEndpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

// startGSO copies pkt, a TCP packet whose checksum gVisor left to the
// endpoint (every TCP packet once host GSO is on, pure ACKs included),
// into the segmenter e.seg and makes its segments pending: package offload
// cuts it at the packet's MSS and computes every checksum. It returns false
// when the packet is malformed or does not fit. Read goroutine only.
func (e *linkEndpoint) startGSO(pkt *stack.PacketBuffer) bool {
	buf := e.seg.Buf()
	n, ok := copyPacket(buf, pkt)
	if !ok {
		return false
	}
	g := pkt.GSOOptions
	s, err := offload.ParseSuper(buf[:n], g.Type == stack.GSOTCPv6, int(g.MSS))
	if err != nil {
		return false
	}
	e.seg.Start(s, n)
	return true
}
