package stack

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/corralnet/corral/stack/dns"
)

// dnsAsk asks the gateway's DNS (at .3) from the guest for name and qtype.
func dnsAsk(t *testing.T, gs *guest, g *Gateway, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c, err := gonet.DialUDP(gs.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.DNSAddr().As4()), Port: 53}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &mdns.Conn{Conn: c}
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if r, err := co.ReadMsg(); err == nil {
			return r
		}
	}
	t.Fatalf("no DNS answer for %s", name)
	return nil
}

// TestDNSNames: the names the gateway defines, as a guest asks for them:
// A and AAAA match what the NAT reaches (host's AAAA only with an IPv6
// loopback on this machine), short names resolve, static records and the
// other tools' host names answer, reverse lookups name the gateway.
func TestDNSNames(t *testing.T) {
	g := newTestGateway(t, Config{DNSRecords: []dns.Record{
		{Name: "db", Type: "A", Data: []string{"10.0.2.50"}},
		{Name: "db", Type: "TXT", Data: []string{"primary"}},
	}})
	gs := newGuest(t, g, guestMAC, guestIP)
	hostAAAA := "none"
	if hasIPv6Loopback() {
		hostAAAA = "fd63:6f72:7261::2"
	}
	tests := []struct {
		name  string
		qtype uint16
		want  string // "none": NOERROR without answers
	}{
		{"host.corral.internal.", mdns.TypeA, "10.0.2.2"},
		{"host.corral.internal.", mdns.TypeAAAA, hostAAAA},
		{"host.", mdns.TypeA, "10.0.2.2"},
		{"host.lima.internal.", mdns.TypeA, "10.0.2.2"},
		{"host.containers.internal.", mdns.TypeA, "10.0.2.2"},
		{"gateway.corral.internal.", mdns.TypeA, "10.0.2.2"},
		{"gateway.", mdns.TypeAAAA, "fd63:6f72:7261::2"},
		{"dns.corral.internal.", mdns.TypeAAAA, "fd63:6f72:7261::3"},
		{"db.", mdns.TypeA, "10.0.2.50"},
		{"db.corral.internal.", mdns.TypeAAAA, "none"},
		{"db.corral.internal.", mdns.TypeTXT, "primary"},
		{"2.2.0.10.in-addr.arpa.", mdns.TypePTR, "gateway.corral.internal."},
	}
	for _, tt := range tests {
		m := dnsAsk(t, gs, g, tt.name, tt.qtype)
		if m.Rcode != mdns.RcodeSuccess {
			t.Errorf("%s %s: rcode %s", tt.name, mdns.TypeToString[tt.qtype], mdns.RcodeToString[m.Rcode])
			continue
		}
		got := "none"
		if len(m.Answer) == 1 {
			switch rr := m.Answer[0].(type) {
			case *mdns.A:
				got = rr.A.String()
			case *mdns.AAAA:
				got = rr.AAAA.String()
			case *mdns.TXT:
				got = rr.Txt[0]
			case *mdns.PTR:
				got = rr.Ptr
			}
		} else if len(m.Answer) > 1 {
			got = "several"
		}
		if got != tt.want {
			t.Errorf("%s %s: %s, want %s (%v)", tt.name, mdns.TypeToString[tt.qtype], got, tt.want, m.Answer)
		}
	}
}

// TestDNSNamesWithoutIPv6: with IPv6 off no name has an AAAA answer.
func TestDNSNamesWithoutIPv6(t *testing.T) {
	g := newTestGateway(t, Config{NoIPv6: true})
	gs := newGuest(t, g, guestMAC, guestIP)
	for _, n := range []string{"host.corral.internal.", "gateway.corral.internal."} {
		if m := dnsAsk(t, gs, g, n, mdns.TypeAAAA); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 0 {
			t.Errorf("%s AAAA with IPv6 off: %v", n, m)
		}
	}
}
