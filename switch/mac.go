package vswitch

import (
	"fmt"
	"net"
)

const hexDigits = "0123456789abcdef"

// String returns m as six colon-separated lower-case hex bytes,
// "52:54:00:12:34:56".
func (m MAC) String() string {
	var b [17]byte
	for i, x := range m {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i] = hexDigits[x>>4]
		b[3*i+1] = hexDigits[x&0xf]
	}
	return string(b[:])
}

// ParseMAC parses an Ethernet address in any form net.ParseMAC accepts,
// "52:54:00:12:34:56" among them; it must have six bytes.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("vswitch: %q is not a 6-byte MAC", s)
	}
	return MAC(hw), nil
}
