package attach

import (
	"context"
	"fmt"
	"net"
)

// ListenInherited serves ln, a stream listener bound by someone else (a
// socket systemd passes on activation), as the listener of addr (unix,
// unixpacket or tcp): every connection is a port, as with [Listen]. The
// socket file of a unix listener belongs to whoever bound it: Close
// closes the socket and leaves the file. ctx ends it like Listen's.
func ListenInherited(ctx context.Context, addr Addr, ln net.Listener, opts Options, onPort OnPort) (Listener, error) {
	switch addr.Scheme {
	case Unix, Unixpacket, TCP:
	default:
		return nil, fmt.Errorf("listen %s: an inherited socket of scheme %s is not supported (unix, unixpacket and tcp are)", addr, addr.Scheme)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	opts = opts.withDefaults()
	l := &streamListener{addr: addr, ln: ln, opts: opts, onPort: onPort, done: make(chan struct{})}
	if addr.Scheme == TCP {
		l.addr.Target = ln.Addr().String()
	}
	l.log = opts.Logger.With("listen", l.addr.String(), "inherited", true)
	l.wg.Add(1)
	go l.accept()
	context.AfterFunc(ctx, func() { l.Close() })
	return l, nil
}

// ListenInheritedPacket serves pc, a datagram socket bound by someone else
// (a socket systemd passes on activation: ListenDatagram=), as the
// listener of addr (unixgram or udp): every peer is a port, as with
// [Listen]. The socket file of a unixgram socket belongs to whoever bound
// it: Close leaves it. ctx ends it like Listen's.
func ListenInheritedPacket(ctx context.Context, addr Addr, pc net.PacketConn, opts Options, onPort OnPort) (Listener, error) {
	switch addr.Scheme {
	case Unixgram, UDP:
	default:
		return nil, fmt.Errorf("listen %s: an inherited datagram socket of scheme %s is not supported (unixgram and udp are)", addr, addr.Scheme)
	}
	l, err := serveDgram(addr, pc, nil, opts.withDefaults(), onPort)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	return l, nil
}
