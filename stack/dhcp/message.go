package dhcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
)

// Wire layout of a DHCPv4 message (RFC 2131 section 2).
const (
	OpOffset      = 0
	HTypeOffset   = 1
	HLenOffset    = 2
	HopsOffset    = 3
	XIDOffset     = 4
	SecsOffset    = 8
	FlagsOffset   = 10
	CIAddrOffset  = 12
	YIAddrOffset  = 16
	SIAddrOffset  = 20
	GIAddrOffset  = 24
	CHAddrOffset  = 28
	CHAddrLen     = 16
	SNameOffset   = 44
	FileOffset    = 108
	MagicOffset   = 236
	OptionsOffset = 240

	// HeaderSize is the fixed part including the magic cookie.
	HeaderSize = OptionsOffset
	// MinReplySize is the smallest message some clients accept (BOOTP).
	MinReplySize = 300
	// MaxMessageSize bounds messages this package reads and writes.
	MaxMessageSize = 1500

	// Magic is the options magic cookie 99.130.83.99.
	Magic uint32 = 0x63825363

	OpRequest byte = 1
	OpReply   byte = 2

	HTypeEthernet byte = 1

	// FlagBroadcast asks the server to broadcast its reply.
	FlagBroadcast uint16 = 0x8000
)

// Option codes used here (RFC 2132).
const (
	OptPad          byte = 0
	OptSubnetMask   byte = 1
	OptRouter       byte = 3
	OptDNS          byte = 6
	OptHostname     byte = 12
	OptDomainName   byte = 15
	OptMTU          byte = 26
	OptBroadcast    byte = 28
	OptRequestedIP  byte = 50
	OptLeaseTime    byte = 51
	OptOverload     byte = 52
	OptMessageType  byte = 53
	OptServerID     byte = 54
	OptParamRequest byte = 55
	OptRenewalT1    byte = 58
	OptRebindingT2  byte = 59
	OptClientID     byte = 61
	OptDomainSearch byte = 119 // RFC 3397
	OptEnd          byte = 255
)

// MessageType is the value of option 53.
type MessageType byte

// Message types (RFC 2132 section 9.6).
const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

// String returns the RFC 2132 name of t ("DISCOVER" …), or "UNKNOWN".
func (t MessageType) String() string {
	names := [...]string{"", "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return "UNKNOWN"
}

// Errors from [Message.Validate].
var (
	ErrTooShort   = errors.New("dhcp: message too short")
	ErrBadMagic   = errors.New("dhcp: bad magic cookie")
	ErrBadHType   = errors.New("dhcp: not Ethernet (htype 1, hlen 6)")
	ErrBadOptions = errors.New("dhcp: malformed options")
	ErrNoType     = errors.New("dhcp: no message type option")
)

// Message is a view of a DHCPv4 message. Methods other than Validate may
// be called only on a message that Validate accepted.
type Message []byte

// Validate checks the fixed header and that the options are well formed
// (every option fits, an end option or the end of the message ends them).
func (m Message) Validate() error {
	if len(m) < HeaderSize {
		return ErrTooShort
	}
	if binary.BigEndian.Uint32(m[MagicOffset:]) != Magic {
		return ErrBadMagic
	}
	if m[HTypeOffset] != HTypeEthernet || m[HLenOffset] != 6 {
		return ErrBadHType
	}
	ok := true
	m.walk(func(byte, []byte) bool { return true }, &ok)
	if !ok {
		return ErrBadOptions
	}
	return nil
}

// walk calls fn for each option until fn returns false; *ok is set false
// when the options are malformed.
func (m Message) walk(fn func(code byte, data []byte) bool, ok *bool) {
	b := m[OptionsOffset:]
	for len(b) > 0 {
		code := b[0]
		switch code {
		case OptPad:
			b = b[1:]
			continue
		case OptEnd:
			return
		}
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			*ok = false
			return
		}
		data := b[2 : 2+int(b[1])]
		if !fn(code, data) {
			return
		}
		b = b[2+int(b[1]):]
	}
}

// Op returns the op field (OpRequest or OpReply).
func (m Message) Op() byte { return m[OpOffset] }

// XID returns the transaction ID.
func (m Message) XID() uint32 { return binary.BigEndian.Uint32(m[XIDOffset:]) }

// Flags returns the flags field.
func (m Message) Flags() uint16 { return binary.BigEndian.Uint16(m[FlagsOffset:]) }

// CIAddr returns the client's address (set when it renews).
func (m Message) CIAddr() netip.Addr { return addr4(m[CIAddrOffset:]) }

// YIAddr returns "your" address.
func (m Message) YIAddr() netip.Addr { return addr4(m[YIAddrOffset:]) }

// GIAddr returns the relay agent's address.
func (m Message) GIAddr() netip.Addr { return addr4(m[GIAddrOffset:]) }

// CHAddr returns the client's hardware address.
func (m Message) CHAddr() [6]byte { return [6]byte(m[CHAddrOffset : CHAddrOffset+6]) }

// Option returns the data of the first option with code.
func (m Message) Option(code byte) ([]byte, bool) {
	var found []byte
	ok := true
	m.walk(func(c byte, data []byte) bool {
		if c == code {
			found = data
			return false
		}
		return true
	}, &ok)
	return found, found != nil
}

// Type returns the message type (option 53).
func (m Message) Type() (MessageType, bool) {
	d, ok := m.Option(OptMessageType)
	if !ok || len(d) != 1 {
		return 0, false
	}
	return MessageType(d[0]), true
}

// AddrOption returns an option holding one IPv4 address.
func (m Message) AddrOption(code byte) (netip.Addr, bool) {
	d, ok := m.Option(code)
	if !ok || len(d) != 4 {
		return netip.Addr{}, false
	}
	return addr4(d), true
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

// MessageFields are the fixed fields of a message to encode.
type MessageFields struct {
	Op     byte
	XID    uint32
	Flags  uint16
	CIAddr netip.Addr
	YIAddr netip.Addr
	SIAddr netip.Addr
	GIAddr netip.Addr
	CHAddr [6]byte
}

// Encode writes the fixed header (zeroing sname and file) into m, which
// must be at least HeaderSize long.
func (m Message) Encode(f *MessageFields) {
	clear(m[:HeaderSize])
	m[OpOffset] = f.Op
	m[HTypeOffset] = HTypeEthernet
	m[HLenOffset] = 6
	binary.BigEndian.PutUint32(m[XIDOffset:], f.XID)
	binary.BigEndian.PutUint16(m[FlagsOffset:], f.Flags)
	putAddr(m[CIAddrOffset:], f.CIAddr)
	putAddr(m[YIAddrOffset:], f.YIAddr)
	putAddr(m[SIAddrOffset:], f.SIAddr)
	putAddr(m[GIAddrOffset:], f.GIAddr)
	copy(m[CHAddrOffset:], f.CHAddr[:])
	binary.BigEndian.PutUint32(m[MagicOffset:], Magic)
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
	}
}

// AppendOption appends one option to b. Data longer than 255 bytes is
// truncated to 255.
func AppendOption(b []byte, code byte, data ...byte) []byte {
	if len(data) > 255 {
		data = data[:255]
	}
	b = append(b, code, byte(len(data)))
	return append(b, data...)
}

// AppendDomainSearch appends option 119 (RFC 3397): the domains in DNS
// wire format (RFC 1035 section 3.1), uncompressed; a domain that does
// not fit in one option is left out. A search list is how a guest's
// resolver turns a short name ("vm1") into one under the fence's domain.
func AppendDomainSearch(b []byte, domains ...string) []byte {
	var data []byte
	for _, d := range domains {
		var enc []byte
		ok := true
		for l := range strings.SplitSeq(strings.Trim(d, "."), ".") {
			if l == "" || len(l) > 63 {
				ok = false
				break
			}
			enc = append(append(enc, byte(len(l))), l...)
		}
		enc = append(enc, 0)
		if ok && len(data)+len(enc) <= 255 {
			data = append(data, enc...)
		}
	}
	if len(data) == 0 {
		return b
	}
	return AppendOption(b, OptDomainSearch, data...)
}

// AppendAddrOption appends an option holding one IPv4 address.
func AppendAddrOption(b []byte, code byte, a netip.Addr) []byte {
	v := a.As4()
	return AppendOption(b, code, v[:]...)
}

// AppendUint32Option appends an option holding a 32-bit value.
func AppendUint32Option(b []byte, code byte, v uint32) []byte {
	return AppendOption(b, code, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
