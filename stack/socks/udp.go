package socks

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// udpHeaderMin is the smallest UDP request header: RSV(2) FRAG(1) ATYP(1)
// an IPv4 address (4) and a port (2) (RFC 1928 section 7).
const udpHeaderMin = 10

// maxDatagram is the largest datagram relayed.
const maxDatagram = 65535

// associate serves UDP ASSOCIATE: a relay socket on the address the client
// reached the server on; datagrams from the client (only from the control
// connection's IP, and from the address the request named when it named
// one) go to their destinations through DialUDP, answers come back with
// the request header. The association ends with the control connection.
func (s *Server) associate(c net.Conn, req request) {
	ctrl := addrPortOf(c.RemoteAddr())
	local := addrPortOf(c.LocalAddr())
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		s.failed.Add(1)
		writeReply(c, repGeneralFailure, netip.AddrPort{})
		return
	}
	if !s.track(pc, false) {
		pc.Close()
		return
	}
	defer s.untrack(pc, false)
	if s.cfg.Reserve != nil {
		release := s.cfg.Reserve("udp", pc.LocalAddr().(*net.UDPAddr).AddrPort())
		defer release() // runs after pc.Close below
	}
	defer pc.Close()
	// The client may name the address it will send from (port 0: any).
	var fixed netip.AddrPort
	if req.name == "" && req.addr.Port() != 0 && !req.addr.Addr().IsUnspecified() {
		fixed = netip.AddrPortFrom(req.addr.Addr().Unmap(), req.addr.Port())
	}
	if err := writeReply(c, repSucceeded, pc.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		return
	}
	s.associates.Add(1)
	c.SetDeadline(time.Time{})

	var wg sync.WaitGroup
	flows := make(map[netip.AddrPort]net.Conn)
	defer func() {
		// End the control connection and every flow, then wait for
		// their goroutines.
		c.Close()
		pc.Close()
		for _, f := range flows {
			f.Close()
		}
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, c) // until the client closes the control connection
		pc.Close()
	}()
	var client netip.AddrPort
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != ctrl.Addr().Unmap() || fixed.IsValid() && from != fixed || client.IsValid() && from != client {
			s.udpDropped.Add(1)
			continue
		}
		dst, data, ok := s.parseUDP(buf[:n])
		if !ok {
			s.udpDropped.Add(1)
			continue
		}
		client = from
		f := flows[dst]
		if f == nil {
			if len(flows) >= s.cfg.MaxUDPTargets {
				s.udpDropped.Add(1)
				continue
			}
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
			f, err = s.cfg.DialUDP(ctx, dst)
			cancel()
			if err != nil {
				if errors.Is(err, ErrRefused) {
					s.refused.Add(1)
				} else {
					s.failed.Add(1)
				}
				s.udpDropped.Add(1)
				continue
			}
			flows[dst] = f
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.udpReplies(pc, f, dst, client)
			}()
		}
		f.Write(data)
	}
}

// parseUDP parses a UDP request header and resolves its destination.
func (s *Server) parseUDP(b []byte) (dst netip.AddrPort, data []byte, ok bool) {
	if len(b) < udpHeaderMin || b[0] != 0 || b[1] != 0 || b[2] != 0 { // fragments are not supported
		return dst, nil, false
	}
	switch b[3] {
	case atypIPv4, atypIPv6:
		n := 4
		if b[3] == atypIPv6 {
			n = 16
		}
		if len(b) < 4+n+2 {
			return dst, nil, false
		}
		a, _ := netip.AddrFromSlice(b[4 : 4+n])
		return netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(b[4+n:])), b[4+n+2:], true
	case atypDomain:
		n := int(b[4])
		if n == 0 || len(b) < 5+n+2 || s.cfg.Resolve == nil {
			return dst, nil, false
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
		ips, err := s.cfg.Resolve(ctx, string(b[5:5+n]))
		cancel()
		if err != nil || len(ips) == 0 {
			return dst, nil, false
		}
		return netip.AddrPortFrom(ips[0].Unmap(), binary.BigEndian.Uint16(b[5+n:])), b[5+n+2:], true
	}
	return dst, nil, false
}

// udpReplies relays datagrams from f back to the client with a header
// naming dst, until f is closed.
func (s *Server) udpReplies(pc *net.UDPConn, f net.Conn, dst netip.AddrPort, client netip.AddrPort) {
	buf := make([]byte, maxDatagram)
	hdr := appendAddr([]byte{0, 0, 0}, dst)
	copy(buf, hdr)
	for {
		n, err := f.Read(buf[len(hdr):])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		pc.WriteToUDPAddrPort(buf[:len(hdr)+n], client)
	}
}
