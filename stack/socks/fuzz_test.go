package socks

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// fuzzConn is a net.Conn that reads a fixed input and discards writes.
type fuzzConn struct {
	r *bytes.Reader
}

func (c fuzzConn) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (c fuzzConn) Write(b []byte) (int, error)    { return len(b), nil }
func (fuzzConn) Close() error                     { return nil }
func (fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080} }
func (fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (fuzzConn) SetDeadline(time.Time) error      { return nil }
func (fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServeConn: no client input makes the server panic; every dial it
// attempts is one the request named (and refused here).
func FuzzServeConn(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 10, 0, 2, 15, 0, 80})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 3, 'v', 'm', '1', 0, 80})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15, 0, 22})
	f.Add([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 2, 0, 2, 5, 2, 0, 1})
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0})
	s := New(Config{
		Dial: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			return nil, ErrRefused
		},
		DialUDP: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			return nil, ErrRefused
		},
		Resolve: func(ctx context.Context, name string) ([]netip.Addr, error) {
			if name == "vm1" {
				return []netip.Addr{netip.MustParseAddr("10.0.2.15")}, nil
			}
			return nil, errors.New("no such host")
		},
	})
	defer s.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[min(4, len(b)-1)] == cmdUDPAssociate {
			return // UDP ASSOCIATE waits for its control connection to end: TestUDPAssociate covers it
		}
		s.serveConn(fuzzConn{bytes.NewReader(b)})
	})
}

// FuzzParseUDP: the UDP request header parser never panics and never
// returns data beyond its input.
func FuzzParseUDP(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 10, 0, 2, 15, 0, 53, 'x'})
	f.Add([]byte{0, 0, 0, 3, 3, 'v', 'm', '1', 0, 53, 'x'})
	f.Add([]byte{0, 0, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15, 0, 53})
	s := New(Config{Resolve: func(ctx context.Context, name string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("10.0.2.15")}, nil
	}})
	defer s.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		dst, data, ok := s.parseUDP(b)
		if !ok {
			return
		}
		if !dst.IsValid() || len(data) > len(b)-udpHeaderMin+3 {
			t.Fatalf("parseUDP(% x) = %v, %d bytes of data", b, dst, len(data))
		}
	})
}
