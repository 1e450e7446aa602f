package tap

import (
	"encoding/binary"
	"errors"

	"github.com/corralnet/corral/offload"
)

// This file holds the pure parts of the TAP offloads (Config.Offload):
// the virtio_net_hdr the kernel puts in front of every frame on a TAP
// opened with IFF_VNET_HDR, and its translation to and from package
// offload, which completes checksums, cuts TCP super-frames (TSO, kernel →
// us) into MTU-sized frames and coalesces consecutive TCP segments into
// one super-frame (GRO, us → kernel). The technique is the one
// wireguard-go uses on its TUN device.

// VnetHdrLen is the size of struct virtio_net_hdr (no num_buffers).
const VnetHdrLen = 10

// virtio_net_hdr flags and gso_type values (linux/virtio_net.h).
const (
	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2

	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3
	vnetGSOTCPv6 = 4
	vnetGSOECN   = 0x80
)

// Errors of the offload decoder; frames that produce them are dropped
// and counted, never passed on.
var (
	ErrVnetHdr   = errors.New("tap: bad virtio_net_hdr")
	ErrGSOType   = errors.New("tap: unsupported GSO type")
	ErrGSOPacket = errors.New("tap: malformed GSO packet")
)

// vnetHdr is a decoded struct virtio_net_hdr (little-endian fields; the
// TAP uses the host byte order, which is little-endian on every platform
// this is built for).
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	_ = b[VnetHdrLen-1]
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.LittleEndian.Uint16(b[2:]),
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

func (h vnetHdr) encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// completeCsum does what NEEDS_CSUM asks (offload.CompleteChecksum):
// csum_start and csum_offset must lie inside frame.
func completeCsum(frame []byte, start, off int) error {
	if offload.CompleteChecksum(frame, start, off) != nil {
		return ErrVnetHdr
	}
	return nil
}

// parseGSO checks a super-frame f (without its virtio_net_hdr) against h:
// a TCP GSO type (ECN or not) whose IP version matches the frame, a
// gso_size and a payload.
func parseGSO(f []byte, h vnetHdr) (offload.Super, error) {
	typ := h.gsoType &^ vnetGSOECN
	if typ != vnetGSOTCPv4 && typ != vnetGSOTCPv6 {
		return offload.Super{}, ErrGSOType
	}
	s, err := offload.ParseSuper(f, typ == vnetGSOTCPv6, int(h.gsoSize))
	if err != nil || s.Payload == 0 {
		return offload.Super{}, ErrGSOPacket
	}
	return s, nil
}

// superHdrMax is room for a virtio_net_hdr and the Ethernet, IP and TCP
// headers of a coalesced super-frame.
const superHdrMax = VnetHdrLen + offload.MaxHeadersLen

// coalesceRun finds how many frames, starting at frames[0], can go to the
// kernel as one TCP super-frame (offload.Coalesce) and returns n >= 1.
// When n > 1 it writes the virtio_net_hdr (GSO_TCPV4/6, NEEDS_CSUM) and the
// super-frame's headers into hdr (at least superHdrMax long) and returns
// their length hl: the super-frame is hdr[:hl] followed by
// frames[k][hl-VnetHdrLen:] for k < n.
func coalesceRun(frames [][]byte, hdr []byte) (n, hl int) {
	n, c := offload.Coalesce(frames, hdr[VnetHdrLen:])
	if n == 1 {
		return 1, 0
	}
	h := vnetHdr{
		flags:      vnetFlagNeedsCsum,
		gsoType:    vnetGSOTCPv4,
		hdrLen:     uint16(c.HdrLen),
		gsoSize:    uint16(c.MSS),
		csumStart:  uint16(c.TCPOff),
		csumOffset: offload.TCPChecksumOffset,
	}
	if c.IPv6 {
		h.gsoType = vnetGSOTCPv6
	}
	h.encode(hdr)
	return n, VnetHdrLen + c.HdrLen
}
