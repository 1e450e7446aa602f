// Package offloadtest builds and checks the Ethernet/IP/TCP frames of the
// tests of package offload and of its users (tap, stack). Its checksum and
// header code is written independently of package offload, so that it can
// judge offload's output.
package offloadtest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// TCP flags (RFC 9293 section 3.1, RFC 3168 section 6.1).
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	CWR = 0x80
)

// EtherTypes, IP protocols and header sizes of the frames TCPFrame builds.
const (
	EtherIPv4    = 0x0800
	EtherIPv6    = 0x86dd
	ProtoTCP     = 6
	ProtoUDP     = 17
	EthLen       = 14
	IPv4Len      = 20 // TCPFrame's IPv4 header: no options
	IPv6Len      = 40
	TCPLen       = 32 // TCPFrame's TCP header: NOP, NOP, timestamps
	SrcPort      = 40000
	DstPort      = 5201
	AckNumber    = 0x01020304
	Window       = 502
	DefaultTTL   = 64
	DefaultIPv4F = 0x40 // DF
)

// MACs of the frames TCPFrame builds: destination MACB, source MACA.
var (
	MACA = [6]byte{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}
	MACB = [6]byte{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}
)

// Fields describe a frame TCPFrame builds: 192.0.2.1 → 192.0.2.2 or
// 2001:db8::1 → 2001:db8::2, port 40000 → 5201, ACK number 0x01020304,
// window 502, timestamps option.
type Fields struct {
	IPv6    bool
	ID      uint16 // IPv4 ID
	NoDF    bool   // IPv4 without DF
	Seq     uint32
	Flags   byte
	Payload []byte
	// Partial leaves the pseudo-header sum in the TCP checksum field, as
	// a kernel does with CHECKSUM_PARTIAL (virtio NEEDS_CSUM), instead of
	// the full checksum.
	Partial bool
}

// TCPFrame builds the Ethernet/IP/TCP frame f describes.
func TCPFrame(f Fields) []byte {
	b := append([]byte{}, MACB[:]...)
	b = append(b, MACA[:]...)
	tcpLen := TCPLen + len(f.Payload)
	var ip []byte
	if f.IPv6 {
		b = binary.BigEndian.AppendUint16(b, EtherIPv6)
		ip = []byte{0x60, 0x00, 0x00, 0x00, 0, 0, ProtoTCP, DefaultTTL}
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
		ip = append(ip, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
		ip = append(ip, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)
	} else {
		b = binary.BigEndian.AppendUint16(b, EtherIPv4)
		ip = []byte{0x45, 0, 0, 0, 0, 0, DefaultIPv4F, 0, DefaultTTL, ProtoTCP, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2}
		if f.NoDF {
			ip[6] = 0
		}
		binary.BigEndian.PutUint16(ip[2:], uint16(IPv4Len+tcpLen))
		binary.BigEndian.PutUint16(ip[4:], f.ID)
		binary.BigEndian.PutUint16(ip[10:], ^Sum(ip))
	}
	b = append(b, ip...)
	tcp := make([]byte, TCPLen)
	binary.BigEndian.PutUint16(tcp[0:], SrcPort)
	binary.BigEndian.PutUint16(tcp[2:], DstPort)
	binary.BigEndian.PutUint32(tcp[4:], f.Seq)
	binary.BigEndian.PutUint32(tcp[8:], AckNumber)
	tcp[12] = TCPLen / 4 << 4
	tcp[13] = f.Flags
	binary.BigEndian.PutUint16(tcp[14:], Window)
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9}) // NOP NOP TS
	tcp = append(tcp, f.Payload...)
	pseudo := Pseudo(ip, f.IPv6, ProtoTCP, len(tcp))
	if f.Partial {
		binary.BigEndian.PutUint16(tcp[16:], Sum(pseudo))
	} else {
		binary.BigEndian.PutUint16(tcp[16:], ^Sum(pseudo, tcp))
	}
	return append(b, tcp...)
}

// UDPFrame builds a minimal IPv4 UDP frame (port 53 → 53, empty payload).
func UDPFrame() []byte {
	f := append(append([]byte{}, MACB[:]...), MACA[:]...)
	f = append(f, 0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, ProtoUDP, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2)
	return append(f, 0, 53, 0, 53, 0, 8, 0, 0)
}

// Sum is a plain 16-bit one's complement sum of the concatenated parts
// (RFC 1071), folded, not complemented.
func Sum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

// Pseudo returns the pseudo-header bytes of an L4 header of length l4len
// and protocol proto behind the IP header ip.
func Pseudo(ip []byte, v6 bool, proto byte, l4len int) []byte {
	if v6 {
		return append(append([]byte{}, ip[8:40]...), 0, 0, byte(l4len>>8), byte(l4len), 0, 0, 0, proto)
	}
	return append(append([]byte{}, ip[12:20]...), 0, proto, byte(l4len>>8), byte(l4len))
}

// Check verifies an IPv4 or IPv6 frame carrying TCP or UDP, with up to
// two VLAN tags: the IPv4 header checksum, the IP length against the frame
// length, and the L4 checksum over an explicitly built pseudo-header.
func Check(f []byte) error {
	if len(f) < EthLen {
		return fmt.Errorf("frame of %d bytes", len(f))
	}
	for tags := 0; tags < 2 && (binary.BigEndian.Uint16(f[12:]) == 0x8100 || binary.BigEndian.Uint16(f[12:]) == 0x88a8); tags++ {
		if len(f) < EthLen+4 {
			return fmt.Errorf("truncated VLAN tag")
		}
		f = append(append([]byte{}, f[:12]...), f[16:]...) // drop the tag
	}
	var pseudo, l4 []byte
	var proto byte
	ip := f[EthLen:]
	switch et := binary.BigEndian.Uint16(f[12:]); et {
	case EtherIPv4:
		if len(ip) < IPv4Len {
			return fmt.Errorf("truncated IPv4 header")
		}
		hl := int(ip[0]&15) * 4
		if hl < IPv4Len || len(ip) < hl {
			return fmt.Errorf("IPv4 header length %d", hl)
		}
		if Sum(ip[:hl]) != 0xffff {
			return fmt.Errorf("bad IPv4 header checksum % x", ip[:hl])
		}
		if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			return fmt.Errorf("IPv4 total length %d, frame has %d", binary.BigEndian.Uint16(ip[2:]), len(ip))
		}
		proto, l4 = ip[9], ip[hl:]
		pseudo = Pseudo(ip, false, proto, len(l4))
	case EtherIPv6:
		if len(ip) < IPv6Len {
			return fmt.Errorf("truncated IPv6 header")
		}
		if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-IPv6Len {
			return fmt.Errorf("IPv6 payload length %d, frame has %d", binary.BigEndian.Uint16(ip[4:]), len(ip)-IPv6Len)
		}
		proto, l4 = ip[6], ip[IPv6Len:]
		pseudo = Pseudo(ip, true, proto, len(l4))
	default:
		return fmt.Errorf("ethertype %#x", et)
	}
	if Sum(pseudo, l4) != 0xffff {
		return fmt.Errorf("bad L4 (proto %d) checksum", proto)
	}
	return nil
}

// Payload returns n pseudo-random bytes, the same for the same seed.
func Payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// VLANTag inserts an 802.1Q (tpid 0x8100) or 802.1ad (0x88a8) tag with
// VLAN ID vid after the MAC addresses of a copy of f.
func VLANTag(f []byte, tpid, vid uint16) []byte {
	tag := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tpid), vid)
	return append(append(append([]byte{}, f[:12]...), tag...), f[12:]...)
}
