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
// of [BufSize] buffers (frames at offset [Headroom]) and switches the whole
// batch: source learning, destination lookup, and a push of each frame to
// the transmit queue of its destination(s). Its writer pops up to
// BatchSize frames at a time from the port's own queue and calls Write. The
// trunk has the same pair (ReadTrunk, WriteTrunk) and its own queue.
//
// Forwarding within a fence: known unicast to a local port goes to that
// port's queue (turn-around, no encapsulation); known unicast to a remote
// MAC goes to the trunk with [TrunkMeta.Host] set to that host; broadcast,
// multicast and unknown unicast are flooded to every other local port of
// the fence and to the trunk with Host = [Broadcast]. A frame never goes
// back out of the port it came in on (a destination learned on the ingress
// port is dropped as "hairpin"). Frames from the trunk go only to local
// ports of the fence in their meta, never back to the trunk.
//
// Buffer ownership: a reader owns its batch. A large frame (over 1984
// bytes) with one destination is handed off: the buffer itself moves into
// the destination's queue and a fresh pooled buffer replaces it in the
// batch; a flood copies the frame into pooled buffers for all targets but
// the last, which gets the original. Frames up to 1984 bytes are always
// copied into 2 KiB pooled buffers, so that a queued 64-byte frame does not
// pin a 64 KiB read buffer. A queue owns the buffers in it; the writer owns what it pops
// until Write returns, then recycles them. Ports never keep buffers (see
// [Port]). No frame buffer is shared by two queues, so a port may use the
// headroom of every buffer it is given as scratch.
//
// Backpressure: drop and count. Queues are bounded ([PortConfig.QueueLen]
// frames); when a port's queue is full, frames for it are dropped and
// counted against that port ("queue_full"). A slow or stuck port therefore
// never slows the reader of another port. A Read or Write error detaches
// the port: it is closed, removed from its fence, its MACs are flushed, and
// [PortHandle.Done] is closed.
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
// to hosts); one table entry is about 100 bytes; a port holds BatchSize
// reader buffers of [BufSize] bytes plus its queued frames. Steady-state
// forwarding allocates nothing (the tests prove it).
//
// Counters and drop reasons (see [DropReason]) are exposed by
// [Switch.Status]; bridge tables by [Switch.FDB].
//
// vswitch imports nothing from this repository and nothing from gVisor.
package vswitch
