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
// # Who is a peer
//
// Unsealed, the UDP uplink accepts datagrams only from the addresses of
// Config.Peers (drop_not_peer), unless Config.LearnPeers is set or a
// multicast group is configured: then any address may become a peer,
// but only once it has proved that it receives what is sent to it
// (confirm.go): a datagram from an address not confirmed yet is not
// delivered and is answered with a probe (a version-2 hello carrying a
// cookie bound to the address, never larger than the datagram); the
// address becomes a peer when a probe from it echoes the cookie. Until
// then it gets no flood, no hello and no unicast, so a spoofed source
// draws nothing but probes and the amplification factor is at most 1.
// This still trusts the network in one way: a host that can receive at
// an address can inject frames from it. The raw uplink trusts its
// segment. With Config.Directory (gossip) the peers are the directory's
// hosts and frames come in only from the address each announced
// (sealed: from a peer whose frames open).
//
// # The sealed uplink (DESIGN.md 3.6)
//
// With Config.Seal, every frame (data frames, both fragments, hellos)
// goes out as a version-2 frame sealed with its fence's key
// (fence.Sealer; AES-256-GCM, or ChaCha20-Poly1305 from
// golang.org/x/crypto), and only version-2 frames that open are taken
// in. Outbound, WriteTrunk seals in place: the key ID and counter go
// into the headroom with the headers, the frame is encrypted where it
// is and the tag written after it when the caller's slice has 16 bytes
// of capacity left (the switch's buffers do), else the frame is sealed
// into the uplink's own buffer. A flood is sealed once and the same
// datagram goes to every peer. Fragmentation applies to the sealed frame:
// the 25 bytes count against the MTU (1429 inner bytes travel whole over
// UDP/IPv4 at MTU 1500; two fragments carry at most 2883). Inbound, a
// datagram is read so that its ciphertext lands at the switch's offset
// and is opened in place: no copy, no allocation. Keys are per fence;
// a frame of a fence this host holds no key of is dropped (drop_no_key),
// and one it has no send key of is not sent (drop_tx_no_key).
//
// Peers are authenticated before they are trusted: a peer is learned,
// and its UDP address changed, only from a frame that opened, and moved
// only by a frame newer than any other from it on that fence (a late or
// re-sourced copy moves nothing). Replays and old counters are dropped by
// a replay window per (sending host, fence) (drop_replay), frames that do
// not authenticate by their tag (drop_auth). Nothing is sent to an
// address whose frames have not opened, except hellos to Config.Peers
// and the group, which the configuration names: no flood goes to a
// configured address before a frame from it opened, and a forged or
// replayed datagram is never answered (no amplification). Status
// reports, per peer and fence, whether frames opened (PeerKey: "ok",
// "no key", "failing"), and the key IDs held (SealStatus), never a key.
//
// Keys change at run time with SetKeys (cmd/corral's reload, on SIGHUP),
// atomically: every frame is sealed or opened with the old or the new
// set; the send counter and the replay windows carry on. The send
// counter starts at SealConfig.Counter and never passes SealConfig.Limit;
// the uplink asks SealConfig.Reserve for more while ReserveMargin
// counters remain (cmd/corral keeps the reserved high-water mark on
// disk, so a counter is never used twice, across restarts too).
//
// Logs a remote host can cause (peer learned, moved, restarted, hello)
// are rate-limited (32 per 30 s, then a summary); bad datagrams are
// never logged one by one: drops are summarized by reason every 30 s.
//
// # Capture
//
// Capture copies the outer frames, as they are on the wire (sealed
// stays sealed), received and sent, for corral capture --uplink; off, it
// costs one atomic load per batch.
//
// Flooding (WriteTrunk with host ff:ff:ff:ff:ff:ff) is head-end
// replication: one copy to every peer whose hello names the fence, and to
// every peer whose hello is not known yet (and every static peer not yet
// heard from); or one send to the multicast group when one is configured.
// On the raw uplink a flood is one broadcast when every known peer wants
// it, else unicast copies.
//
// Directory (gossip, DESIGN.md 4.7): with Config.Directory the uplink
// sends no hellos and expires nobody by silence; [Uplink.SetDirectory]
// hands it each new view (cmd/corral wires *gossip.Snapshot, which
// satisfies [Directory]). The host table is rebuilt from the view: the
// hosts of the local fences, at their announced data addresses, with their
// fences and gateway claims (the gateway rule below applies to them); a
// host that leaves the view is removed and Config.OnPeerDown called. A
// flood whose inner destination is a unicast MAC the view places on a
// host goes to that host only (tx_directory_unicast). The last view stays
// in force while the control plane is partitioned.
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
// offset-fence.EncapLen (offset-fence.SealedHeaderLen sealed), so whole
// inner frames land at bufs[i][offset:] without a copy; WriteTrunk writes
// the headers into the headroom (and, sealed, the tag into the 16 bytes
// after the frame when the slice's capacity has them).
package uplink
