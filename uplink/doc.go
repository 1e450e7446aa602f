// Package uplink carries fenced frames between corral hosts (DESIGN.md
// sections 3.5, 4.5 and 4.6).
//
// An [Uplink] is the switch's trunk (*Uplink implements vswitch.Trunk): it
// encapsulates the inner frames the switch hands it with the outer
// Ethernet header and the fence header (package fence), fragments them
// when they do not fit the uplink, and sends them over one transport:
//
//   - UDP: one socket (IPv4, IPv6 or dual stack, default port 7407), read
//     and written in batches (sendmmsg through golang.org/x/net; on Linux
//     recvmmsg directly, which decodes source addresses without allocating).
//     Where the kernel has them, UDP GSO (UDP_SEGMENT: a run of equal-sized
//     datagrams to one peer is one sendmmsg entry) and GRO (UDP_GRO: the
//     kernel hands over several datagrams of one sender in one buffer,
//     split here, one copy per frame) are used, as in wireguard-go.
//     The datagram payload is the whole encapsulated frame. Peers are
//     static addresses, addresses learned from datagrams, and optionally a
//     multicast group (joined on listen; floods and hellos go to it once).
//   - raw: an AF_PACKET SOCK_RAW socket bound to one interface and the
//     fence EtherType (needs CAP_NET_RAW): true MAC-in-MAC on one L2
//     segment; the outer destination is the peer's outer MAC, or broadcast.
//     Read with recvmmsg and written with sendmmsg (one system call per
//     batch, no allocation); the outer destination is written into the
//     frame, so a frame sent to several peers ends one sendmmsg before its
//     next copy.
//
// Batches: BatchSize is 256 (DefaultBatchSize). The switch reads the trunk
// 64 frames at a time and hands WriteTrunk up to 256 queued frames, which
// go out in as few sendmmsg calls as the kernel takes (on UDP with GSO, up
// to four 64-datagram trains per call). Counters and the sender's host
// table entry are looked up and updated once per batch (per run of frames
// of one peer), not per frame.
//
// Vocabulary: "outbound" is from the switch to the network (WriteTrunk),
// "inbound" from the network to the switch (ReadTrunk). A "peer" is a
// remote host, known by its outer MAC; the "host table" maps outer MACs to
// peers (their UDP address, their hello).
//
// Inbound, every frame is checked with fence.Params.Parse and dropped,
// counted by reason, when invalid; frames whose outer source is our own
// MAC are dropped too (and a hello carrying our MAC from another host is
// logged loudly as a duplicate outer MAC). Fragments are reassembled with
// fence.Reassembler. A frame's outer source and UDP source address are
// learned into the host table.
//
// Flooding (WriteTrunk with host ff:ff:ff:ff:ff:ff) is head-end
// replication: one copy to every peer whose hello names the fence, and to
// every peer whose hello is not known yet (and every static peer not yet
// heard from); or one send to the multicast group when one is configured.
// On the raw uplink a flood is one broadcast when every known peer wants
// it, else unicast copies.
//
// Control channel (fence 0): every HelloInterval, and at once when the
// local fence list changes or a new peer appears, the uplink sends a
// fence.Hello (version, host ID, host name, fences with local ports,
// gateway fences; the payload format is documented in package fence) to
// every peer, or the group, or (raw) as a broadcast. A peer silent for
// three intervals is removed from the host table and Config.OnPeerDown is
// called with its outer MAC so the switch flushes its MACs; so is a peer
// whose hello shows a new instance (it restarted). Expiry counts this
// host's interval: every host of an installation should use the same one.
// A hello carrying our own outer MAC with another instance is a duplicate
// outer MAC: logged as an error (rate-limited) and answered with our hello
// so that the other host reports it too.
//
// Gateway conflicts (DESIGN.md 6: two hosts serving one fence is detected
// by hellos and refused): Config.GatewayFences lists the fences whose
// gateway this host is configured to serve. When a peer's hello claims one
// of them, the tie-break that every host computes alike decides: the host
// with the lower outer MAC (byte-wise; within an installation, the lower
// host ID) keeps serving, the other yields. Both log the conflict once at
// error level ("two hosts serve the gateway of one fence", with the fence,
// the other host and the action) and count gateway_conflict. The yielding
// host drops the fence from its hellos at once (they announce
// GatewayFences minus the yielded fences) and gets
// Config.OnGatewayConflict(fence, peer, true), on which it must detach its
// gateway; the winner gets OnGatewayConflict(fence, peer, false). A yielded
// fence is listed in Status.GatewayYields. When no known peer that wins
// over this host claims the fence any more (the winner expired after three
// silent hello intervals, or stopped announcing it), the yield ends:
// logged at warn level, Config.OnGatewayResume(fence) is called and the
// fence is announced again, so a standby gateway takes over from a dead
// one. Hooks run on the control goroutine, in order; between a conflict's
// first hello and the yield both hosts serve for at most a poll interval
// (100 ms) plus a round trip.
//
// Buffers: the uplink never keeps a buffer the switch passes after the call
// returns. ReadTrunk receives each datagram into bufs[i] at
// offset-fence.EncapLen, so whole inner frames land at bufs[i][offset:]
// without a copy; WriteTrunk writes the headers into the headroom.
package uplink
