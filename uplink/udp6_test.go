package uplink

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestIPv6AndDualStack(t *testing.T) {
	cases := []struct {
		name        string
		listenA     string
		listenB     string
		peerHost    string // how B names A
		maxEncapLen int
	}{
		{"ipv6", "[::1]:0", "[::1]:0", "::1", 1452},
		{"dual stack, ipv4 peer", "[::]:0", "127.0.0.1:0", "127.0.0.1", 1452},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newHost(t, 1, []uint32{1}, func(c *Config) { c.UDPListen = netip.MustParseAddrPort(tc.listenA) })
			b := newHost(t, 2, []uint32{1}, func(c *Config) {
				c.UDPListen = netip.MustParseAddrPort(tc.listenB)
				c.Peers = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(tc.peerHost), a.u.LocalAddr().Port())}
			})
			waitHello(t, a, b, 1)
			waitHello(t, b, a, 1)
			if got := a.u.MaxEncapLen(); got != tc.maxEncapLen {
				t.Fatalf("MaxEncapLen = %d, want %d", got, tc.maxEncapLen)
			}
			for _, n := range []int{64, 1434, 1435, 1514} {
				t.Run(fmt.Sprint(n), func(t *testing.T) {
					f := frame(n, 2, 1, byte(n))
					a.send(t, 1, b.u.OuterMAC(), f)
					b.expect(t, 1, a.u.OuterMAC(), f)
					g := frame(n, 1, 2, byte(n+7))
					b.send(t, 1, a.u.OuterMAC(), g)
					a.expect(t, 1, b.u.OuterMAC(), g)
				})
			}
			if p, ok := a.peer(b.u.OuterMAC()); !ok || !netip.MustParseAddrPort(p.Addr).Addr().Is4() == (tc.peerHost == "127.0.0.1") {
				t.Fatalf("a's peer b: %+v (ok=%v)", p, ok)
			}
		})
	}
}
