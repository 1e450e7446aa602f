package socks

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// fence is the test's stand-in for a fence: the loopback listeners it
// allows, by address; every other destination is refused.
type fence struct {
	mu    sync.Mutex
	allow map[netip.AddrPort]bool
	names map[string][]netip.Addr
}

func (f *fence) dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	f.mu.Lock()
	ok := f.allow[dst]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%v: %w", dst, ErrRefused)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", dst.String())
}

func (f *fence) dialUDP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	f.mu.Lock()
	ok := f.allow[dst]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%v: %w", dst, ErrRefused)
	}
	var d net.Dialer
	return d.DialContext(ctx, "udp", dst.String())
}

func (f *fence) resolve(_ context.Context, name string) ([]netip.Addr, error) {
	if a, ok := f.names[name]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// echoServer answers each line with prefix+line until the client closes.
func echoServer(t *testing.T, prefix string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s%s\n", prefix, sc.Text())
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// start serves a server on loopback until the test ends.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if a := s.Stats().Active; a != 0 {
			t.Errorf("%d clients still active after Close", a)
		}
	})
	return s, ln.Addr().String()
}

func dialVia(t *testing.T, socksAddr, dst string) (net.Conn, error) {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.(proxy.ContextDialer).DialContext(ctx, "tcp", dst)
}

func roundTrip(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(got, "\n")
}

// TestConnect: x/net/proxy's SOCKS5 client reaches an allowed destination
// by address and by name (socks5h), and is refused elsewhere.
func TestConnect(t *testing.T) {
	echo := echoServer(t, "vm1:")
	other := echoServer(t, "outside:")
	f := &fence{allow: map[netip.AddrPort]bool{echo: true},
		names: map[string][]netip.Addr{"vm1": {netip.MustParseAddr("127.0.0.1")}}}
	s, addr := start(t, Config{Dial: f.dial, Resolve: f.resolve})

	c, err := dialVia(t, addr, echo.String())
	if err != nil {
		t.Fatalf("CONNECT %v: %v", echo, err)
	}
	if got := roundTrip(t, c, "hello"); got != "vm1:hello" {
		t.Fatalf("got %q", got)
	}
	c.Close()

	c, err = dialVia(t, addr, fmt.Sprintf("vm1:%d", echo.Port()))
	if err != nil {
		t.Fatalf("CONNECT by name: %v", err)
	}
	if got := roundTrip(t, c, "by name"); got != "vm1:by name" {
		t.Fatalf("got %q", got)
	}
	c.Close()

	if _, err := dialVia(t, addr, other.String()); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("CONNECT outside the fence: %v, want not allowed", err)
	}
	if _, err := dialVia(t, addr, "nosuch:80"); err == nil || !strings.Contains(err.Error(), "host unreachable") {
		t.Fatalf("CONNECT to an unknown name: %v, want host unreachable", err)
	}
	waitFor(t, "counters", func() bool {
		st := s.Stats()
		return st.Connects == 2 && st.Refused == 1 && st.Failed == 1 && st.Accepted == 4 && st.Active == 0
	}, func() string { return fmt.Sprintf("%+v", s.Stats()) })
}

func waitFor(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBadClients: malformed greetings and requests get the RFC's answers
// (or a close), are counted, and cost the server nothing afterwards.
func TestBadClients(t *testing.T) {
	echo := echoServer(t, "")
	f := &fence{allow: map[netip.AddrPort]bool{echo: true}}
	s, addr := start(t, Config{Dial: f.dial, HandshakeTimeout: 300 * time.Millisecond})
	tests := []struct {
		name string
		send []byte
		want []byte // the server's whole answer before it closes
	}{
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil},
		{"no methods", []byte{5, 0}, nil},
		{"password only", []byte{5, 1, 2}, []byte{5, 0xff}},
		{"bind", append([]byte{5, 1, 0, 5, cmdBind, 0, atypIPv4, 127, 0, 0, 1}, 0, 80), []byte{5, 0, 5, repCommandUnsupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"udp associate without DialUDP", append([]byte{5, 1, 0, 5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0}, 0, 0), []byte{5, 0, 5, repCommandUnsupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"unknown address type", []byte{5, 1, 0, 5, cmdConnect, 0, 9}, []byte{5, 0, 5, repAddressUnsupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"name without a resolver", []byte{5, 1, 0, 5, cmdConnect, 0, atypDomain, 3, 'v', 'm', '1', 0, 80}, []byte{5, 0, 5, repAddressUnsupported, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"stalls in the request: handshake timeout", []byte{5, 1, 0, 5, cmdConnect}, []byte{5, 0}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(tt.send)
			got, err := io.ReadAll(c)
			if err != nil && !(tt.want == nil && errors.Is(err, syscall.ECONNRESET)) {
				// A close with unread input is a reset; only answers that
				// must arrive are read in full.
				t.Fatalf("read: %v", err)
			}
			if string(got) != string(tt.want) {
				t.Fatalf("answer % x, want % x", got, tt.want)
			}
			waitFor(t, "bad request counted", func() bool { return s.Stats().BadRequests == uint64(i+1) },
				func() string { return fmt.Sprintf("%+v", s.Stats()) })
		})
	}
	// Still serving.
	c, err := dialVia(t, addr, echo.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "ok"); got != "ok" {
		t.Fatalf("got %q", got)
	}
	c.Close()
}

// TestMaxConns: clients beyond MaxConns are closed at once and counted;
// a slot frees when a client leaves.
func TestMaxConns(t *testing.T) {
	echo := echoServer(t, "")
	f := &fence{allow: map[netip.AddrPort]bool{echo: true}}
	s, addr := start(t, Config{Dial: f.dial, MaxConns: 2})
	var held []net.Conn
	for range 2 {
		c, err := dialVia(t, addr, echo.String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third client read %d bytes, want a close", n)
	}
	c.Close()
	if st := s.Stats(); st.OverLimit != 1 || st.Active != 2 {
		t.Fatalf("stats %+v: want 1 over limit, 2 active", st)
	}
	held[0].Close()
	waitFor(t, "a free slot", func() bool { return s.Stats().Active == 1 }, func() string { return fmt.Sprintf("%+v", s.Stats()) })
	c, err = dialVia(t, addr, echo.String())
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	c.Close()
	held[1].Close()
}

// TestCloseEndsClients: Close ends spliced connections and Serve returns.
func TestCloseEndsClients(t *testing.T) {
	echo := echoServer(t, "")
	f := &fence{allow: map[netip.AddrPort]bool{echo: true}}
	s := New(Config{Dial: f.dial})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c, err := dialVia(t, ln.Addr().String(), echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("client after Close: %v", err)
	}
	if s.Stats().Active != 0 {
		t.Fatalf("active %d after Close", s.Stats().Active)
	}
	if err := s.Serve(ln); err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// TestUDPAssociate: datagrams through a UDP association reach an allowed
// destination and come back with its address; others are dropped.
func TestUDPAssociate(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), b[:n]...), from)
		}
	}()
	dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	f := &fence{allow: map[netip.AddrPort]bool{dst: true},
		names: map[string][]netip.Addr{"vm1": {netip.MustParseAddr("127.0.0.1")}}}
	// Relay sockets are reserved (no guest's NAT may reach them) while
	// they are open.
	var resMu sync.Mutex
	reserved := map[netip.AddrPort]int{}
	reserve := func(proto string, a netip.AddrPort) func() {
		if proto != "udp" {
			t.Errorf("Reserve(%q, %v): want udp", proto, a)
		}
		resMu.Lock()
		reserved[a]++
		resMu.Unlock()
		return func() { resMu.Lock(); reserved[a]--; resMu.Unlock() }
	}
	held := func(a netip.AddrPort) int { resMu.Lock(); defer resMu.Unlock(); return reserved[a] }
	s, addr := start(t, Config{Dial: f.dial, DialUDP: f.dialUDP, Resolve: f.resolve, Reserve: reserve})

	ctrl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	ctrl.Write([]byte{5, 1, 0, 5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(ctrl, reply); err != nil {
		t.Fatal(err)
	}
	if reply[3] != repSucceeded || reply[5] != atypIPv4 {
		t.Fatalf("reply % x", reply)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:]))
	if held(relay) != 1 {
		t.Fatalf("relay %v not reserved while open: %v", relay, reserved)
	}
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()

	byAddr := appendAddr([]byte{0, 0, 0}, dst)
	byName := binary.BigEndian.AppendUint16(append([]byte{0, 0, 0, atypDomain, 3}, "vm1"...), dst.Port())
	outside := appendAddr([]byte{0, 0, 0}, netip.MustParseAddrPort("127.0.0.1:9"))
	fragment := append([]byte{0, 0, 1}, byAddr[3:]...)
	for i, hdr := range [][]byte{outside, fragment, byAddr, byName} {
		uc.SetDeadline(time.Now().Add(10 * time.Second))
		msg := fmt.Sprintf("d%d", i)
		if _, err := uc.Write(append(append([]byte(nil), hdr...), msg...)); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			continue // dropped: no answer
		}
		b := make([]byte, 1500)
		n, err := uc.Read(b)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := string(byAddr) + "echo:" + msg
		if string(b[:n]) != want {
			t.Fatalf("datagram %d: got % x, want % x", i, b[:n], want)
		}
	}
	if st := s.Stats(); st.Associates != 1 || st.UDPDropped != 2 || st.Refused != 1 {
		t.Fatalf("stats %+v: want 1 association, 2 dropped, 1 refused", st)
	}
	// The association ends with its control connection.
	ctrl.Close()
	waitFor(t, "association closed", func() bool { return s.Stats().Active == 0 }, func() string { return fmt.Sprintf("%+v", s.Stats()) })
	waitFor(t, "relay released", func() bool { return held(relay) == 0 }, func() string { return fmt.Sprint(reserved) })
}
