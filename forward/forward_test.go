package forward

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports: package forward imports no gVisor (fences are reached
// through net.Conn), and no cobra or viper.
func TestImports(t *testing.T) {
	importcheck.Check(t, ".", importcheck.NoGVisor, importcheck.NoCobraViper)
}

var _ Dialer = (*fakeFence)(nil)

func TestValidate(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:8443")
	for _, tc := range []struct {
		name string
		f    Forward
		want string // "" valid; else in the error
	}{
		{"plain", Forward{Proto: "tcp", Listen: lo, Target: tlsPort}, ""},
		{"udp", Forward{Proto: "UDP", Listen: lo, Target: tlsPort}, ""},
		{"sni", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: "Lab-A.test."}, ""},
		{"host", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, Host: "lab_a.test"}, ""},
		{"host ip", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, Host: "2001:db8::1"}, ""},
		{"port 0", Forward{Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort}, ""},
		{"proto", Forward{Proto: "sctp", Listen: lo, Target: tlsPort}, `proto "sctp"`},
		{"no listen", Forward{Proto: "tcp", Target: tlsPort}, "listen: missing"},
		{"listen zone", Forward{Proto: "tcp", Listen: netip.MustParseAddrPort("[fe80::1%lo]:1"), Target: tlsPort}, "no zone"},
		{"target port 0", Forward{Proto: "tcp", Listen: lo, Target: netip.AddrPortFrom(targetIP, 0)}, "want address:port"},
		{"target loopback", Forward{Proto: "tcp", Listen: lo, Target: netip.MustParseAddrPort("127.0.0.1:1")}, "unicast address inside the fence"},
		{"target multicast", Forward{Proto: "tcp", Listen: lo, Target: netip.MustParseAddrPort("224.0.0.1:1")}, "unicast address inside the fence"},
		{"both names", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: "a.test", Host: "a.test"}, "give one of them"},
		{"udp sni", Forward{Proto: "udp", Listen: lo, Target: tlsPort, SNI: "a.test"}, "need proto tcp"},
		{"wildcard", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: "*.a.test"}, "no wildcards"},
		{"host port", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, Host: "a.test:80"}, `host "a.test:80"`},
		{"empty label", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: "a..test"}, "labels of 1 to 63"},
		{"long label", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: strings.Repeat("a", 64) + ".test"}, "labels of 1 to 63"},
		{"long name", Forward{Proto: "tcp", Listen: lo, Target: tlsPort, SNI: strings.Repeat("abcdefg.", 32) + "test"}, "longer than 253"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
	n := Forward{Proto: "TCP", Listen: netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), Target: netip.MustParseAddrPort("[::ffff:10.0.2.15]:2"), SNI: " Lab-A.Test. "}.Normalize()
	if n.Proto != "tcp" || n.Listen != netip.MustParseAddrPort("127.0.0.1:1") || n.Target != netip.MustParseAddrPort("10.0.2.15:2") || n.SNI != "lab-a.test" {
		t.Fatalf("Normalize: got %+v", n)
	}
	if got := (Forward{Proto: "tcp", Listen: lo, Target: tlsPort, Host: "lab-a.test"}).String(); got != "tcp 127.0.0.1:8443 host lab-a.test -> 10.0.2.15:443" {
		t.Fatalf("String: %q", got)
	}
}

// TestSNIRouting: one host port, two fences with the same lab (same
// target address), told apart by the server name of a real TLS
// ClientHello (crypto/tls client, certificate verified); an unknown name
// is closed and counted until a default route takes it.
func TestSNIRouting(t *testing.T) {
	cert, pool := testCert(t, "lab-a.test", "lab-b.test", "other.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	f := newTestForwarder(t, Config{}, a, b)
	fa := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort, SNI: "lab-a.test"})
	mustAdd(t, f, Forward{Fence: 2, Proto: "tcp", Listen: fa.Listen, Target: tlsPort, SNI: "LAB-B.test"})
	addr := fa.Listen.String()
	for _, tc := range []struct{ sni, want string }{
		{"lab-a.test", "fence a, sni lab-a.test"},
		{"lab-b.test", "fence b, sni lab-b.test"},
		{"lab-a.test", "fence a, sni lab-a.test"},
	} {
		if got, err := tlsHello(addr, tc.sni, pool); err != nil || got != tc.want {
			t.Fatalf("TLS to %s as %s: got %q, %v; want %q", addr, tc.sni, got, err, tc.want)
		}
	}
	// No route for this name, no default route: closed, counted.
	if got, err := tlsHello(addr, "other.test", pool); err == nil {
		t.Fatalf("TLS as other.test: got %q, want the connection closed", got)
	}
	waitFor(t, "unrouted counted", func() bool { return f.Stats().Unrouted == 1 })
	// A default route (fence b's) takes what names no route.
	mustAdd(t, f, Forward{Fence: 2, Proto: "tcp", Listen: fa.Listen, Target: tlsPort})
	if got, err := tlsHello(addr, "other.test", pool); err != nil || got != "fence b, sni other.test" {
		t.Fatalf("TLS as other.test with a default route: got %q, %v", got, err)
	}
	if got, err := tlsHello(addr, "lab-a.test", pool); err != nil || got != "fence a, sni lab-a.test" {
		t.Fatalf("TLS as lab-a.test with a default route: got %q, %v", got, err)
	}
	if got := f.Forwards(2); len(got) != 2 || got[0].SNI != "" || got[1].SNI != "lab-b.test" {
		t.Fatalf("Forwards(2) = %v", got)
	}
	if st := f.Stats(); st.Listeners != 1 || st.Routes != 3 {
		t.Fatalf("stats %+v: want 1 listener, 3 routes", st)
	}
}

// TestHTTPHostRouting: one host port, two fences, told apart by the Host
// of HTTP requests (with and without the port); the first request of a
// connection routes all of it.
func TestHTTPHostRouting(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	f := newTestForwarder(t, Config{}, a, b)
	fa := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: httpPort, Host: "lab-a.test"})
	mustAdd(t, f, Forward{Fence: 2, Proto: "tcp", Listen: fa.Listen, Target: httpPort, Host: "lab-b.test"})
	addr := fa.Listen.String()
	port := fmt.Sprint(fa.Listen.Port())
	for _, tc := range []struct{ host, want string }{
		{"lab-a.test", "fence a, host lab-a.test"},
		{"lab-b.test:" + port, "fence b, host lab-b.test:" + port},
		{"LAB-A.test.:" + port, "fence a, host LAB-A.test.:" + port},
	} {
		if got, err := httpGet(addr, tc.host); err != nil || got != tc.want {
			t.Fatalf("GET with Host %s: got %q, %v; want %q", tc.host, got, err, tc.want)
		}
	}
	if _, err := httpGet(addr, "other.test"); err == nil {
		t.Fatal("GET with an unknown Host answered, want the connection closed")
	}
	// Keep-alive: the second request follows the first one's route.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: lab-a.test\r\n\r\nGET / HTTP/1.1\r\nHost: lab-b.test\r\nConnection: close\r\n\r\n")
	all, _ := io.ReadAll(c)
	if n := strings.Count(string(all), "fence a, host"); n != 2 || strings.Contains(string(all), "fence b") {
		t.Fatalf("two requests on one connection: %q; want both answered by fence a", all)
	}
}

// TestDefaultRouteAndSniffing: without named routes nothing is read before
// relaying (a server-first protocol answers at once); with them, a client
// that sends nothing reaches the default route after the sniff timeout;
// connections being sniffed are bounded per listener.
func TestDefaultRouteAndSniffing(t *testing.T) {
	cert, pool := testCert(t, "lab-a.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	const sniff = 300 * time.Millisecond
	f := newTestForwarder(t, Config{SniffTimeout: sniff, MaxSniffing: 2}, a, b)
	plain := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: sshPort})
	banner := func(addr string) (string, time.Duration, error) {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return "", 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), time.Since(start), err
	}
	// The plain listener never waits for the client: its banner comes
	// even though the client never sends.
	if got, _, err := banner(plain.Listen.String()); err != nil || got != "SSH-2.0-fence-a" {
		t.Fatalf("banner through a plain forward: %q %v", got, err)
	}
	// Named routes on the same listener: the client that sends nothing
	// goes to the default route once the sniff timeout has passed.
	mustAdd(t, f, Forward{Fence: 2, Proto: "tcp", Listen: plain.Listen, Target: tlsPort, SNI: "lab-a.test"})
	got, took, err := banner(plain.Listen.String())
	if err != nil || got != "SSH-2.0-fence-a" || took < sniff {
		t.Fatalf("banner through the default route of a sniffing listener: %q after %v, %v; want fence a after >= %v", got, took, err, sniff)
	}
	if got, err := tlsHello(plain.Listen.String(), "lab-a.test", pool); err != nil || got != "fence b, sni lab-a.test" {
		t.Fatalf("TLS beside the default route: %q %v", got, err)
	}
	// At most MaxSniffing connections wait at once: with a long timeout,
	// two silent clients hold both places and a third is closed.
	f2 := newTestForwarder(t, Config{SniffTimeout: time.Minute, MaxSniffing: 2}, a)
	named := mustAdd(t, f2, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort, SNI: "lab-a.test"})
	var silent []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", named.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitFor(t, "two connections accepted", func() bool { return f2.Stats().Accepted == 2 })
	c3, err := net.DialTimeout("tcp", named.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	expectClosed(t, c3, "a third connection while two are sniffed")
	if st := f2.Stats(); st.SniffRefused != 1 {
		t.Fatalf("stats %+v: want 1 sniff refusal", st)
	}
	// Closing a silent client frees its place (it names no route: it is
	// counted unrouted).
	silent[0].Close()
	waitFor(t, "the closed client unrouted", func() bool { return f2.Stats().Unrouted == 1 })
	if got, err := tlsHello(named.Listen.String(), "lab-a.test", pool); err != nil || got != "fence a, sni lab-a.test" {
		t.Fatalf("TLS after a place freed: %q %v", got, err)
	}
}

// TestConflicts: routes conflict in one fence (ErrExists) or across
// fences (ErrConflict); names share a listener; the errors a caller can
// act on.
func TestConflicts(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	f := newTestForwarder(t, Config{}, a, b)
	base := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort})
	l := base.Listen
	u := mustAdd(t, f, Forward{Fence: 1, Proto: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.AddrPortFrom(targetIP, 53)})
	for _, tc := range []struct {
		name string
		f    Forward
		want error // nil: added
	}{
		{"same default same fence", Forward{Fence: 1, Proto: "tcp", Listen: l, Target: httpPort}, ErrExists},
		{"same default other fence", Forward{Fence: 2, Proto: "tcp", Listen: l, Target: tlsPort}, ErrConflict},
		{"mapped listen is the same", Forward{Fence: 2, Proto: "tcp", Listen: netip.AddrPortFrom(netip.AddrFrom16(l.Addr().As16()), l.Port()), Target: tlsPort}, ErrConflict},
		{"sni beside the default", Forward{Fence: 2, Proto: "tcp", Listen: l, Target: tlsPort, SNI: "b.test"}, nil},
		{"same sni other fence", Forward{Fence: 1, Proto: "tcp", Listen: l, Target: tlsPort, SNI: "B.test."}, ErrConflict},
		{"same sni same fence", Forward{Fence: 2, Proto: "tcp", Listen: l, Target: httpPort, SNI: "b.test"}, ErrExists},
		{"host of the same name", Forward{Fence: 1, Proto: "tcp", Listen: l, Target: httpPort, Host: "b.test"}, nil},
		{"other sni", Forward{Fence: 1, Proto: "tcp", Listen: l, Target: tlsPort, SNI: "a.test"}, nil},
		{"udp twice", Forward{Fence: 2, Proto: "udp", Listen: u.Listen, Target: netip.AddrPortFrom(targetIP, 53)}, ErrConflict},
		{"udp same fence", Forward{Fence: 1, Proto: "udp", Listen: u.Listen, Target: netip.AddrPortFrom(targetIP, 54)}, ErrExists},
		{"outside the subnet", Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.MustParseAddrPort("10.0.3.15:80")}, ErrInvalid},
		{"no such fence", Forward{Fence: 9, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort}, ErrNoFence},
		{"invalid", Forward{Fence: 1, Proto: "tcp", Listen: l, Target: tlsPort, SNI: "*"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Add(tc.f)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Add: %v, want %v", err, tc.want)
			}
			if tc.want == ErrConflict && !strings.Contains(err.Error(), "fence a forwards it") && !strings.Contains(err.Error(), "fence b forwards it") {
				t.Errorf("conflict error %q does not name the fence", err)
			}
			if err == nil && got.Listen != l {
				t.Errorf("added on %v, want the shared listener %v", got.Listen, l)
			}
		})
	}
	// The OS's refusals come through: a busy address.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := f.Add(Forward{Fence: 1, Proto: "tcp", Listen: busy.Addr().(*net.TCPAddr).AddrPort(), Target: tlsPort}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Add on a busy address: %v", err)
	}
	if got := f.Forwards(1); len(got) != 4 {
		t.Fatalf("Forwards(1) = %v, want 4", got)
	}
	// Remove by route: the fence must own it; Target is ignored.
	for _, tc := range []struct {
		name string
		f    Forward
		want error
	}{
		{"other fence's route", Forward{Fence: 2, Proto: "tcp", Listen: l}, ErrNotFound},
		{"unknown name", Forward{Fence: 1, Proto: "tcp", Listen: l, SNI: "c.test"}, ErrNotFound},
		{"udp as tcp", Forward{Fence: 1, Proto: "tcp", Listen: u.Listen}, ErrNotFound},
		{"host", Forward{Fence: 1, Proto: "tcp", Listen: l, Host: "B.TEST"}, nil},
		{"host again", Forward{Fence: 1, Proto: "tcp", Listen: l, Host: "b.test"}, ErrNotFound},
		{"udp", Forward{Fence: 1, Proto: "udp", Listen: u.Listen}, nil},
	} {
		t.Run("remove "+tc.name, func(t *testing.T) {
			if err := f.Remove(tc.f); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Remove: %v, want %v", err, tc.want)
			}
		})
	}
	f.Close()
	if _, err := f.Add(Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", l.String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after Close")
	}
}

// TestAddRemoveWhileOpen: on a shared listener, removing one fence's
// route closes its connections (before Remove returns) and leaves the
// other's open and working; removing the last route closes the listener.
func TestAddRemoveWhileOpen(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	f := newTestForwarder(t, Config{}, a, b)
	fa := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: echoPort, Host: "lab-a.test"})
	fb := mustAdd(t, f, Forward{Fence: 2, Proto: "tcp", Listen: fa.Listen, Target: echoPort, Host: "lab-b.test"})
	open := func(host string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.DialTimeout("tcp", fa.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		req := "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		io.WriteString(c, req)
		r := bufio.NewReader(c)
		echo := make([]byte, len(req))
		if _, err := io.ReadFull(r, echo); err != nil || string(echo) != req {
			t.Fatalf("echo of %s: %q %v", host, echo, err)
		}
		return c, r
	}
	ca1, _ := open("lab-a.test")
	ca2, _ := open("lab-a.test")
	cb, rb := open("lab-b.test")
	if a.open.Load() != 2 || b.open.Load() != 1 || f.Stats().TCPConns != 3 {
		t.Fatalf("open: fence a %d, fence b %d, stats %+v", a.open.Load(), b.open.Load(), f.Stats())
	}
	if err := f.Remove(fa); err != nil {
		t.Fatal(err)
	}
	if n := a.open.Load(); n != 0 {
		t.Fatalf("fence a has %d connections open after Remove returned", n)
	}
	expectClosed(t, ca1, "fence a's connection after its route was removed")
	expectClosed(t, ca2, "fence a's second connection")
	// Fence b's connection goes on, and new ones reach it.
	io.WriteString(cb, "still there")
	buf := make([]byte, len("still there"))
	if _, err := io.ReadFull(rb, buf); err != nil || string(buf) != "still there" {
		t.Fatalf("fence b's connection after fence a's route went: %q %v", buf, err)
	}
	open("lab-b.test")
	// Fence a's name now routes nowhere; adding it back works at once.
	c, err := net.DialTimeout("tcp", fa.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: lab-a.test\r\n\r\n")
	expectClosed(t, c, "a request for the removed route")
	c.Close()
	mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: fa.Listen, Target: echoPort, Host: "lab-a.test"})
	open("lab-a.test")
	// DetachFence removes fence a's route and closes its connections; the
	// last route's removal closes the listener.
	f.DetachFence(1)
	if n := a.open.Load(); n != 0 {
		t.Fatalf("fence a has %d connections open after DetachFence", n)
	}
	if err := f.Remove(fb); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, cb, "fence b's connection after its route was removed")
	if _, err := net.DialTimeout("tcp", fa.Listen.String(), 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after the last route went: %v, want connection refused", err)
	}
	if st := f.Stats(); st.Listeners != 0 || st.Routes != 0 || st.TCPConns != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := f.Add(Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: echoPort}); !errors.Is(err, ErrNoFence) {
		t.Fatalf("Add after DetachFence: %v", err)
	}
}

// TestHalfCloseAndBulk: 4 MiB each way through a plain and a named
// route; the client's half-close reaches the target, whose half-close
// ends the client's read.
func TestHalfCloseAndBulk(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a := newFakeFence(t, "a", cert)
	f := newTestForwarder(t, Config{}, a)
	plain := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: echoPort})
	named := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: echoPort, Host: "lab-a.test"})
	for _, tc := range []struct {
		name   string
		addr   string
		prefix string
	}{
		{"plain", plain.Listen.String(), ""},
		{"host", named.Listen.String(), "GET / HTTP/1.1\r\nHost: lab-a.test\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tc.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			data := make([]byte, 4<<20)
			rand.Read(data)
			data = append([]byte(tc.prefix), data...)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				errc <- err
			}()
			got, err := io.ReadAll(c)
			if werr := <-errc; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echoed %d of %d bytes, equal %v, err %v", len(got), len(data), bytes.Equal(got, data), err)
			}
		})
	}
	waitFor(t, "connections released", func() bool { return f.Stats().TCPConns == 0 && a.open.Load() == 0 })
}

// TestDialErrors: a fence that refuses (its limit) or has nothing at the
// target: the host connection is closed, the error counted.
func TestDialErrors(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a := newFakeFence(t, "a", cert)
	f := newTestForwarder(t, Config{}, a)
	closed := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: closedTgt})
	c, err := net.DialTimeout("tcp", closed.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c, "a forward to a closed port")
	a.fail.Store(true)
	echo := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: echoPort})
	c2, err := net.DialTimeout("tcp", echo.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	expectClosed(t, c2, "a forward whose fence refuses")
	waitFor(t, "dial errors counted", func() bool { return f.Stats().DialErrors == 2 && f.Stats().TCPConns == 0 })
}

// TestUDPForward: datagrams relayed both ways per source, flows end when
// idle, removal closes them.
func TestUDPForward(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a, b := newFakeFence(t, "a", cert), newFakeFence(t, "b", cert)
	f := newTestForwarder(t, Config{}, a, b)
	var fws [2]Forward
	for i := range fws {
		fws[i] = mustAdd(t, f, Forward{Fence: uint32(i + 1), Proto: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.AddrPortFrom(targetIP, 53)})
	}
	roundTrip := func(c net.Conn, msg string) string {
		t.Helper()
		buf := make([]byte, 1024)
		for i := 0; i < 50; i++ {
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				return string(buf[:n])
			}
		}
		t.Fatalf("no answer to %q", msg)
		return ""
	}
	var conns [2]net.Conn
	for i, name := range []string{"a", "b"} {
		c, err := net.Dial("udp", fws[i].Listen.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		if got := roundTrip(c, "hi"); got != name+":hi" {
			t.Fatalf("udp forward of fence %s: %q", name, got)
		}
	}
	// A second source is a second flow.
	c2, err := net.Dial("udp", fws[0].Listen.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := roundTrip(c2, "yo"); got != "a:yo" {
		t.Fatalf("second source: %q", got)
	}
	if st := f.Stats(); st.UDPFlows != 3 || a.open.Load() != 2 {
		t.Fatalf("stats %+v, fence a open %d: want 3 flows, 2 in fence a", st, a.open.Load())
	}
	// Idle flows end (UDPIdleTimeout 500 ms), the forward stays.
	waitFor(t, "idle flows ended", func() bool { return f.Stats().UDPFlows == 0 && a.open.Load() == 0 && b.open.Load() == 0 })
	if got := roundTrip(conns[0], "again"); got != "a:again" {
		t.Fatalf("after idle: %q", got)
	}
	if err := f.Remove(fws[0]); err != nil {
		t.Fatal(err)
	}
	if a.open.Load() != 0 {
		t.Fatalf("fence a has %d flows open after Remove", a.open.Load())
	}
	// A refusing fence: datagrams dropped, counted.
	b.fail.Store(true)
	c3, err := net.Dial("udp", fws[1].Listen.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.Write([]byte("lost"))
	waitFor(t, "udp dial error counted", func() bool { return f.Stats().DialErrors >= 1 })
}

// TestListenersAndBound: the bound sockets, as wt8b's self-socket registry
// reads them, with wildcard addresses covering their family (and [::]
// covering IPv4).
func TestListenersAndBound(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a := newFakeFence(t, "a", cert)
	f := newTestForwarder(t, Config{}, a)
	lo := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort, SNI: "a.test"})
	mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: lo.Listen, Target: tlsPort, SNI: "b.test"})
	any4 := mustAdd(t, f, Forward{Fence: 1, Proto: "udp", Listen: netip.MustParseAddrPort("0.0.0.0:0"), Target: netip.AddrPortFrom(targetIP, 53)})
	if !any4.Listen.Addr().Is4() {
		t.Fatalf("0.0.0.0:0 bound as %v, want an IPv4 socket", any4.Listen)
	}
	want := []Listener{{"tcp", lo.Listen}, {"udp", any4.Listen}}
	var any6 Forward
	if ln, err := net.Listen("tcp", "[::]:0"); err == nil {
		ln.Close()
		any6 = mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("[::]:0"), Target: tlsPort})
		want = []Listener{{"tcp", lo.Listen}, {"tcp", any6.Listen}, {"udp", any4.Listen}}
	}
	got := f.Listeners()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Listeners = %v, want %v", got, want)
	}
	p4 := any4.Listen.Port()
	for _, tc := range []struct {
		proto string
		addr  netip.AddrPort
		want  bool
	}{
		{"tcp", lo.Listen, true},
		{"tcp", netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), lo.Listen.Port()), true},
		{"udp", lo.Listen, false},
		{"tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), lo.Listen.Port()), false},
		{"udp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p4), true},
		{"udp", netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), p4), true},
		{"udp", netip.AddrPortFrom(netip.MustParseAddr("::1"), p4), false},
		{"tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p4), false},
	} {
		if got := f.Bound(tc.proto, tc.addr); got != tc.want {
			t.Errorf("Bound(%s, %v) = %v, want %v", tc.proto, tc.addr, got, tc.want)
		}
	}
	if any6.Listen.IsValid() {
		p6 := any6.Listen.Port()
		for _, a := range []string{"::1", "127.0.0.1", "2001:db8::1"} {
			if !f.Bound("tcp", netip.AddrPortFrom(netip.MustParseAddr(a), p6)) {
				t.Errorf("Bound(tcp, %s:%d) = false under [::]:%d", a, p6, p6)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { f.Bound("tcp", lo.Listen) }); n != 0 {
		t.Errorf("Bound allocates %v times", n)
	}
}

// TestReserve: every socket the Forwarder binds is reported to
// Config.Reserve — a fixed port before the bind, port 0 with the port it
// got — and released once closed or when the bind fails.
func TestReserve(t *testing.T) {
	cert, _ := testCert(t, "x.test")
	a := newFakeFence(t, "a", cert)
	var mu sync.Mutex
	held := map[string]int{}
	var order []string
	reserve := func(proto string, addr netip.AddrPort) func() {
		k := proto + " " + addr.String()
		mu.Lock()
		held[k]++
		order = append(order, "+"+k)
		mu.Unlock()
		var once sync.Once
		return func() {
			once.Do(func() {
				mu.Lock()
				held[k]--
				order = append(order, "-"+k)
				mu.Unlock()
			})
		}
	}
	heldNow := func(k string) int { mu.Lock(); defer mu.Unlock(); return held[k] }
	f := newTestForwarder(t, Config{Reserve: reserve}, a)

	// Port 0: reported with the bound port.
	t0 := mustAdd(t, f, Forward{Fence: 1, Proto: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: tlsPort})
	if heldNow("tcp "+t0.Listen.String()) != 1 {
		t.Fatalf("tcp %v not reserved: %v", t0.Listen, order)
	}
	u0 := mustAdd(t, f, Forward{Fence: 1, Proto: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Target: netip.AddrPortFrom(targetIP, 53)})
	if heldNow("udp "+u0.Listen.String()) != 1 {
		t.Fatalf("udp %v not reserved: %v", u0.Listen, order)
	}
	// A fixed port: reserved before the bind; a bind that fails releases.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ba := busy.Addr().(*net.TCPAddr).AddrPort()
	if _, err := f.Add(Forward{Fence: 1, Proto: "tcp", Listen: ba, Target: tlsPort}); err == nil {
		t.Fatalf("forward on a busy port %v added", ba)
	}
	k := "tcp " + ba.String()
	if heldNow(k) != 0 || !slices.Contains(order, "+"+k) || !slices.Contains(order, "-"+k) {
		t.Fatalf("busy %s: reserved and released? %v", k, order)
	}
	// Remove releases.
	if err := f.Remove(t0); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(u0); err != nil {
		t.Fatal(err)
	}
	if heldNow("tcp "+t0.Listen.String()) != 0 || heldNow("udp "+u0.Listen.String()) != 0 {
		t.Fatalf("removed forwards still reserved: %v", order)
	}
}
