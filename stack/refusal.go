package stack

import "sync/atomic"

// Refusal is why the gateway did not NAT a guest's packet that would have
// opened a flow (a TCP SYN, a UDP datagram of a new flow, an ICMP echo
// request). Each refusal is counted once per such packet: a guest that
// retransmits a refused SYN is counted again.
type Refusal uint8

// Refusal reasons. Their String form is the label in `corral gateways`,
// the admin API and metrics; names are an interface (add, never rename).
const (
	// RefusedLimitFence: the fence's table is full (MaxTCPConns,
	// MaxUDPFlows, the ICMP echo table).
	RefusedLimitFence Refusal = iota
	// RefusedLimitGuest: the guest (source MAC) holds its share of the
	// fence's table (MaxTCPConnsPerGuest, MaxUDPFlowsPerGuest, a quarter
	// of the echo table).
	RefusedLimitGuest
	// RefusedSYNBacklog: too many TCP connections of the fence (256), or
	// of the guest (64), are being set up (dialed on the host) at once;
	// the SYN is dropped without a reset, the guest retransmits it, and
	// each retransmission dropped is counted again.
	RefusedSYNBacklog
	// RefusedPolicy: Config.Allow / Config.Deny refuse the destination.
	RefusedPolicy
	// RefusedSelf: the destination is a socket of this corral process
	// (Config.IsSelf): a fence listener, the uplink, metrics, a forward.
	RefusedSelf
	// RefusedHostLoopbackOff: the destination is the gateway's address
	// and Config.NoHostLoopback is set.
	RefusedHostLoopbackOff
	// RefusedUnroutable: the destination is in the fence's own subnet or
	// prefix, multicast, broadcast, loopback, link-local, unspecified, or
	// port 0.
	RefusedUnroutable
	// RefusedSource: the source address is outside the fence's subnet and
	// IPv6 prefix (a spoofed or misconfigured guest).
	RefusedSource
	// RefusedDialFailed: the host refused or did not answer the
	// connection (or the host socket could not be made).
	RefusedDialFailed
	// RefusedHandshake: the host connection was made, the guest did not
	// complete the handshake (it reset or went away).
	RefusedHandshake
	// RefusedNoRawSocket: ICMP echo NAT is off (no CAP_NET_RAW).
	RefusedNoRawSocket
	// RefusedForwardLimit: an incoming port-forward connection or flow
	// refused (the fence's table full, or the guest side failed).
	RefusedForwardLimit
	// NumRefusals is the number of reasons.
	NumRefusals
)

var refusalNames = [NumRefusals]string{
	RefusedLimitFence:      "limit_fence",
	RefusedLimitGuest:      "limit_guest",
	RefusedSYNBacklog:      "syn_backlog",
	RefusedPolicy:          "policy",
	RefusedSelf:            "self",
	RefusedHostLoopbackOff: "host_loopback_off",
	RefusedUnroutable:      "unroutable",
	RefusedSource:          "source",
	RefusedDialFailed:      "dial_failed",
	RefusedHandshake:       "handshake",
	RefusedNoRawSocket:     "no_raw_socket",
	RefusedForwardLimit:    "forward_limit",
}

// String returns the reason's label, such as "limit_guest".
func (r Refusal) String() string {
	if r < NumRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// refusalCounters count refusals by reason.
type refusalCounters [NumRefusals]atomic.Uint64

func (c *refusalCounters) add(r Refusal) { c[r].Add(1) }

// load returns a snapshot.
func (c *refusalCounters) load() [NumRefusals]uint64 {
	var out [NumRefusals]uint64
	for i := range c {
		out[i] = c[i].Load()
	}
	return out
}

// sumRefusals returns the total of a snapshot.
func sumRefusals(r [NumRefusals]uint64) uint64 {
	var s uint64
	for _, v := range r {
		s += v
	}
	return s
}
