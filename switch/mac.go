package vswitch

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
