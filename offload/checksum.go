package offload

import "encoding/binary"

// The Internet checksum (RFC 1071): a one's complement sum of 16-bit
// words, folded and complemented.

// csumAdd adds b to a one's complement running sum (not folded). Only the
// last slice added to a sum may have an odd length.
func csumAdd(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// csumFold folds a running sum to 16 bits (not complemented).
func csumFold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return uint16(sum)
}

// pseudoSum is the running sum of the TCP pseudo-header (RFC 9293 section
// 3.1, RFC 8200 section 8.1) for the IP header ip and a TCP length.
func pseudoSum(ip []byte, v6 bool, l4len int) uint64 {
	var sum uint64
	if v6 {
		sum = csumAdd(0, ip[ipv6AddrsOffset:ipv6AddrsOffset+32])
	} else {
		sum = csumAdd(0, ip[ipv4AddrsOffset:ipv4AddrsOffset+8])
	}
	return sum + protoTCP + uint64(l4len)
}

// setIPv4Checksum sets the header checksum of the IPv4 header ip (header
// length hl).
func setIPv4Checksum(ip []byte, hl int) {
	ip[ipv4CsumOffset], ip[ipv4CsumOffset+1] = 0, 0
	binary.BigEndian.PutUint16(ip[ipv4CsumOffset:], ^csumFold(csumAdd(0, ip[:hl])))
}

// CompleteChecksum completes a checksum left partial, as a NIC does for
// CHECKSUM_PARTIAL (virtio_net_hdr NEEDS_CSUM): the field at start+off
// holds the pseudo-header sum; the one's complement sum of frame[start:]
// goes, complemented, into it. start is counted from the beginning of the
// Ethernet frame and must lie past its header. A result of 0 is sent as
// 0xffff, as Linux does (CSUM_MANGLED_0): 0 means "no checksum" in UDP.
func CompleteChecksum(frame []byte, start, off int) error {
	if start < EthernetHeaderLen || off < 0 || start+off+2 > len(frame) {
		return ErrChecksumRange
	}
	c := ^csumFold(csumAdd(0, frame[start:]))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[start+off:], c)
	return nil
}
