package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/corralnet/corral/stack/dns/dnstest"
)

func serve(t *testing.T, cfg Config) (udp, tcp string, s *Server) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { s.ServePacket(pc); done <- struct{}{} }()
	go func() { s.ServeListener(ln); done <- struct{}{} }()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		<-done
		<-done
	})
	return pc.LocalAddr().String(), ln.Addr().String(), s
}

func TestServer(t *testing.T) {
	up := dnstest.Resolver(t, map[string]netip.Addr{"example.test.": netip.MustParseAddr("192.0.2.80")})
	dead := netip.MustParseAddrPort("127.0.0.1:1") // nothing listens: tried first, fails fast
	udpAddr, tcpAddr, s := serve(t, Config{
		Domain:    "Corral.Internal.",
		Resolvers: []netip.AddrPort{dead, up},
		Timeout:   time.Second,
		Lookup: func(h string) (v4, v6 netip.Addr) {
			switch h {
			case "vm1":
				return netip.MustParseAddr("10.0.2.15"), netip.Addr{}
			case "v6only":
				return netip.Addr{}, netip.MustParseAddr("fd00::2")
			}
			return netip.Addr{}, netip.Addr{}
		},
	})
	tests := []struct {
		name  string
		q     string
		qtype uint16
		rcode int
		ans   string
		net   string
	}{
		{"lease A", "vm1.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, "10.0.2.15", "udp"},
		{"lease A case", "VM1.corral.INTERNAL.", mdns.TypeA, mdns.RcodeSuccess, "10.0.2.15", "udp"},
		{"lease A tcp", "vm1.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, "10.0.2.15", "tcp"},
		{"lease AAAA empty", "vm1.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, "", "udp"},
		{"v6 name AAAA", "v6only.corral.internal.", mdns.TypeAAAA, mdns.RcodeSuccess, "fd00::2", "udp"},
		{"v6 name A empty", "v6only.corral.internal.", mdns.TypeA, mdns.RcodeSuccess, "", "udp"},
		{"unknown lease", "vm2.corral.internal.", mdns.TypeA, mdns.RcodeNameError, "", "udp"},
		{"nested name", "a.vm1.corral.internal.", mdns.TypeA, mdns.RcodeNameError, "", "udp"},
		{"forwarded", "example.test.", mdns.TypeA, mdns.RcodeSuccess, "192.0.2.80", "udp"},
		{"forwarded over tcp to udp-only upstreams: SERVFAIL", "example.test.", mdns.TypeA, mdns.RcodeServerFailure, "", "tcp"},
		{"forwarded nxdomain", "nosuch.test.", mdns.TypeA, mdns.RcodeNameError, "", "udp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &mdns.Client{Net: tt.net, Timeout: 5 * time.Second}
			addr := udpAddr
			if tt.net == "tcp" {
				addr = tcpAddr
			}
			q := new(mdns.Msg)
			q.SetQuestion(tt.q, tt.qtype)
			r, _, err := c.Exchange(q, addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if tt.ans == "" {
				if len(r.Answer) != 0 {
					t.Fatalf("answers %v, want none", r.Answer)
				}
				return
			}
			var got string
			if len(r.Answer) == 1 {
				switch rr := r.Answer[0].(type) {
				case *mdns.A:
					got = rr.A.String()
				case *mdns.AAAA:
					got = rr.AAAA.String()
				}
			}
			if got != tt.ans {
				t.Fatalf("answer %v, want %s", r.Answer, tt.ans)
			}
		})
	}
	if s.Queries() == 0 || s.Failures() == 0 {
		t.Fatalf("queries %d failures %d", s.Queries(), s.Failures())
	}
}

func TestMalformedQueries(t *testing.T) {
	udpAddr, _, s := serve(t, Config{Domain: "corral.internal"})
	c, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, b := range [][]byte{{}, {1}, []byte("garbage that is not dns at all"), make([]byte, 12)} {
		c.Write(b)
	}
	// Two questions: FORMERR (miekg/dns default accept func).
	q := new(mdns.Msg)
	q.SetQuestion("a.corral.internal.", mdns.TypeA)
	q.Question = append(q.Question, q.Question[0])
	cl := &mdns.Client{Timeout: 5 * time.Second}
	r, _, err := cl.Exchange(q, udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != mdns.RcodeFormatError {
		t.Fatalf("rcode %v", r.Rcode)
	}
	// The server still answers after garbage.
	q = new(mdns.Msg)
	q.SetQuestion("x.corral.internal.", mdns.TypeA)
	if r, _, err = cl.Exchange(q, udpAddr); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after garbage: %v %v", r, err)
	}
	_ = s
}

func TestResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# x\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n"), 0o644)
	got, err := ResolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53"), netip.MustParseAddrPort("[::1]:53")}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ResolvConf = %v, want %v", got, want)
	}
	if _, err := ResolvConf(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func FuzzAnswer(f *testing.F) {
	q := new(mdns.Msg)
	q.SetQuestion("vm1.corral.internal.", mdns.TypeA)
	b, _ := q.Pack()
	f.Add(b)
	q.SetQuestion("example.test.", mdns.TypeAAAA)
	b, _ = q.Pack()
	f.Add(b)
	s, err := New(Config{Domain: "corral.internal", Lookup: testLookup, Reverse: testReverse,
		Aliases: map[string]string{"host.lima.internal": "host"}, Records: testRecords})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(mdns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		r := s.answer(context.Background(), m, "udp") // no resolvers: forwards fail fast
		if r == nil || r.Id != m.Id || !r.Response {
			t.Fatalf("bad reply %v", r)
		}
		if _, err := r.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
	})
}
