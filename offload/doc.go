// Package offload does in software what a NIC's TCP offloads do in
// hardware, on plain Ethernet frames in byte slices: it cuts a TCP
// super-frame into MSS-sized segments (TSO/GSO, [Super.Segment],
// [Pending]), merges runs of consecutive TCP segments of one flow into one
// super-frame (GRO, [Coalesce]), and completes checksums left partial
// ([CompleteChecksum]).
//
// It is the one segmenter and coalescer of corral: package tap uses it for
// the virtio-net super-frames of a TAP opened with IFF_VNET_HDR, and
// package stack for the large TCP segments its gVisor stack sends (host
// GSO), after copying them out of gVisor's packet buffers. It imports only
// the standard library and allocates nothing per frame.
//
// Vocabulary. A super-frame is one Ethernet frame carrying IPv4 (no
// fragment) or IPv6 (no extension header) and TCP whose payload may be
// longer than the MSS it is to be cut at; a segment is one of the frames
// cut from it. Both carry at most two VLAN tags (802.1Q, 802.1ad) and IPv4 options
// when cutting; coalescing takes only untagged frames without IPv4
// options. IP length fields must match the frame exactly (no Ethernet
// padding).
//
// # Segmentation rules
//
// Every segment gets its own IPv4 total length, ID (the super-frame's plus
// the segment's index) and header checksum, or IPv6 payload length, its own
// TCP sequence number and a full TCP checksum. TCP flags follow what Linux
// does in tcp_gso_segment (net/ipv4/tcp_offload.c):
//   - FIN and PSH only on the last segment: RFC 9293 section 3.1 places
//     FIN at the end of the data (the sequence number after the last
//     octet), and PSH asks the receiver to deliver everything up to the
//     end of the pushed data, which is the end of the super-frame.
//   - CWR only on the first segment: RFC 3168 section 6.1.2 sets CWR on
//     the first new data packet after the congestion window was reduced,
//     once. A receiver stops setting ECE when it sees CWR (section
//     6.1.3), so CWR repeated on later segments could cancel the ECE
//     answer to a CE mark that arrived in between and lose a congestion
//     signal.
//
// Every other header field is copied from the super-frame.
//
// # Coalescing rules
//
// [Coalesce] merges what the segmentation rules can cut back: consecutive
// frames of one flow with identical Ethernet, IP and TCP headers except the
// IPv4 ID (which must count up by one unless DF is set) and the lengths,
// contiguous sequence numbers, only ACK set (PSH allowed on the last),
// equal ACK number, window and options, equal payload sizes but a shorter
// last, and at most 65535 bytes of IP. Cutting the super-frame it builds at
// its MSS gives back the frames (but the IPv4 ID of frames with DF set).
package offload
