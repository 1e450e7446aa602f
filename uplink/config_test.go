package uplink

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/corralnet/corral/fence"
)

func TestConfigValidate(t *testing.T) {
	udp := netip.MustParseAddrPort("0.0.0.0:7407")
	ok := func() Config { return Config{HostID: 1, UDPListen: udp} }
	cases := []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"ok udp", func(c *Config) {}, nil},
		{"ok raw", func(c *Config) { c.UDPListen = netip.AddrPort{}; c.RawInterface = "eth1" }, nil},
		{"multicast OUI", func(c *Config) { c.OUI = fence.OUI{0x03, 0, 0} }, ErrOUINotLocalUnicast},
		{"global OUI", func(c *Config) { c.OUI = fence.OUI{0x00, 0x50, 0x56} }, ErrOUINotLocalUnicast},
		{"host id 0", func(c *Config) { c.HostID = 0 }, ErrHostIDReserved},
		{"host id ffff", func(c *Config) { c.HostID = 0xFFFF }, ErrHostIDReserved},
		{"mtu", func(c *Config) { c.MTU = 575 }, ErrMTUTooSmall},
		{"ethertype", func(c *Config) { c.EtherType = 0x05dc }, ErrBadEtherType},
		{"no transport", func(c *Config) { c.UDPListen = netip.AddrPort{} }, ErrNoTransport},
		{"both transports", func(c *Config) { c.RawInterface = "eth1" }, ErrBothTransports},
		{"peer port 0", func(c *Config) { c.Peers = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")} }, ErrBadAddr},
		{"peer multicast", func(c *Config) { c.Peers = []netip.AddrPort{netip.MustParseAddrPort("239.1.1.1:7407")} }, ErrBadAddr},
		{"group unicast", func(c *Config) { c.Group = netip.MustParseAddrPort("192.0.2.1:7407") }, ErrBadAddr},
		{"group ok", func(c *Config) { c.Group = netip.MustParseAddrPort("239.7.4.7:7407") }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDeriveHostID(t *testing.T) {
	seen := map[uint16]bool{}
	for i := 0; i < 5000; i++ {
		id := DeriveHostID([]byte("0123456789abcdef0123456789abcdef"), string(rune('a'+i%26))+string(rune(i)))
		if id == 0 || id == 0xFFFF {
			t.Fatalf("DeriveHostID gave reserved %#x", id)
		}
		seen[id] = true
	}
	if len(seen) < 4500 {
		t.Fatalf("only %d distinct IDs of 5000", len(seen))
	}
	a := DeriveHostID([]byte("m"), "lab1")
	if b := DeriveHostID([]byte("m"), "lab1"); a != b {
		t.Fatalf("not deterministic: %#x != %#x", a, b)
	}
	if b := DeriveHostID([]byte("m"), "lab2"); a == b {
		t.Fatalf("lab1 and lab2 collide at %#x", a)
	}
}
