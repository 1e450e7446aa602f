// Package fence implements corral's uplink wire format (DESIGN.md section 3,
// normative): the MAC-in-MAC encapsulation that carries a fence's Ethernet
// frames between hosts, the two-fragment split and its reassembly, and the
// control-channel hello (DESIGN 4.5, 4.6). It imports only the standard
// library and does no I/O; package uplink moves the bytes.
//
// # Vocabulary
//
//   - inner frame: the VM's Ethernet frame, as the VM sent it (no FCS).
//   - encapsulated frame ([Frame]): outer Ethernet header, fence header,
//     inner frame. Over UDP the datagram payload is the whole encapsulated
//     frame, outer header included.
//   - outer MAC ([OuterMAC]): a host's uplink address, OUI · installation
//     ID · host ID.
//   - fence header ([Header]): version, fragment type, Seq, fence ID.
//   - fragment: one of the two pieces of an encapsulated frame too large
//     for the uplink ([First], [Last]); each is itself a [Frame].
//   - control payload: the inner part of a fence-0 frame; its first byte is
//     the message type ([ControlHello]).
//   - inbound: from the uplink towards the switch (Parse, Reassembler);
//     outbound: from the switch towards the uplink (Encap, Fragmenter).
//     Directions are relative to the switch, as in DESIGN 2.
//
// # Encapsulated frame (DESIGN 3.1)
//
//	 0      6      12     14     18
//	+------+------+------+------+----------------------------------+
//	| dst  | src  | type | fence| inner Ethernet frame             |
//	| (6)  | (6)  | (2)  | hdr 4| (dst, src, type, payload; no FCS)|
//	+------+------+------+------+----------------------------------+
//
// Fields:
//   - dst: the destination host's outer MAC, or ff:ff:ff:ff:ff:ff to flood.
//   - src: the sending host's outer MAC.
//   - type: the fence EtherType, default 0x88B5 ([EtherType]).
//
// Overhead 18 bytes ([EncapLen]); over UDP/IPv4 46, over UDP/IPv6 66.
//
// # Outer MAC (DESIGN 3.2)
//
//	 0               3        4                 6
//	+---------------+--------+-----------------+
//	| OUI (3)       | inst(1)| host ID (2, BE) |
//	+---------------+--------+-----------------+
//
// The OUI (default 02:fe:0c, [DefaultOUI]) must be locally administered
// unicast ([OUI.Valid]). Host IDs 0 and 0xFFFF are never assigned.
//
// # Fence header (DESIGN 3.3), network byte order
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---+---+-------+-----------------------------------------------+
//	|Ver| FT|  Seq  |                  Fence ID                     |
//	+---+---+-------+-----------------------------------------------+
//
// Fields:
//   - Ver, 2 bits: 1 ([Version]), or 2 ([SealedVersion]) on a sealed
//     uplink; a host accepts only the one it is configured for
//     ([Params].Sealed), others are dropped ([ErrVersion]).
//   - FT, 2 bits: 0 whole, 1 first fragment, 2 last fragment, 3 reserved
//     (dropped, [ErrFragType]).
//   - Seq, 4 bits: per sending host, incremented once per fragmented frame;
//     both fragments carry the same Seq; 0 for whole frames.
//   - Fence ID, 24 bits: 0 control channel, 1…0xFFFFFE fences, 0xFFFFFF
//     reserved ([ErrReservedFence]).
//
// For example 40 00 00 01 is a whole frame of fence 1; 53 00 00 01 and
// 63 00 00 01 are the first and last fragment (Seq 3) of a frame of fence 1.
//
// # Inbound checks
//
// [Params.Parse] validates a received frame once, at the edge; afterwards
// the accessors do no checks. It drops, each with its own sentinel error so
// that callers count drops by reason: too short ([ErrShort]), too long
// ([ErrTooBig]), wrong EtherType ([ErrEtherType]), outer source with another
// OUI ([ErrOUI]), installation ([ErrInstallation]) or host ID 0/0xFFFF
// ([ErrHostID]), outer destination neither broadcast nor of this
// installation ([ErrDst]), version ([ErrVersion]), fragment type 3
// ([ErrFragType]), fence 0xFFFFFF ([ErrReservedFence]), and inner frames
// shorter than 14 bytes ([ErrRunt]; a last fragment needs 1 byte). Whether
// this host has the fence is the caller's check.
//
// # Fragmentation (DESIGN 3.4)
//
// An encapsulated frame must fit the uplink: [MaxEncapLenRaw] (4 +
// len(inner) <= MTU) or [MaxEncapLenUDP] (18 + len(inner) <= path MTU - IP
// header - 8, 1472 for IPv4 at 1500). [Fragmenter.Split] cuts a larger one
// into exactly two fragments, each with the full outer header and fence
// header (FT=1 then FT=2, same Seq), the first as large as fits (exactly
// the limit), the rest in the last, however short: a last shorter than 60
// bytes is padded by a NIC on a raw uplink, and the reassembler trims that
// padding from IP frames by their length field. A 1500-byte inner frame over UDP/IPv4 at
// MTU 1500 becomes a 1472-byte first (1454 inner bytes) and a 64-byte last
// (46 inner bytes):
//
//	first: | outer hdr 14 | 5s 00 00 01 | inner[0:1454]    |   1472 bytes
//	last:  | outer hdr 14 | 6s 00 00 01 | inner[1454:1500] |     64 bytes
//
// [Reassembler] joins them by (outer source, fence ID, Seq). Bounds: at
// most [ReassemblyConfig.MaxPerHost] pending firsts per source (default
// 8) and MaxTotal in all (default 1024), oldest evicted; firsts expire
// after Timeout (default 1 s); a last without a first is dropped
// ([ErrOrphan]). It never glues pieces it can tell apart: a new first with
// the same source and Seq replaces the old; firsts more than 7 Seqs behind
// (or more than 3 ahead of) the source's newest first are evicted; a last
// longer than its first, and a joined IP frame whose IPv4/IPv6 length
// field disagrees with its length, are refused ([ErrMismatch]).
//
// # Sealed frames (version 2, DESIGN 3.6)
//
//	| outer (14) | 80|FT|Seq fence (4) | key ID (1) | counter (8, BE) | ciphertext of the inner frame | tag (16) |
//
// [Sealer] seals with AES-256-GCM ([NewAESGCM], default) or any 12-byte
// nonce, 16-byte tag AEAD the caller supplies (ChaCha20-Poly1305 from
// golang.org/x/crypto; this package imports only the standard library).
//
//   - Installation secret: 32 bytes ([SealKeyLen]).
//   - Key: per fence, [DeriveFenceKey]: HKDF-SHA256 (RFC 5869), IKM the
//     installation secret, empty salt, info "corral fence key v2" ·
//     installation ID · 24-bit fence ID, 32 bytes. Fence 0 (hellos) has a
//     key too. A fence may instead have its own 32-byte key (key_file),
//     shared only by its members.
//   - Key ID: names the key itself, not a slot ([KeyID]): the first byte
//     of HKDF-SHA256 with IKM the installation secret (for every key
//     derived from it) or the fence's own key, empty salt, info "corral
//     key id v2". Hosts in the middle of a rotation hold the old and the
//     new secret in either slot and still agree on what a frame's key ID
//     names. Two keys live for one fence must differ in ID (1 in 256
//     pairs of secrets do not: the configuration refuses them).
//   - Keys that open but never seal ([FenceKey].ReceiveOnly): a
//     previous secret during a rotation. A fence sends with its one
//     other key. [Sealer.SetKeys] replaces the keys atomically; the
//     counter and the replay windows carry on.
//   - Nonce: installation ID (1) · host ID (2) · 0x00 · counter (8), from
//     the sender's outer MAC. The counter is per sending host across all
//     its fences and keys, and only goes up: [SealConfig].Counter is the
//     caller's promise that it is above every counter this host ID ever
//     used ([Sealer.SetLimit] bounds it to what the caller has reserved;
//     package uplink's caller keeps a reserved high-water mark on disk and
//     starts above it and above the Unix time in ns).
//   - Additional data: the outer header and the fence header of the whole
//     frame (FT 0, Seq 0): the 18 bytes in front of key ID. FT and Seq are
//     left out because fragmentation rewrites them.
//   - Replay: per (sending host, fence), a 2048-bit sliding window (RFC
//     6479, as WireGuard): counters more than [ReplayWindow] below the
//     highest accepted, or seen before, are dropped ([ErrReplay]). The
//     windows live in a [ReplayTable] (one per receiver, bounded; a
//     window it evicts or forgets leaves a per-host floor, so old frames
//     stay refused). A window is made only for a frame that opened.
//
// Outbound: [Sealer.Encap] then [Fragmenter.Split] (the 25 bytes count
// against the MTU). Inbound: [Params.Parse] with Sealed set, then
// [Reassembler.Add], then [Sealer.Open] on the payload (the tag also
// refuses any glued fragments). Golden vectors: testdata/sealed.hex (key
// ID 1 set by hand), sealed-frag-first.hex and sealed-frag-last.hex, and
// sealed-hello.hex (the installation secret 00 01 … 1f, key ID 0xea).
//
// # Hello (control channel, fence 0, DESIGN 4.6)
//
// A hello is the control payload of a whole fence-0 frame. All integers
// are big-endian; fence IDs are 24-bit.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+---------------+-------------------------------+
//	|   Type = 1    |  Version = 1  |            Host ID            |  0
//	+---------------+---------------+-------------------------------+
//	|                     Instance (64 bits)                        |  4
//	|                                                               |
//	+---------------+---------------+-------------------------------+
//	|   Name len N  |  Flags (0)    |        Fence count F          | 12
//	+---------------+---------------+-------------------------------+
//	|      Gateway count G          |  Name (N bytes, UTF-8) ...    | 16
//	+-------------------------------+-------------------------------+
//	|  F fence IDs, 3 bytes each  |  G gateway fence IDs, 3 each  | 18+N
//	+-------------------------------+-------------------------------+
//
// Fields:
//   - Type: control message type, 1 = hello ([ControlHello]); other types
//     are reserved for later messages.
//   - Version: hello format version, 1 ([HelloVersion]). A later version
//     only appends fields after the gateway list, so decoders accept any
//     version >= 1 and ignore trailing bytes (also Ethernet padding).
//   - Host ID: the sender's host ID. Instance: random per process start,
//     tells two hosts claiming one outer MAC apart, and a restart.
//   - Flags: 0 on send, ignored on receive.
//   - Version 2 (a probe, [HelloProbeVersion]) appends Cookie (64 bits)
//     and Echo (64 bits) after the gateway list. An unsealed uplink that
//     learns peers answers a datagram from an address it has not
//     confirmed with a probe (no name, no fences) whose Cookie is bound
//     to that address and sender; the address becomes a peer only when a
//     probe from it echoes the cookie (return routability). A probe with
//     a Cookie is answered with a probe that echoes it. Probes announce
//     nothing (their lists are empty). Regular hellos stay version 1,
//     padded with zeros to at least [HelloProbeLen] bytes so that a probe
//     is never larger than the datagram it answers.
//   - Bounds: N <= 64 ([MaxHelloName]), F <= 256 ([MaxHelloFences]), G <=
//     64 ([MaxHelloGateways]); fence IDs 1…0xFFFFFE. A hello is at least
//     18 bytes (not a runt) and at most 1042 ([MaxHelloLen]), so it always
//     travels whole (1060 <= [MaxEncapLenUDP](1280, true)) and the
//     receiver need not reassemble control frames.
//
// # Allocation
//
// Parse, Encap, Split, Sealer.Encap/Open and Header/Frame accessors never
// allocate; the Reassembler allocates only to grow its per-slot buffers,
// Open once per new (host, fence) replay window. Hello.Decode
// allocates the name when it changes and grows the lists.
package fence
