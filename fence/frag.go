package fence

import (
	"io"
	"sync/atomic"
)

// Fragmenter splits outbound encapsulated frames that do not fit the
// uplink into two fragments (DESIGN 3.4). One Fragmenter serves one sending
// host: its Seq counter is per host, across fences. The zero value is
// ready to use; it is safe for concurrent use.
type Fragmenter struct {
	seq atomic.Uint32 // next Seq (low 4 bits used)
}

// Split fragments frame, a whole encapsulated frame built by
// [Params.Encap], for an uplink that carries encapsulated frames of at most
// maxLen bytes (see [MaxEncapLenRaw], [MaxEncapLenUDP]).
//
// If len(frame) <= maxLen it returns (frame, nil, nil) and changes nothing.
// Otherwise it returns two fragments, each with the full outer header and a
// fence header, the same Seq, FT=[First] then FT=[Last]:
//
//   - first is frame[:n], the first as large as fits (n == maxLen), with
//     its fence header rewritten in place;
//   - last is scratch[:m]: a copy of the outer and fence header and the
//     rest of the inner frame.
//
// The split point is normative (DESIGN 3.4): the first fragment is always
// exactly maxLen bytes, even when that leaves a last fragment shorter than
// [MinEthernetLen] that a NIC on a raw uplink pads. The [Reassembler] trims
// such padding from IP frames by their length field.
//
// Errors: [ErrShort] if frame is shorter than [EncapLen]; [ErrFragType] if
// frame is already a fragment; [ErrTooBig] if it needs more than two
// fragments (or maxLen leaves less than [MinInnerLen] inner bytes per
// fragment); [io.ErrShortBuffer] if scratch is too small (len(scratch) >=
// maxLen always suffices). On error frame is unchanged and no Seq is used.
// Split does not allocate.
func (f *Fragmenter) Split(frame Frame, maxLen int, scratch []byte) (first, last Frame, err error) {
	if len(frame) <= maxLen {
		return frame, nil, nil
	}
	if len(frame) < EncapLen {
		return nil, nil, ErrShort
	}
	if frame.Header().FragType() != Whole {
		return nil, nil, ErrFragType
	}
	room := maxLen - EncapLen // inner bytes one fragment carries
	inner := len(frame) - EncapLen
	if room < MinInnerLen || inner-room > room || inner > MaxPayloadLen {
		return nil, nil, ErrTooBig
	}
	firstInner, rest := room, inner-room
	if len(scratch) < EncapLen+rest {
		return nil, nil, io.ErrShortBuffer
	}
	seq := uint8(f.seq.Add(1)-1) & SeqMask
	last = Frame(scratch[:EncapLen+rest])
	copy(last, frame[:EncapLen])
	copy(last[EncapLen:], frame[EncapLen+firstInner:])
	last.Header().SetFragType(Last, seq)
	first = frame[:EncapLen+firstInner]
	first.Header().SetFragType(First, seq)
	return first, last, nil
}
