// Package dnstest provides a fake upstream resolver for tests of the
// gateway's DNS forwarding, on plain loopback sockets.
package dnstest

import (
	"net"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// Resolver serves DNS over UDP on 127.0.0.1 until the test ends, and
// returns its address. A query with one question for a name in names
// (fully qualified, lower case: "example.test.") is answered with that
// address when it asks for an A record, and with no records (NOERROR)
// otherwise; any other name, or a query without exactly one question,
// gets NXDOMAIN. The server goroutine is stopped and waited for at
// cleanup.
func Resolver(t testing.TB, names map[string]netip.Addr) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		var addr netip.Addr
		known := false
		if len(r.Question) == 1 {
			addr, known = names[r.Question[0].Name]
		}
		switch {
		case !known:
			m.Rcode = mdns.RcodeNameError
		case r.Question[0].Qtype == mdns.TypeA:
			m.Answer = append(m.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A:   addr.AsSlice(),
			})
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		pc.Close()
		t.Fatalf("dnstest: resolver did not start: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}
