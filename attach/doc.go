// Package attach implements the attachment transports of DESIGN.md section
// 5, each of which yields [vswitch.Port] values:
//
//   - unix, tcp and vsock streams, and stdio: a 4-byte big-endian length
//     before every frame ([NewStreamPort], [NewStdioPort]). Read fills a
//     256 KiB staging buffer, borrowed for that Read, with one read(2) and
//     returns every complete frame in it; between reads a port keeps only
//     a frame it has started, in a pool buffer of that frame's size, and
//     nothing when idle. Write puts each length into the frame's headroom
//     and sends the batch with one writev(2). A length of 0 or above the
//     port's maximum frame is a [FrameLengthError] that ends that port
//     only; a frame started and not finished within [Options].FrameTimeout
//     (default 30 s) ends it with [ErrFrameTimeout].
//   - unixgram and udp: one frame per datagram and, on a listener, a port
//     per peer address. One socket serves every peer: a reader goroutine
//     receives batches with recvmmsg(2) and queues each datagram to its
//     peer's port through a bounded queue (full: dropped and counted);
//     a peer's Write is one sendmmsg(2). A unixgram peer's leading "VFKT"
//     datagram (vfkit's greeting) is consumed. Peers silent for
//     [Options].PeerIdle (default 5 minutes) lose their port; their next
//     datagram makes a new one. Datagram listeners also have a
//     Stats() [DgramStats] method with their drop counters.
//   - unixpacket (SOCK_SEQPACKET): one frame per packet, recvmmsg and
//     sendmmsg straight into and out of the switch's buffers.
//
// Every port implements [vswitch.ReadWaiter], so the switch holds no
// frame buffers for an idle port. A listener holds at most
// [Options].MaxPorts ports (default 1,024): beyond it, a connection is
// closed at once and a datagram from a new peer dropped before anything
// is made for it. [Listener].PortStats counts both, and frame timeouts
// and expired peers.
//
// [Listen] binds an address and reports each new port to an [OnPort]
// callback; [Dial] connects and re-dials with exponential backoff when
// the port ends; [DialOnce] and [Splice] serve `corral plug`.
//
// Unix socket files are created with [Options].SocketMode (default 0600),
// the mode set on the socket before bind so the file never exists with
// wider permissions; the parent directory is created 0700 when missing; a
// stale socket file (nobody accepts on it) is replaced, a live one is
// [ErrInUse]; Close removes the file only if it is still the one it
// created.
//
// Directions: inbound is from the attached VM to the switch (what a
// port's Read returns), outbound from the switch to the VM (Write).
//
// No port allocates per frame in steady state; tests prove it with
// testing.AllocsPerRun.
package attach
