package vswitch

import "sync/atomic"

// DropReason says why the switch dropped a frame. Its String form is the
// key used in the Drops maps of [PortStatus], [FenceStatus] and [TrunkStatus].
type DropReason uint8

// Drop reasons. Inbound reasons are counted on the port (or trunk) the frame
// came from, outbound ones on the port (or trunk) it was going to; every
// drop of a frame that belongs to a fence is also counted on the fence.
const (
	// DropRunt: a frame shorter than [MinFrameSize].
	DropRunt DropReason = iota
	// DropSrcMulticast: the source MAC has the I/G bit set (broadcast included).
	DropSrcMulticast
	// DropSrcZero: the source MAC is 00:00:00:00:00:00.
	DropSrcZero
	// DropPinned: the port is pinned to another source MAC.
	DropPinned
	// DropMACLimit: a new source MAC would exceed the port's MAC limit.
	DropMACLimit
	// DropHairpin: the destination was learned on the ingress port; a frame
	// never goes back out of the port it came in on.
	DropHairpin
	// DropQueueFull: the destination's transmit queue was full.
	DropQueueFull
	// DropDetached: the destination went away while the frame was in flight.
	DropDetached
	// DropUnknownFence: a trunk frame for a fence this host does not have.
	DropUnknownFence
	// DropRemoteDst: a trunk frame whose destination lives on a remote host
	// (frames from the trunk never go back to the trunk).
	DropRemoteDst
	// DropNoTrunk: the destination lives on a remote host but no trunk is attached.
	DropNoTrunk
	// DropWrite: the port's Write took fewer frames than offered, or failed.
	DropWrite
	// DropGlobalQueueFull: the bytes queued for all ports and the trunk
	// together were at Config.MaxQueuedBytes (counted on the destination).
	DropGlobalQueueFull
	// DropStorm: an inbound broadcast, multicast or unknown-unicast frame
	// beyond the port's rate (FenceConfig.BUMRate; storm control).
	DropStorm

	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropRunt:         "runt",
	DropSrcMulticast: "src_multicast",
	DropSrcZero:      "src_zero",
	DropPinned:       "pinned",
	DropMACLimit:     "mac_limit",
	DropHairpin:      "hairpin",
	DropQueueFull:    "queue_full",
	DropDetached:     "detached",
	DropUnknownFence: "unknown_fence",
	DropRemoteDst:    "remote_dst",
	DropNoTrunk:      "no_trunk",
	DropWrite:        "write",

	DropGlobalQueueFull: "global_queue_full",
	DropStorm:           "storm",
}

// String returns the reason's key, e.g. "queue_full".
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// dropCounters counts drops by reason.
type dropCounters [numDropReasons]atomic.Uint64

func (d *dropCounters) add(r DropReason, n uint64) { d[r].Add(n) }

// snapshot returns the non-zero counters by name (nil when all are zero).
func (d *dropCounters) snapshot() map[string]uint64 {
	var m map[string]uint64
	for i := range d {
		if v := d[i].Load(); v != 0 {
			if m == nil {
				m = make(map[string]uint64)
			}
			m[DropReason(i).String()] = v
		}
	}
	return m
}

// Get returns the counter of one reason.
func (d *dropCounters) get(r DropReason) uint64 { return d[r].Load() }
