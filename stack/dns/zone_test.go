package dns

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/corralnet/corral/stack/dns/dnstest"
)

// The fence of these tests: gateway 10.0.2.2 (and fd00::2), DNS 10.0.2.3,
// a lease vm1 at 10.0.2.15; "host" answers A only, as it does when the
// host has no IPv6 loopback.
var (
	subnet  = netip.MustParsePrefix("10.0.2.0/24")
	prefix6 = netip.MustParsePrefix("fd00::/64")
)

func testLookup(h string) (v4, v6 netip.Addr) {
	switch h {
	case "host":
		return netip.MustParseAddr("10.0.2.2"), netip.Addr{}
	case "gateway":
		return netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")
	case "vm1":
		return netip.MustParseAddr("10.0.2.15"), netip.Addr{}
	}
	return netip.Addr{}, netip.Addr{}
}

func testReverse(ip netip.Addr) (string, bool) {
	switch {
	case ip == netip.MustParseAddr("10.0.2.15"):
		return "vm1", true
	case ip == netip.MustParseAddr("10.0.2.2"), ip == netip.MustParseAddr("fd00::2"):
		return "gateway", true
	}
	return "", subnet.Contains(ip) || prefix6.Contains(ip)
}

var testRecords = []Record{
	{Name: "db", Type: "A", Data: []string{"10.0.2.50", "10.0.2.51"}, TTL: 30 * time.Second},
	{Name: "db", Type: "aaaa", Data: []string{"fd00::50"}},
	{Name: "db", Type: "TXT", Data: []string{"role=primary", strings.Repeat("x", 300)}},
	{Name: "www", Type: "CNAME", Data: []string{"db"}},
	{Name: "chain", Type: "CNAME", Data: []string{"www.corral.internal."}},
	{Name: "ext", Type: "CNAME", Data: []string{"example.test"}},
	{Name: "api.lab.test", Type: "A", Data: []string{"10.0.2.60"}},
	{Name: "_http._tcp.corral.internal", Type: "SRV", Data: []string{"10 5 8080 db"}},
	{Name: "corral.internal.", Type: "MX", Data: []string{"10 db"}},
	{Name: "host", Type: "TXT", Data: []string{"static records may add types to built-in names"}},
}

// TestZone asks the server the questions a guest asks, with a miekg/dns
// client over UDP, and checks every answer section.
func TestZone(t *testing.T) {
	up := dnstest.Resolver(t, map[string]netip.Addr{"example.test.": netip.MustParseAddr("192.0.2.80")})
	udpAddr, _, _ := serve(t, Config{
		Domain:    "corral.internal",
		Resolvers: []netip.AddrPort{up},
		Lookup:    testLookup,
		Reverse:   testReverse,
		Aliases:   map[string]string{"host.lima.internal": "host"},
		Records:   testRecords,
	})
	tests := []struct {
		name  string
		q     string
		qtype uint16
		rcode int
		ans   []string // each answer as "TYPE data", in order
		soa   bool     // an SOA in the authority section
	}{
		{"host A", "host.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.2"}, false},
		{"host AAAA without IPv6 loopback: NODATA", "host.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, true},
		{"gateway AAAA", "gateway.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"AAAA fd00::2"}, false},
		{"gateway ANY", "gateway.corral.internal.", mdns.TypeANY, mdns.RcodeSuccess, []string{"A 10.0.2.2", "AAAA fd00::2"}, false},
		{"short name of a lease", "vm1.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.15"}, false},
		{"short host", "HOST.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.2"}, false},
		{"short name AAAA: NODATA", "vm1.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, false},
		{"unknown short name goes upstream", "nosuch.", mdns.TypeA, mdns.RcodeNameError, nil, false},
		{"alias", "host.lima.internal.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.2"}, false},
		{"unknown under the domain", "vm9.corral.internal.", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"apex SOA", "corral.internal.", mdns.TypeSOA, mdns.RcodeSuccess, []string{"SOA dns.corral.internal."}, false},
		{"static A, two records", "db.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.50", "A 10.0.2.51"}, false},
		{"static AAAA", "db.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"AAAA fd00::50"}, false},
		{"static TXT split at 255", "db.corral.internal.", mdns.TypeTXT, mdns.RcodeSuccess, []string{"TXT role=primary", "TXT " + strings.Repeat("x", 255) + "|" + strings.Repeat("x", 45)}, false},
		{"static short name", "db.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.50", "A 10.0.2.51"}, false},
		{"static MX NODATA for A", "db.corral.internal.", mdns.TypeMX, mdns.RcodeSuccess, nil, true},
		{"CNAME followed locally", "www.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, []string{"CNAME db.corral.internal.", "A 10.0.2.50", "A 10.0.2.51"}, false},
		{"CNAME chain", "chain.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"CNAME www.corral.internal.", "CNAME db.corral.internal.", "AAAA fd00::50"}, false},
		{"CNAME asked for", "www.corral.internal.", mdns.TypeCNAME, mdns.RcodeSuccess, []string{"CNAME db.corral.internal."}, false},
		{"CNAME to an upstream name", "ext.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, []string{"CNAME example.test.", "A 192.0.2.80"}, false},
		{"absolute static name", "api.lab.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 10.0.2.60"}, false},
		{"SRV", "_http._tcp.corral.internal.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"SRV 10 5 8080 db.corral.internal."}, false},
		{"MX at the apex", "corral.internal.", mdns.TypeMX, mdns.RcodeSuccess, []string{"MX 10 db.corral.internal."}, false},
		{"static TXT on a built-in name", "host.corral.internal.", mdns.TypeTXT, mdns.RcodeSuccess, []string{"TXT static records may add types to built-in names"}, false},
		{"PTR of a lease", "15.2.0.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"PTR vm1.corral.internal."}, false},
		{"PTR of the gateway over IPv6", mustReverse("fd00::2"), mdns.TypePTR, mdns.RcodeSuccess, []string{"PTR gateway.corral.internal."}, false},
		{"PTR of an unused fence address: NXDOMAIN, not forwarded", "99.2.0.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil, false},
		{"PTR outside the fence goes upstream", "1.2.0.192.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil, false},
		{"upstream", "example.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"A 192.0.2.80"}, false},
	}
	c := &mdns.Client{Timeout: 5 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := new(mdns.Msg)
			q.SetQuestion(tt.q, tt.qtype)
			r, _, err := c.Exchange(q, udpAddr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode], r)
			}
			var got []string
			for _, rr := range r.Answer {
				if !strings.EqualFold(rr.Header().Name, tt.q) && rr.Header().Rrtype != mdns.TypeCNAME && !slices.ContainsFunc(r.Answer, func(x mdns.RR) bool {
					cn, ok := x.(*mdns.CNAME)
					return ok && cn.Target == rr.Header().Name
				}) {
					t.Errorf("answer %v: owner is neither the question nor a CNAME target", rr)
				}
				got = append(got, rrString(rr))
			}
			if !slices.Equal(got, tt.ans) {
				t.Fatalf("answers %q, want %q", got, tt.ans)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA
			if hasSOA != tt.soa {
				t.Fatalf("authority %v, want SOA: %v", r.Ns, tt.soa)
			}
			if tt.rcode == mdns.RcodeSuccess && len(tt.ans) > 0 && tt.q != "example.test." && !r.Authoritative {
				t.Fatal("local answer not authoritative")
			}
			if r.Authoritative && !r.RecursionAvailable {
				t.Fatal("RA not set")
			}
		})
	}
}

func mustReverse(a string) string {
	s, err := mdns.ReverseAddr(a)
	if err != nil {
		panic(err)
	}
	return s
}

// rrString formats an answer as "TYPE data" (TXT strings joined by "|").
func rrString(rr mdns.RR) string {
	switch rr := rr.(type) {
	case *mdns.A:
		return "A " + rr.A.String()
	case *mdns.AAAA:
		return "AAAA " + rr.AAAA.String()
	case *mdns.CNAME:
		return "CNAME " + rr.Target
	case *mdns.PTR:
		return "PTR " + rr.Ptr
	case *mdns.TXT:
		return "TXT " + strings.Join(rr.Txt, "|")
	case *mdns.SOA:
		return "SOA " + rr.Ns
	case *mdns.SRV:
		return "SRV " + strings.Join([]string{u16(rr.Priority), u16(rr.Weight), u16(rr.Port), rr.Target}, " ")
	case *mdns.MX:
		return "MX " + u16(rr.Preference) + " " + rr.Mx
	}
	return rr.String()
}

func u16(v uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), v).String()[len("0.0.0.0:"):]
}

func TestReverseAddr(t *testing.T) {
	for _, a := range []string{"10.0.2.15", "192.0.2.1", "fd00::2", "2001:db8:1:2:3:4:5:6", "::"} {
		ip, ok := reverseAddr(mustReverse(a))
		if !ok || ip != netip.MustParseAddr(a) {
			t.Errorf("reverseAddr(%s) = %v %v", mustReverse(a), ip, ok)
		}
	}
	for _, n := range []string{"1.2.3.in-addr.arpa.", "x.2.0.10.in-addr.arpa.", "300.2.0.10.in-addr.arpa.", "1.ip6.arpa.", strings.Repeat("g.", 32) + "ip6.arpa.", "example.test."} {
		if ip, ok := reverseAddr(n); ok {
			t.Errorf("reverseAddr(%q) = %v, want no address", n, ip)
		}
	}
}

func TestRecordValidate(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		err  string // "" means valid
	}{
		{"A", Record{Name: "db", Type: "A", Data: []string{"10.0.2.50"}}, ""},
		{"AAAA", Record{Name: "db.lab.test.", Type: "AAAA", Data: []string{"2001:db8::1"}}, ""},
		{"TXT", Record{Name: "t", Type: "txt", Data: []string{"hello world"}, TTL: time.Hour}, ""},
		{"no name", Record{Type: "A", Data: []string{"10.0.2.50"}}, "name: missing name"},
		{"bad name", Record{Name: "a b", Type: "A", Data: []string{"10.0.2.50"}}, "not a domain name"},
		{"wildcard", Record{Name: "*.lab.test", Type: "A", Data: []string{"10.0.2.50"}}, "not a domain name"},
		{"long label", Record{Name: strings.Repeat("a", 64), Type: "A", Data: []string{"10.0.2.50"}}, "not a domain name"},
		{"bad type", Record{Name: "db", Type: "NS", Data: []string{"x"}}, `type "NS": want one of`},
		{"unknown type", Record{Name: "db", Type: "BOGUS", Data: []string{"x"}}, `type "BOGUS"`},
		{"no data", Record{Name: "db", Type: "A"}, "data: missing"},
		{"A with IPv6", Record{Name: "db", Type: "A", Data: []string{"10.0.2.50", "fd00::1"}}, `data[1] "fd00::1": not an IPv4 address`},
		{"AAAA with IPv4", Record{Name: "db", Type: "AAAA", Data: []string{"10.0.2.50"}}, "not an IPv6 address"},
		{"A with garbage", Record{Name: "db", Type: "A", Data: []string{"ten"}}, "not an IP address"},
		{"two CNAME targets", Record{Name: "w", Type: "CNAME", Data: []string{"a", "b"}}, "exactly one target"},
		{"CNAME to itself", Record{Name: "w", Type: "CNAME", Data: []string{"w.corral.internal"}}, "to itself"},
		{"negative TTL", Record{Name: "db", Type: "A", Data: []string{"10.0.2.50"}, TTL: -time.Second}, "ttl"},
		{"fractional TTL", Record{Name: "db", Type: "A", Data: []string{"10.0.2.50"}, TTL: 1500 * time.Millisecond}, "ttl"},
		{"SRV short", Record{Name: "_x._tcp.lab.test", Type: "SRV", Data: []string{"10 5 db"}}, "priority weight port target"},
		{"SRV port", Record{Name: "_x._tcp.lab.test", Type: "SRV", Data: []string{"10 5 70000 db"}}, "0..65535"},
		{"MX", Record{Name: "lab.test", Type: "MX", Data: []string{"x db"}}, "0..65535"},
		{"TXT too long", Record{Name: "t", Type: "TXT", Data: []string{strings.Repeat("x", 5000)}}, "longer than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate = %v, want ErrInvalidRecord with %q", err, tt.err)
			}
		})
	}
	err := ValidateRecords("lab.test", []Record{
		{Name: "w", Type: "A", Data: []string{"10.0.2.1"}},
		{Name: "w.lab.test", Type: "CNAME", Data: []string{"x"}},
	})
	if err == nil || !strings.Contains(err.Error(), "records[1]") || !strings.Contains(err.Error(), "CNAME can hold no other") {
		t.Fatalf("CNAME beside A: %v", err)
	}
	if _, err := New(Config{Records: []Record{{Name: "db", Type: "A"}}}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("New with a bad record: %v", err)
	}
}

func TestLookupNetIP(t *testing.T) {
	up := dnstest.Resolver(t, map[string]netip.Addr{"example.test.": netip.MustParseAddr("192.0.2.80")})
	s, err := New(Config{Resolvers: []netip.AddrPort{up}, Lookup: testLookup, Records: testRecords})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, want := range map[string][]string{
		"vm1":                  {"10.0.2.15"},
		"gateway":              {"10.0.2.2", "fd00::2"},
		"www.corral.internal":  {"10.0.2.50", "10.0.2.51", "fd00::50"},
		"example.test":         {"192.0.2.80"},
		"10.0.2.77":            {"10.0.2.77"},
		"host.corral.internal": {"10.0.2.2"},
	} {
		got, err := s.LookupNetIP(ctx, name)
		if err != nil {
			t.Errorf("LookupNetIP(%q): %v", name, err)
			continue
		}
		var gs []string
		for _, a := range got {
			gs = append(gs, a.String())
		}
		if !slices.Equal(gs, want) {
			t.Errorf("LookupNetIP(%q) = %v, want %v", name, gs, want)
		}
	}
	for _, name := range []string{"nosuch.test", "vm9.corral.internal", "", "a..b"} {
		if got, err := s.LookupNetIP(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupNetIP(%q) = %v, %v; want ErrNotFound", name, got, err)
		}
	}
}
