package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Sizes and field offsets of the format (see the package doc).
const (
	FileHeaderLen   = 24
	RecordHeaderLen = 16

	fileOffsetMagic    = 0
	fileOffsetMajor    = 4
	fileOffsetMinor    = 6
	fileOffsetSnaplen  = 16
	fileOffsetLinkType = 20

	recordOffsetSec     = 0
	recordOffsetFrac    = 4
	recordOffsetCapLen  = 8
	recordOffsetOrigLen = 12
)

// Magic numbers and the version this package writes.
const (
	MagicMicroseconds = 0xA1B2C3D4
	MagicNanoseconds  = 0xA1B23C4D
	VersionMajor      = 2
	VersionMinor      = 4
)

// MaxSnaplen is the largest snaplen and captured length accepted: libpcap's
// MAXIMUM_SNAPLEN. It bounds what [Reader.Next] allocates per record.
const MaxSnaplen = 262144

// LinkType is the link-layer header type of a file's packets
// (https://www.tcpdump.org/linktypes.html).
type LinkType uint32

// LinkTypeEthernet is LINKTYPE_ETHERNET: IEEE 802.3 frames without FCS.
const LinkTypeEthernet LinkType = 1

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("pcap: malformed file")

// FileHeader is the file header's information.
type FileHeader struct {
	Snaplen  uint32   // the longest captured length the writer meant to keep
	LinkType LinkType // the link type of every packet
	// Nanoseconds reports nanosecond timestamps (else microseconds).
	Nanoseconds bool
	// ByteOrder is the order the file's fields are written in.
	ByteOrder binary.ByteOrder
}

// Packet is one record: a packet as captured.
type Packet struct {
	Time time.Time // when it was captured
	// Len is the packet's original length; Data holds its first
	// len(Data) <= Len bytes.
	Len  int
	Data []byte
}

// Writer writes a capture file. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	snaplen uint32
	hdr     [RecordHeaderLen]byte // reused: WritePacket does not allocate
}

// NewWriter writes the file header of a little-endian file with
// microsecond timestamps, snaplen (1 … [MaxSnaplen]) and link type lt to
// w, and returns a Writer for its packets.
func NewWriter(w io.Writer, snaplen uint32, lt LinkType) (*Writer, error) {
	if snaplen == 0 || snaplen > MaxSnaplen {
		return nil, fmt.Errorf("pcap: snaplen %d out of range 1..%d", snaplen, MaxSnaplen)
	}
	var b [FileHeaderLen]byte
	le := binary.LittleEndian
	le.PutUint32(b[fileOffsetMagic:], MagicMicroseconds)
	le.PutUint16(b[fileOffsetMajor:], VersionMajor)
	le.PutUint16(b[fileOffsetMinor:], VersionMinor)
	// Bytes 8:16 (two reserved fields, once time zone and sigfigs) stay 0.
	le.PutUint32(b[fileOffsetSnaplen:], snaplen)
	le.PutUint32(b[fileOffsetLinkType:], uint32(lt))
	if _, err := w.Write(b[:]); err != nil {
		return nil, err
	}
	return &Writer{w: w, snaplen: snaplen}, nil
}

// WritePacket writes one record: data, the first len(data) bytes of a
// packet of length origLen captured at t. len(data) must not exceed
// origLen nor the file's snaplen. The timestamp is written in
// microseconds (truncated) and its seconds must fit 32 bits (until 2106).
func (w *Writer) WritePacket(t time.Time, origLen int, data []byte) error {
	switch {
	case len(data) > origLen:
		return fmt.Errorf("pcap: captured length %d exceeds the original length %d", len(data), origLen)
	case len(data) > int(w.snaplen):
		return fmt.Errorf("pcap: captured length %d exceeds the snaplen %d", len(data), w.snaplen)
	case uint64(origLen) > 0xFFFFFFFF:
		return fmt.Errorf("pcap: original length %d does not fit 32 bits", origLen)
	}
	sec := t.Unix()
	if sec < 0 || sec > 0xFFFFFFFF {
		return fmt.Errorf("pcap: timestamp %v out of range", t)
	}
	le := binary.LittleEndian
	le.PutUint32(w.hdr[recordOffsetSec:], uint32(sec))
	le.PutUint32(w.hdr[recordOffsetFrac:], uint32(t.Nanosecond()/1000))
	le.PutUint32(w.hdr[recordOffsetCapLen:], uint32(len(data)))
	le.PutUint32(w.hdr[recordOffsetOrigLen:], uint32(origLen))
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return err
	}
	_, err := w.w.Write(data)
	return err
}

// Reader reads a capture file. It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	hdr FileHeader
	buf [RecordHeaderLen]byte
}

// NewReader reads and checks the file header from r. The file's byte
// order and timestamp resolution come from its magic number; its major
// version must be 2 and its snaplen at most [MaxSnaplen] (0 is read as
// [MaxSnaplen], as libpcap does).
func NewReader(r io.Reader) (*Reader, error) {
	var b [FileHeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %d-byte file header cut short: %w", ErrFormat, FileHeaderLen, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	rd := &Reader{r: r}
	h := &rd.hdr
	switch m := binary.LittleEndian.Uint32(b[fileOffsetMagic:]); m {
	case MagicMicroseconds:
		h.ByteOrder = binary.LittleEndian
	case MagicNanoseconds:
		h.ByteOrder, h.Nanoseconds = binary.LittleEndian, true
	default:
		switch binary.BigEndian.Uint32(b[fileOffsetMagic:]) {
		case MagicMicroseconds:
			h.ByteOrder = binary.BigEndian
		case MagicNanoseconds:
			h.ByteOrder, h.Nanoseconds = binary.BigEndian, true
		default:
			return nil, fmt.Errorf("%w: magic number %#08x", ErrFormat, m)
		}
	}
	bo := h.ByteOrder
	if v := bo.Uint16(b[fileOffsetMajor:]); v != VersionMajor {
		return nil, fmt.Errorf("%w: version %d.%d, want %d.x", ErrFormat, v, bo.Uint16(b[fileOffsetMinor:]), VersionMajor)
	}
	h.Snaplen = bo.Uint32(b[fileOffsetSnaplen:])
	switch {
	case h.Snaplen == 0:
		h.Snaplen = MaxSnaplen
	case h.Snaplen > MaxSnaplen:
		return nil, fmt.Errorf("%w: snaplen %d exceeds %d", ErrFormat, h.Snaplen, MaxSnaplen)
	}
	h.LinkType = LinkType(bo.Uint32(b[fileOffsetLinkType:]))
	return rd, nil
}

// Header returns the file header.
func (r *Reader) Header() FileHeader { return r.hdr }

// Next reads the next record. Its Data is a new slice, owned by the
// caller. At the end of the file it returns io.EOF; a record cut short
// returns an error wrapping [ErrFormat] and io.ErrUnexpectedEOF (a file
// still being written ends so). A captured length above the original
// length or above [MaxSnaplen] is an [ErrFormat] error, checked before any
// allocation. After an error the Reader must not be used.
func (r *Reader) Next() (Packet, error) {
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Packet{}, fmt.Errorf("%w: record header cut short: %w", ErrFormat, err)
		}
		return Packet{}, err // io.EOF at a record boundary, or a read error
	}
	bo := r.hdr.ByteOrder
	sec := bo.Uint32(r.buf[recordOffsetSec:])
	frac := bo.Uint32(r.buf[recordOffsetFrac:])
	capLen := bo.Uint32(r.buf[recordOffsetCapLen:])
	origLen := bo.Uint32(r.buf[recordOffsetOrigLen:])
	switch {
	case capLen > MaxSnaplen:
		return Packet{}, fmt.Errorf("%w: captured length %d exceeds %d", ErrFormat, capLen, MaxSnaplen)
	case capLen > origLen:
		return Packet{}, fmt.Errorf("%w: captured length %d exceeds the original length %d", ErrFormat, capLen, origLen)
	}
	nsec := int64(frac)
	if r.hdr.Nanoseconds {
		if frac >= 1e9 {
			return Packet{}, fmt.Errorf("%w: %d ns in a second", ErrFormat, frac)
		}
	} else {
		if frac >= 1e6 {
			return Packet{}, fmt.Errorf("%w: %d µs in a second", ErrFormat, frac)
		}
		nsec *= 1000
	}
	p := Packet{Time: time.Unix(int64(sec), nsec), Len: int(origLen), Data: make([]byte, capLen)}
	if _, err := io.ReadFull(r.r, p.Data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Packet{}, fmt.Errorf("%w: %d-byte record cut short: %w", ErrFormat, capLen, io.ErrUnexpectedEOF)
		}
		return Packet{}, err
	}
	return p, nil
}

// ReadAll reads a whole file from r: its header and its packets. On an
// error it returns the packets read before it.
func ReadAll(r io.Reader) (FileHeader, []Packet, error) {
	rd, err := NewReader(r)
	if err != nil {
		return FileHeader{}, nil, err
	}
	var ps []Packet
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.hdr, ps, nil
		}
		if err != nil {
			return rd.hdr, ps, err
		}
		ps = append(ps, p)
	}
}
