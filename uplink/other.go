//go:build !linux

package uplink

import (
	"errors"
	"net"
	"net/netip"
)

// Without Linux: no raw uplink, no UDP GSO/GRO.

var errNoRaw = errors.New("uplink: the raw uplink needs Linux (AF_PACKET); use the UDP uplink")

type gro struct{}

type rawTransport struct{ mtu int }

func openRaw(string, uint16, [6]byte, *counters) (*rawTransport, error) { return nil, errNoRaw }

func (*rawTransport) recv([][]byte, []int, []netip.AddrPort) (int, error) { return 0, errNoRaw }
func (*rawTransport) send([]outItem) error                                { return errNoRaw }
func (*rawTransport) close() error                                        { return nil }

func (t *udpTransport) enableOffload() {}

func (t *udpTransport) recvGRO(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	return 0, errNoRaw // unreachable: t.gro is always nil
}

func (t *udpTransport) sendGSO(items []outItem) error { return t.sendPlain(items) }

func setBuffers(conn *net.UDPConn, size int) {
	_ = conn.SetReadBuffer(size)
	_ = conn.SetWriteBuffer(size)
}
