package stack

import (
	"net/netip"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// FuzzGatewayWrite feeds arbitrary frames to a gateway: the endpoint's own
// parsing (ARP and NDP filters, ICMP echo interception, GRO) must never
// panic, and the gateway must keep working.
func FuzzGatewayWrite(f *testing.F) {
	gwMAC := Config{Fence: 7}.withDefaults().MAC
	f.Add(arpRequest(guestMAC, guestIP, netip.MustParseAddr("10.0.2.2")))
	f.Add(udpFrame(guestMAC, bcastMAC, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"), []byte("x")))
	f.Add(udpFrame(guestMAC, gwMAC, netip.MustParseAddrPort("10.0.2.15:1000"), netip.MustParseAddrPort("10.0.2.3:53"), []byte("xx")))
	ra := (&Gateway{cfg: Config{Fence: 7, MTU: 1500}.withDefaults()}).buildRA()
	f.Add(ra)
	// NAT only to the host's loopback: fuzzed destinations must never
	// produce traffic to other addresses.
	g, err := New(Config{Fence: 7, Resolvers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	r := newFrameReader(g) // drains outbound frames
	_ = r
	f.Fuzz(func(t *testing.T, frame []byte) {
		b := make([]byte, vswitch.Headroom+len(frame))
		copy(b[vswitch.Headroom:], frame)
		if _, err := g.Write([][]byte{b}, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
	})
}
