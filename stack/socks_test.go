package stack

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/corralnet/corral/stack/dns"
)

// TestSocksIntoFence: a SOCKS5 client on the host (x/net/proxy) reaches a
// guest's TCP and UDP services through the fence's endpoint, by address
// and by the fence's DNS names (socks5h); destinations outside the fence,
// and the gateway's own addresses, are refused and counted.
func TestSocksIntoFence(t *testing.T) {
	g := newTestGateway(t, Config{
		Socks:      netip.MustParseAddrPort("127.0.0.1:0"),
		DNSRecords: []dns.Record{{Name: "vm1", Type: "A", Data: []string{guestIP.String()}}},
	})
	if !g.SocksAddr().IsValid() || g.SocksAddr().Port() == 0 {
		t.Fatalf("SocksAddr %v", g.SocksAddr())
	}
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 7777, "guest:")
	host := echoTCP(t, "host:") // on the host's loopback: never reachable through SOCKS

	d, err := proxy.SOCKS5("tcp", g.SocksAddr().String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(dst string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return d.(proxy.ContextDialer).DialContext(ctx, "tcp", dst)
	}
	for _, dst := range []string{"10.0.2.15:7777", "vm1:7777", "vm1.corral.internal:7777"} {
		c, err := dial(dst)
		if err != nil {
			t.Fatalf("CONNECT %s: %v", dst, err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprint(c, dst)
		buf := make([]byte, 100)
		n, err := io.ReadAtLeast(c, buf, len("guest:")+len(dst))
		if err != nil || string(buf[:n]) != "guest:"+dst {
			t.Fatalf("through %s: %q %v", dst, buf[:n], err)
		}
		c.Close()
	}
	for _, dst := range []string{host.String(), "10.0.2.2:80", "10.0.2.3:53", "10.0.2.255:80", "192.0.2.1:80", "[fd63:6f72:7261::2]:80", "host:80"} {
		if _, err := dial(dst); err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Fatalf("CONNECT %s: %v, want not allowed", dst, err)
		}
	}

	// UDP ASSOCIATE to the guest's UDP echo.
	ctrl, err := net.Dial("tcp", g.SocksAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(20 * time.Second))
	ctrl.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	reply := make([]byte, 12)
	if _, err := io.ReadFull(ctrl, reply); err != nil || reply[3] != 0 {
		t.Fatalf("UDP ASSOCIATE: % x %v", reply, err)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:]))
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hdr := []byte{0, 0, 0, 1, 10, 0, 2, 15, 7777 >> 8, 7777 & 0xff}
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for got == "" && time.Now().Before(deadline) {
		uc.Write(append(append([]byte(nil), hdr...), "dgram"...))
		uc.SetReadDeadline(time.Now().Add(time.Second))
		b := make([]byte, 1500)
		if n, err := uc.Read(b); err == nil {
			got = string(b[:n])
		}
	}
	if got != string(hdr)+"guest:dgram" {
		t.Fatalf("UDP through the association: %q", got)
	}

	st := g.Stats().Socks
	if st.Connects != 3 || st.Refused != 7 || st.Associates != 1 {
		t.Fatalf("socks stats %+v: want 3 connects, 7 refused, 1 association", st)
	}
}

// TestSocksListenConflict: a SOCKS address already in use fails New.
func TestSocksListenConflict(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Fence: 8, Socks: ln.Addr().(*net.TCPAddr).AddrPort(),
		Resolvers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}})
	if err == nil || !strings.Contains(err.Error(), "socks listen") {
		t.Fatalf("New with a busy SOCKS address: %v", err)
	}
}
