package dhcptest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/corralnet/corral/stack/dhcp"
)

// serve answers DHCP frames from conn with srv, as a gateway would, and
// sends a frame of other traffic before each answer (which the client
// must skip).
func serve(t *testing.T, conn net.Conn, srv *dhcp.Server) {
	buf := make([]byte, maxFrame)
	resp := make([]byte, dhcp.MaxMessageSize)
	gwMAC := [6]byte{0x02, 0, 0, 0, 0, 2}
	for {
		f, err := readFrame(conn, buf)
		if err != nil {
			return
		}
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || binary.BigEndian.Uint16(f[36:]) != 67 {
			t.Errorf("client sent a frame that is no DHCP request: % x", f)
			return
		}
		out, _, ok := srv.Handle(dhcp.Message(f[42:]), resp, time.Now())
		if !ok {
			continue
		}
		arp := make([]byte, 42)
		copy(arp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06})
		noise := UDPFrame(gwMAC, [6]byte(f[6:12]), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.99"), 67, 68, []byte("not dhcp"))
		reply := UDPFrame(gwMAC, [6]byte(f[6:12]), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("255.255.255.255"), 67, 68, out)
		for _, fr := range [][]byte{arp, noise, reply} {
			if err := writeFrame(conn, fr); err != nil {
				return
			}
		}
	}
}

func TestStreamLease(t *testing.T) {
	srv, err := dhcp.NewServer(dhcp.Config{
		Subnet: netip.MustParsePrefix("10.0.2.0/24"), ServerID: netip.MustParseAddr("10.0.2.2"),
		Router: netip.MustParseAddr("10.0.2.2"), DNS: netip.MustParseAddr("10.0.2.3"),
		First: netip.MustParseAddr("10.0.2.15"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.0.2.15", "10.0.2.16", "10.0.2.15"} {
		mac := [6]byte{0x52, 0x54, 0, 0, 0, byte(1 + i%2)}
		client, server := net.Pipe()
		go serve(t, server, srv)
		l, err := StreamLease(client, mac, "vm1", 10*time.Second)
		client.Close()
		server.Close()
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		if l.IP != netip.MustParseAddr(want) || l.Router != netip.MustParseAddr("10.0.2.2") || l.DNS != netip.MustParseAddr("10.0.2.3") || l.Server != l.Router {
			t.Errorf("lease %d of %s: got %+v, want %s via 10.0.2.2, DNS 10.0.2.3", i, net.HardwareAddr(mac[:]), l, want)
		}
	}
	if got := srv.Leases(); len(got) != 2 || got[0].Hostname != "vm1" {
		t.Errorf("server leases: %+v", got)
	}
}

// TestStreamLeaseTimeout: nobody answers; the client gives up after its
// timeout, having resent its DISCOVER.
func TestStreamLeaseTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	seen := make(chan int, 1)
	go func() {
		buf := make([]byte, maxFrame)
		n := 0
		for {
			if _, err := readFrame(server, buf); err != nil {
				seen <- n
				return
			}
			n++
		}
	}()
	start := time.Now()
	_, err := StreamLease(client, [6]byte{0x52, 0x54, 0, 0, 0, 1}, "", 2500*time.Millisecond)
	client.Close()
	if err == nil {
		t.Fatal("got a lease from nobody")
	}
	if d := time.Since(start); d < 2*time.Second || d > 30*time.Second {
		t.Errorf("gave up after %v, want about 2.5s", d)
	}
	if n := <-seen; n < 2 {
		t.Errorf("sent %d DISCOVERs, want the first and resends", n)
	}
}
