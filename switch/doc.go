// Package vswitch is corral's switch core: ports, per-fence bridge tables
// with learning and aging, forwarding, port security, transmit queues and
// counters (DESIGN.md sections 2 and 4).
//
// The folder is switch/ (the layout's name), but switch is a Go keyword, so
// the package is vswitch; import it as
//
//	vswitch "github.com/corralnet/corral/switch"
//
// Vocabulary. A fence is a private Ethernet network with a 24-bit ID; every
// [Port] belongs to exactly one fence, named by its configuration, never read
// from a frame. A [Trunk] is the uplink to other hosts; it carries frames of
// every fence, tagged with the fence ID. Directions are relative to the
// switch: inbound frames enter the switch from a port or trunk (Read),
// outbound frames leave it (Write).
//
// # Data path
//
// Every attached port has two goroutines. Its reader calls Read into a batch
// of [BufSize] buffers (frames at offset [Headroom]; at most 64 buffers,
// whatever the port's BatchSize) and switches the whole batch: source
// learning and destination lookup stage (destination, frame) pairs; then
// each destination is served once per batch. Its writer pops up to
// BatchSize (at most 1024) frames at a time from the port's own queue and
// calls Write. The trunk has the same pair (ReadTrunk, WriteTrunk) and its
// own queue.
//
// Direct writes: a port that also implements [TryWriter] (a Write that can
// be tried without blocking) gets its frames written by the reader that
// switched them, straight from the reader's buffers, when its transmit
// lock is free (taken with TryLock; the writer holds it from pop to the end
// of Write) and its queue is empty. What TryWrite does not take is queued,
// in order, still under the lock. This saves the queue, a copy and two
// goroutine wake-ups per hop when the destination keeps up, and changes
// nothing when it does not: a port whose writer is busy or blocked, or
// whose queue holds frames, is never written directly, so per-source order
// is kept and a stuck port never blocks a reader.
//
// Forwarding within a fence: known unicast to a local port goes to that
// port (turn-around, no encapsulation); known unicast to a remote
// MAC goes to the trunk with that host's outer MAC as its host (see
// [Trunk]); broadcast, multicast and unknown unicast are flooded to every
// other local port of the fence and to the trunk with host [Broadcast]. A
// frame never goes back out of the port it came in on (a destination
// learned on the ingress port is dropped as "hairpin"). Frames from the
// trunk go only to local ports of the fence they were read with, never
// back to the trunk.
//
// Buffer ownership: a reader owns its batch; a direct write only reads it
// (several ports may be given the same buffer one after the other; each may
// use the headroom as scratch). A queued frame gets a buffer of its own: a
// large frame (over 1984 bytes) whose last target this is is handed off
// (the buffer moves into the queue and a fresh pooled buffer replaces it in
// the batch); every other queued frame is copied, frames up to 1984 bytes
// into 2 KiB pooled buffers, so that a queued 64-byte frame does not pin a
// 64 KiB read buffer. A queue owns the buffers in it; the writer owns what
// it pops until Write returns, then recycles them. Ports never keep buffers
// (see [Port]). No queued buffer is shared by two queues.
//
// Backpressure: drop and count. Queues are bounded in frames
// ([PortConfig.QueueLen], default [DefaultQueueFrames] = 4096) and in the
// memory of their buffers ([PortConfig.QueueBytes], default 8 MiB); when a
// port's queue is full, frames for it are dropped (before they are copied)
// and counted against that port ("queue_full"). Before a queue's own
// bounds, a switch-wide budget bounds the buffer bytes of all queues
// together ([Config.MaxQueuedBytes], default 256 MiB; "global_queue_full"),
// so any number of stuck ports pin at most that. A slow or stuck port
// therefore never slows the reader of another port.
//
// Storm control: each port may flood (broadcast, multicast, unknown
// unicast) at most [FenceConfig.BUMRate] frames per second (a token bucket
// its reader owns; default [DefaultBUMRate]); the excess is dropped
// ("storm") and the port is not read again until its bucket has refilled
// half a burst (1–100 ms), so a storm blocks the storming VM's writes
// rather than spending the switch's CPU. Frames from the trunk are not
// limited: each host limits its own ports.
//
// Big tables: a fence lists its MACs per place (port or remote host), so
// that flushing a port or host, aging and [Switch.FDBPage] hold its lock for
// at most 2048 entries at a time. A Read, Write or
// TryWrite error detaches the port: it is closed, removed from its fence,
// its MACs are flushed, and [PortHandle.Done] is closed.
//
// Learning and security: each fence has a bridge table (inner MAC → local
// port, or remote host's outer MAC) read under a read lock taken once per
// batch; a refresh is an atomic timestamp store on the entry; new and moved
// MACs are collected during the batch and written under the write lock at
// its end, so a move takes effect with the first batch from the new place.
// Multicast and zero source MACs are dropped. A port pinned to a MAC drops
// other sources; a port may learn at most [PortConfig.MaxMACs] MACs (a
// frame whose new source would exceed it is dropped); a full fence table
// refuses new entries without evicting live ones, counts the refusal and
// still forwards the frame. A janitor goroutine ages entries out.
//
// Costs: lookup is O(1) in the table size (a Go map per fence); a flood is
// O(ports in the fence) copies plus one trunk frame (the trunk replicates
// to hosts); one table entry is about 100 bytes. Memory per port: while
// a batch is in flight, the reader holds min(BatchSize, 64) buffers of
// [BufSize] bytes (64 × 65600 B ≈ 4.2 MiB; the frozen Port contract
// requires every Read buffer to hold a maximum frame) and a stash of up
// to 32 small and 32 large free buffers; a port that implements
// [ReadWaiter] (every attach port) gives them all back to the shared pool
// before it waits, so an idle port holds none (other ports and the trunk
// keep their batch). The queue ring grows with use up to 40 B per slot
// (160 KiB by default) and is dropped when the queue drains; its queued
// frames take at most QueueBytes (8 MiB by default). An idle attach port
// costs about 40 KiB in all (README, "Limits").
// Locks: one fence read lock per batch, one queue lock (or one transmit
// try-lock and direct write) per destination per batch, one pool lock per
// batch or per 32 pooled buffers; none per frame. Steady-state forwarding
// allocates nothing (the tests prove it, for the direct path too). A direct
// write runs the destination's send on the sender's reader goroutine: a
// fast flow then uses one goroutine instead of two (fewer wake-ups, less
// parallelism); the round trip between two stream ports costs 4 socket
// hops instead of 2, so it stays above twice that of one bare socket.
//
// Counters and drop reasons (see [DropReason]) are exposed by
// [Switch.Status]; bridge tables by [Switch.FDB].
//
// vswitch imports nothing from this repository and nothing from gVisor.
package vswitch
