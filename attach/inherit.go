package attach

import (
	"context"
	"fmt"
	"net"
	"os"
)

// ListenInherited serves f, a socket bound by someone else (one systemd
// passes on activation), as the listener of addr: a stream listener for
// unix, unixpacket and tcp (ListenStream=, ListenSequentialPacket=), a
// datagram socket for unixgram and udp (ListenDatagram=). Every
// connection or peer is a port, as with [Listen]. The listener holds its
// own descriptor: the caller closes f. The socket file of a unix socket
// belongs to whoever bound it: Close closes the socket and leaves the
// file. ctx ends it like Listen's.
func ListenInherited(ctx context.Context, addr Addr, f *os.File, opts Options, onPort OnPort) (Listener, error) {
	opts = opts.withDefaults()
	var (
		l   Listener
		err error
	)
	switch addr.Scheme {
	case Unix, Unixpacket, TCP:
		l, err = inheritStream(addr, f, opts, onPort)
	case Unixgram, UDP:
		var pc net.PacketConn
		if pc, err = net.FilePacketConn(f); err == nil {
			l, err = serveDgram(addr, pc, nil, opts, onPort)
		}
	default:
		err = fmt.Errorf("an inherited socket of scheme %s is not supported (unix, unixpacket, tcp, unixgram and udp are)", addr.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	return l, nil
}

// inheritStream serves the stream listener in f as the listener of addr.
func inheritStream(addr Addr, f *os.File, opts Options, onPort OnPort) (*streamListener, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	l := &streamListener{addr: addr, ln: ln, opts: opts, onPort: onPort, done: make(chan struct{})}
	if addr.Scheme == TCP {
		l.addr.Target = ln.Addr().String()
	}
	l.log = opts.Logger.With("listen", l.addr.String(), "inherited", true)
	l.wg.Add(1)
	go l.accept()
	return l, nil
}
