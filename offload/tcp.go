package offload

import (
	"encoding/binary"
	"errors"
)

// Header sizes and limits.
const (
	// EthernetHeaderLen is the length of an untagged Ethernet header.
	EthernetHeaderLen = 14
	// VLANTagLen is the length of one 802.1Q or 802.1ad tag.
	VLANTagLen = 4
	// MaxVLANTags is how many VLAN tags a super-frame may carry.
	MaxVLANTags = 2
	// MaxIPLen bounds an IPv4 total length and an IPv6 payload length: they
	// are 16-bit fields.
	MaxIPLen = 65535
	// MaxHeadersLen is the longest Ethernet (with tags), IP and TCP header
	// sequence: the room [Coalesce] needs for a super-frame's headers.
	MaxHeadersLen = EthernetHeaderLen + MaxVLANTags*VLANTagLen + ipv4MaxHeaderLen + tcpMaxHeaderLen
	// MaxFrameLen is the longest super-frame: two VLAN tags and an IPv6
	// packet whose payload length is MaxIPLen.
	MaxFrameLen = EthernetHeaderLen + MaxVLANTags*VLANTagLen + ipv6HeaderLen + MaxIPLen
)

// Offsets and values of the header fields this package reads or writes
// (IEEE 802.3 and 802.1Q, RFC 791, RFC 8200, RFC 9293).
const (
	ethTypeOffset  = 12
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100 // 802.1Q C-tag
	etherTypeQinQ  = 0x88a8 // 802.1ad S-tag
	vlanTypeOffset = 2      // the inner EtherType, within a tag

	ipv4MinHeaderLen  = 20
	ipv4MaxHeaderLen  = 60
	ipv4TOSOffset     = 1
	ipv4TotalLenOff   = 2
	ipv4IDOffset      = 4
	ipv4FlagsOffset   = 6 // 3 bits of flags, 13 bits of fragment offset
	ipv4TTLOffset     = 8
	ipv4ProtoOffset   = 9
	ipv4CsumOffset    = 10
	ipv4AddrsOffset   = 12 // source and destination, 8 bytes
	ipv4FlagDF        = 0x40
	ipv4FragMask      = 0x3fff // MF and the fragment offset
	ipv6HeaderLen     = 40
	ipv6PayloadLenOff = 4
	ipv6NextHdrOffset = 6
	ipv6HopLimitOff   = 7
	ipv6AddrsOffset   = 8 // source and destination, 32 bytes
	ipv6FlowLen       = 4 // version, traffic class, flow label
	protoTCP          = 6

	tcpMinHeaderLen  = 20
	tcpMaxHeaderLen  = 60
	tcpPortsLen      = 4 // source and destination ports
	tcpSeqOffset     = 4
	tcpAckOffset     = 8
	tcpDataOffOffset = 12 // 4 bits: header length in 32-bit words
	tcpFlagsOffset   = 13
	tcpWindowOffset  = 14
	tcpCsumOffset    = 16
	tcpUrgOffset     = 18

	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpCWR = 0x80
)

// TCPChecksumOffset is the offset of the checksum within the TCP header:
// the csum_offset of a virtio_net_hdr or skb that asks for its completion.
const TCPChecksumOffset = tcpCsumOffset

// Errors. Frames that produce them are to be dropped and counted.
var (
	// ErrMalformed: a super-frame that is not Ethernet/IP/TCP as the
	// package doc describes, or an MSS of zero.
	ErrMalformed = errors.New("offload: malformed TCP super-frame")
	// ErrSegment: a segment index out of range, or a super-frame that is
	// not the one its Super describes.
	ErrSegment = errors.New("offload: no such segment")
	// ErrChecksumRange: a checksum start or offset outside the frame.
	ErrChecksumRange = errors.New("offload: checksum start or offset out of range")
)

// Headers locates the headers of an Ethernet frame carrying TCP.
type Headers struct {
	IPv6   bool
	IPOff  int // offset of the IP header: 14, plus 4 per VLAN tag
	IPLen  int // IP header length, with IPv4 options
	TCPLen int // TCP header length, with options
}

// TCPOff is the offset of the TCP header.
func (h Headers) TCPOff() int { return h.IPOff + h.IPLen }

// Len is the length of all headers: the offset of the TCP payload.
func (h Headers) Len() int { return h.IPOff + h.IPLen + h.TCPLen }

// ParseTCP locates the headers of an Ethernet frame with up to two VLAN
// tags carrying IPv4 (options allowed, no fragment) or IPv6 (no extension
// header) and TCP, whose IP length field matches the frame length exactly.
// ok is false for any other frame.
func ParseTCP(f []byte) (h Headers, ok bool) { return parseTCP(f, true) }

// parseTCP is ParseTCP; strict refuses VLAN tags and IPv4 options (the
// frames Coalesce merges).
func parseTCP(f []byte, lenient bool) (Headers, bool) {
	var h Headers
	h.IPOff = EthernetHeaderLen
	if len(f) < EthernetHeaderLen {
		return h, false
	}
	et := binary.BigEndian.Uint16(f[ethTypeOffset:])
	for tags := 0; lenient && tags < MaxVLANTags && (et == etherTypeVLAN || et == etherTypeQinQ); tags++ {
		if len(f) < h.IPOff+VLANTagLen {
			return h, false
		}
		et = binary.BigEndian.Uint16(f[h.IPOff+vlanTypeOffset:])
		h.IPOff += VLANTagLen
	}
	if len(f) < h.IPOff+ipv4MinHeaderLen {
		return h, false
	}
	ip := f[h.IPOff:]
	switch et {
	case etherTypeIPv4:
		if ip[0]>>4 != 4 || ip[ipv4ProtoOffset] != protoTCP {
			return h, false
		}
		h.IPLen = int(ip[0]&0x0f) * 4
		if h.IPLen < ipv4MinHeaderLen || (!lenient && h.IPLen != ipv4MinHeaderLen) {
			return h, false
		}
		if binary.BigEndian.Uint16(ip[ipv4FlagsOffset:])&ipv4FragMask != 0 {
			return h, false
		}
		if int(binary.BigEndian.Uint16(ip[ipv4TotalLenOff:])) != len(ip) {
			return h, false
		}
	case etherTypeIPv6:
		h.IPv6 = true
		h.IPLen = ipv6HeaderLen
		if len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 || ip[ipv6NextHdrOffset] != protoTCP {
			return h, false
		}
		if int(binary.BigEndian.Uint16(ip[ipv6PayloadLenOff:])) != len(ip)-ipv6HeaderLen {
			return h, false
		}
	default:
		return h, false
	}
	tcp := h.TCPOff()
	if len(f) < tcp+tcpMinHeaderLen {
		return h, false
	}
	h.TCPLen = int(f[tcp+tcpDataOffOffset]>>4) * 4
	if h.TCPLen < tcpMinHeaderLen || len(f) < tcp+h.TCPLen {
		return h, false
	}
	return h, true
}
