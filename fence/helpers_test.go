package fence

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
)

// Documentation addresses (RFC 7042, RFC 5737).
var (
	innerDst = [6]byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}
	innerSrc = [6]byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
)

// testParams is installation 1 with the default OUI and EtherType.
var testParams = Params{Installation: 1}

var (
	hostA = MakeOuterMAC(DefaultOUI, 1, 0x02c2) // 02:fe:0c:01:02:c2
	hostB = MakeOuterMAC(DefaultOUI, 1, 0x0003) // 02:fe:0c:01:00:03
)

// ipv4UDPFrame returns an untagged Ethernet frame of exactly n bytes (n >=
// 42) carrying IPv4/UDP 192.0.2.1:4000 → 192.0.2.2:5000 with a payload of
// bytes seed, seed+1, …; the IPv4 header checksum is correct.
func ipv4UDPFrame(n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b[0:], innerDst[:])
	copy(b[6:], innerSrc[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n-14))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	copy(ip[12:], []byte{192, 0, 2, 1})
	copy(ip[16:], []byte{192, 0, 2, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], uint16(n-34))
	for i := range udp[8:] {
		udp[8+i] = seed + byte(i)
	}
	return b
}

// encap returns a fresh buffer holding inner encapsulated for fence with
// the given header fields, from src to dst.
func encap(p Params, inner []byte, dst, src OuterMAC, f HeaderFields) Frame {
	b := make([]byte, EncapLen+len(inner))
	copy(b[EncapLen:], inner)
	return p.Encap(b, EncapLen, len(inner), dst, src, f)
}

// mustHex decodes whitespace-tolerant hex.
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

// formatHex writes b as hex, 16 bytes per line in groups of 2 bytes.
func formatHex(b []byte) []byte {
	var sb strings.Builder
	for i := 0; i < len(b); i += 16 {
		line := b[i:min(i+16, len(b))]
		for j := 0; j < len(line); j += 2 {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(hex.EncodeToString(line[j:min(j+2, len(line))]))
		}
		sb.WriteByte('\n')
	}
	return []byte(sb.String())
}

// concurrently runs fn(0) … fn(n-1) in n goroutines, waits for them and
// reports every error they return.
func concurrently(t *testing.T, n int, fn func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(g); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
