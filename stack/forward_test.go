package stack

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// addTCPForward adds a TCP forward from listen to guestIP:port and returns
// it with the bound listen address.
func addTCPForward(t *testing.T, g *Gateway, listen string, port uint16) Forward {
	t.Helper()
	f := Forward{Proto: "tcp", Listen: netip.MustParseAddrPort(listen), Target: netip.AddrPortFrom(guestIP, port)}
	if err := g.AddForward(f); err != nil {
		t.Fatalf("AddForward %v: %v", f, err)
	}
	for _, got := range g.Forwards() {
		if got.Proto == "tcp" && got.Target == f.Target && got.Listen.Addr() == f.Listen.Addr() {
			if got.Listen.Port() == 0 {
				t.Fatalf("forward %v: port 0 reported", got)
			}
			return got
		}
	}
	t.Fatalf("forward %v not in %v", f, g.Forwards())
	return Forward{}
}

// waitStats polls g.Stats until cond holds or fails after 10 s.
func waitStats(t *testing.T, g *Gateway, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(g.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, g.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectClosed fails unless c's peer closes (EOF or reset) within 10 s.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open", what)
	}
}

func TestTCPForwardListenErrors(t *testing.T) {
	g := newTestGateway(t, Config{})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := Forward{Proto: "tcp", Listen: busy.Addr().(*net.TCPAddr).AddrPort(), Target: netip.AddrPortFrom(guestIP, 22)}
	err = g.AddForward(f)
	if err == nil || errors.Is(err, ErrForwardExists) {
		t.Fatalf("AddForward on a busy address: %v", err)
	}
	if fs := g.Forwards(); len(fs) != 0 {
		t.Fatalf("Forwards after failed add = %v", fs)
	}
	// The same address with the other protocol is a different forward.
	if err := g.AddForward(Forward{Proto: "udp", Listen: f.Listen, Target: f.Target}); err != nil {
		t.Fatalf("udp forward on the tcp port: %v", err)
	}
}

func TestTCPForwardHalfCloseAndBulk(t *testing.T) {
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "")
	listens := []string{"127.0.0.1:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		listens = append(listens, "[::1]:0")
	} else {
		t.Logf("no IPv6 loopback, host side tested on IPv4 only: %v", err)
	}
	for _, l := range listens {
		f := addTCPForward(t, g, l, 8080)
		c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		data := make([]byte, 4<<20)
		rand.Read(data)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				// The echo ends when it reads EOF: only a half-close
				// carried through the forward ends the read below.
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if werr := <-errc; werr != nil {
			t.Fatalf("%s: write: %v", l, werr)
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: echoed %d of %d bytes, equal %v, err %v", l, len(got), len(data), bytes.Equal(got, data), err)
		}
		c.Close()
	}
	waitStats(t, g, "connections released", func(s Stats) bool { return s.TCPConns == 0 })
}

func TestTCPForwardLimitRemoveAndDialFailure(t *testing.T) {
	g := newTestGateway(t, Config{MaxTCPConns: 2})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "e:")
	f := addTCPForward(t, g, "127.0.0.1:0", 8080)

	var open []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 16)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "e:x" {
			t.Fatalf("conn %d: %q %v", i, buf[:n], err)
		}
		open = append(open, c)
	}
	if st := g.Stats(); st.TCPConns != 2 {
		t.Fatalf("stats %+v: want 2 connections", st)
	}
	// A third is accepted by the kernel, then closed and counted.
	c3, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	expectClosed(t, c3, "connection beyond MaxTCPConns")
	if st := g.Stats(); st.TCPConns != 2 || st.TCPRefused == 0 {
		t.Fatalf("stats %+v: want 2 connections and a refusal", st)
	}

	// Removing the forward closes its connections before returning.
	if err := g.RemoveForward(f); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.TCPConns != 0 {
		t.Fatalf("stats after RemoveForward %+v: want 0 connections", st)
	}
	for _, c := range open {
		expectClosed(t, c, "connection of a removed forward")
	}
	if _, err := net.DialTimeout("tcp", f.Listen.String(), 2*time.Second); err == nil {
		t.Fatal("removed forward's address still accepts")
	}

	// A target nothing listens on: the host connection is closed.
	f2 := addTCPForward(t, g, "127.0.0.1:0", 9)
	c, err := net.DialTimeout("tcp", f2.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c, "connection to a closed target port")
	waitStats(t, g, "failed dial released", func(s Stats) bool { return s.TCPConns == 0 })
}

func TestTCPForwardGatewayCloseWithOpenConn(t *testing.T) {
	g := newTestGateway(t, Config{})
	gs := newGuest(t, g, guestMAC, guestIP)
	guestEcho(t, gs, 8080, "")
	f := addTCPForward(t, g, "127.0.0.1:0", 8080)
	if got, err := tcpRoundTrip(f.Listen.String(), "hi"); err != nil || got != "hi" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	c, err := net.DialTimeout("tcp", f.Listen.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitStats(t, g, "connection accepted", func(s Stats) bool { return s.TCPConns == 1 })
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs with an open forwarded connection")
	}
	expectClosed(t, c, "connection after gateway Close")
	if st := g.Stats(); st.TCPConns != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
}
