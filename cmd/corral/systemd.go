package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
)

// Socket activation (systemd's sd_listen_fds protocol, contrib/systemd):
// when LISTEN_PID is this process and LISTEN_FDS is N, file descriptors
// 3 … 3+N-1 are bound sockets, named by LISTEN_FDNAMES (colon-separated,
// FileDescriptorName= of the .socket unit). corral takes each for the
// configured address it is bound to — the admin socket (admin.listen) or
// a fence's listen address of scheme unix, unixpacket, tcp, unixgram or
// udp — instead of binding that address itself; the names are only shown
// in logs. An inherited socket that no configured address matches is an
// error (exit 1), so that a unit and a configuration that disagree are
// found at once. The variables are removed from the environment, as
// sd_listen_fds(3) does, so children do not see them.

// listenFDsStart is SD_LISTEN_FDS_START.
const listenFDsStart = 3

// inheritedSocket is one socket passed on activation.
type inheritedSocket struct {
	name string
	addr attach.Addr // what it is bound to
	file *os.File
	used bool
}

// inheritedSockets is what runSwitch was handed.
type inheritedSockets struct{ socks []*inheritedSocket }

// takeInheritedSockets reads and clears the activation variables; nil
// when this process was not socket-activated.
func takeInheritedSockets() (*inheritedSockets, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid == "" || fds == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: want a count", fds)
	}
	nameList := strings.Split(names, ":")
	is := &inheritedSockets{}
	for i := range n {
		fd := listenFDsStart + i
		unix.CloseOnExec(fd)
		name := "fd" + strconv.Itoa(fd)
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		a, err := socketAddr(fd)
		if err != nil {
			return nil, fmt.Errorf("socket activation: %s (fd %d): %w", name, fd, err)
		}
		is.socks = append(is.socks, &inheritedSocket{name: name, addr: a, file: os.NewFile(uintptr(fd), name)})
	}
	return is, nil
}

// socketAddr is the address a socket is bound to, as an attach address.
func socketAddr(fd int) (attach.Addr, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return attach.Addr{}, fmt.Errorf("not a socket: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return attach.Addr{}, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrUnix:
		switch typ {
		case unix.SOCK_STREAM:
			return attach.Addr{Scheme: attach.Unix, Target: sa.Name}, nil
		case unix.SOCK_SEQPACKET:
			return attach.Addr{Scheme: attach.Unixpacket, Target: sa.Name}, nil
		case unix.SOCK_DGRAM:
			return attach.Addr{Scheme: attach.Unixgram, Target: sa.Name}, nil
		}
	case *unix.SockaddrInet4:
		return inetAddr(typ, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)))
	case *unix.SockaddrInet6:
		return inetAddr(typ, netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)))
	}
	return attach.Addr{}, fmt.Errorf("a socket of an unsupported family or type (%d)", typ)
}

func inetAddr(typ int, ap netip.AddrPort) (attach.Addr, error) {
	switch typ {
	case unix.SOCK_STREAM:
		return attach.Addr{Scheme: attach.TCP, Target: ap.String()}, nil
	case unix.SOCK_DGRAM:
		return attach.Addr{Scheme: attach.UDP, Target: ap.String()}, nil
	}
	return attach.Addr{}, fmt.Errorf("an IP socket of unsupported type %d", typ)
}

// take returns the inherited socket bound to a, nil when there is none.
func (is *inheritedSockets) take(a attach.Addr) *inheritedSocket {
	if is == nil {
		return nil
	}
	for _, s := range is.socks {
		if !s.used && sameAddr(s.addr, a) {
			s.used = true
			return s
		}
	}
	return nil
}

// sameAddr compares a bound address with a configured one: unix paths
// cleaned, IP addresses and ports parsed.
func sameAddr(bound, cfg attach.Addr) bool {
	if bound.Scheme != cfg.Scheme {
		return false
	}
	switch cfg.Scheme {
	case attach.TCP, attach.UDP:
		b, err1 := netip.ParseAddrPort(bound.Target)
		c, err2 := netip.ParseAddrPort(cfg.Target)
		return err1 == nil && err2 == nil && b.Addr().Unmap() == c.Addr().Unmap() && b.Port() == c.Port()
	}
	return filepath.Clean(bound.Target) == filepath.Clean(cfg.Target)
}

// unused returns an error naming the inherited sockets nothing took.
func (is *inheritedSockets) unused() error {
	if is == nil {
		return nil
	}
	var names []string
	for _, s := range is.socks {
		if !s.used {
			names = append(names, fmt.Sprintf("%s (%s)", s.name, s.addr))
			s.file.Close()
		}
	}
	if len(names) > 0 {
		return fmt.Errorf("socket activation: no configured address (admin.listen, fences[].listen) matches the inherited sockets %s", strings.Join(names, ", "))
	}
	return nil
}

// listenAddr opens fence f's listen address a: the inherited socket bound
// to it when there is one, else a new one.
func (rt *instance) listenAddr(f Fence, a attach.Addr) (attach.Listener, error) {
	if s := rt.inherited.take(a); s != nil {
		l, err := attach.ListenInherited(rt.ctx, a, s.file, rt.attachOptions(f), rt.ev.onPort(f, rt.sw))
		s.file.Close() // the listener holds its own descriptor
		if err != nil {
			return nil, fmt.Errorf("socket activation: %s: %w", s.name, err)
		}
		rt.log.Info("listening on an inherited socket", "fence", f.Name, "addr", a.String(), "name", s.name)
		return l, nil
	}
	return attach.Listen(rt.ctx, a, rt.attachOptions(f), rt.ev.onPort(f, rt.sw))
}

// adminListener is the admin socket: inherited, or bound here.
func (rt *instance) adminListener() (net.Listener, error) {
	if s := rt.inherited.take(rt.cfg.Admin); s != nil {
		ln, err := net.FileListener(s.file)
		s.file.Close()
		if err != nil {
			return nil, fmt.Errorf("socket activation: %s: %w", s.name, err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // systemd's file
		}
		rt.log.Info("admin on an inherited socket", "name", s.name)
		return ln, nil
	}
	return admin.Listen(rt.cfg.Admin.Target, 0)
}

// checkInherited is the step that fails when an inherited socket was not
// taken.
func (rt *instance) checkInherited() error { return rt.inherited.unused() }
