// Package tap opens Linux TAP devices, optionally inside a named network
// namespace, as [vswitch.Port] values: `corral plug --tap` uses one to
// connect a namespace (a test host, a container) to a switch.
//
// Inbound frames are those the kernel sends out of the TAP interface (the
// namespace's stack transmitting); outbound frames are those Write hands
// to the kernel as if received on the interface.
//
// *Device implements vswitch.Port. On the Port side every frame is a plain
// Ethernet frame of at most the MTU plus its header, with or without
// offloads.
//
// With Config.Offload (`corral plug`, on unless --offload=false) the device is opened with
// IFF_VNET_HDR and TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6, so every frame comes
// with a virtio_net_hdr, and package offload (shared with package stack)
// does the work:
//   - Read completes checksums the kernel left partial (NEEDS_CSUM) and
//     cuts TCP super-frames (GSO, up to 64 KiB) into MTU-sized segments
//     with their own IP length/ID/checksum, sequence numbers, flags (FIN
//     and PSH on the last, CWR on the first) and TCP checksums, in the
//     consecutive bufs of one Read; segments that do not fit are kept for
//     the next Read. One read(2) brings up to ~45 frames.
//   - Write merges each run of adjacent TCP segments of one flow (same
//     headers but IP ID/length, contiguous sequence numbers, ACK only
//     with PSH allowed on the last, equal ACK number, window and options,
//     equal payload size but a shorter last, at most 64 KiB of IP) into one
//     super-frame (GSO_TCPV4/6, NEEDS_CSUM with the pseudo-header sum) and
//     writes it with one writev(2) without copying payloads; every other
//     frame goes alone behind a zero virtio_net_hdr written in its
//     headroom. Segments of different flows interleaved in one batch are
//     not merged (order is kept).
//
// Offload is off by default.
package tap
