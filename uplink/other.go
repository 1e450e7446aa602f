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

type mmsgRecv struct{}

// recvPlain reads one datagram per buffer with x/net's ReadBatch.
func (t *udpTransport) recvPlain(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	ms := t.rmsgs[:min(len(bufs), len(t.rmsgs))]
	for i := range ms {
		ms[i].Buffers[0] = bufs[i]
		ms[i].N = 0
		ms[i].Addr = nil
	}
	n, err := t.bc.ReadBatch(ms, 0)
	if err != nil {
		return 0, normErr(err)
	}
	for i := 0; i < n; i++ {
		sizes[i] = ms[i].N
		from[i] = netip.AddrPort{}
		if ua, ok := ms[i].Addr.(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			from[i] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		ms[i].Buffers[0] = nil
		ms[i].Addr = nil
	}
	return n, nil
}

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
