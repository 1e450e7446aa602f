package uplink

import (
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMmsgFrom decodes the source addresses recvmmsg returns as x/net did:
// IPv4, IPv6, IPv4-mapped IPv6 unmapped, and a scoped IPv6 address with
// the interface name as its zone.
func TestMmsgFrom(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	var m mmsgRecv
	m.names = make([]unix.RawSockaddrAny, 1)
	put4 := func(a [4]byte, port uint16) {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.names[0]))
		*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a}
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		b[0], b[1] = byte(port>>8), byte(port)
	}
	put6 := func(a netip.Addr, port uint16, scope uint32) {
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&m.names[0]))
		*p = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: scope}
		b := (*[2]byte)(unsafe.Pointer(&p.Port))
		b[0], b[1] = byte(port>>8), byte(port)
	}
	for _, tc := range []struct {
		name string
		put  func()
		want string
	}{
		{"ipv4", func() { put4([4]byte{192, 0, 2, 1}, 7407) }, "192.0.2.1:7407"},
		{"ipv6", func() { put6(netip.MustParseAddr("2001:db8::1"), 7408, 0) }, "[2001:db8::1]:7408"},
		{"ipv4-mapped", func() { put6(netip.MustParseAddr("::ffff:198.51.100.7"), 1, 0) }, "198.51.100.7:1"},
		{"link-local", func() { put6(netip.MustParseAddr("fe80::1"), 7407, uint32(lo.Index)) }, "[fe80::1%lo]:7407"},
		{"not ip", func() { m.names[0] = unix.RawSockaddrAny{} }, "invalid AddrPort"},
	} {
		tc.put()
		if got := m.from(0).String(); got != tc.want {
			t.Errorf("%s: from = %s, want %s", tc.name, got, tc.want)
		}
	}
}
