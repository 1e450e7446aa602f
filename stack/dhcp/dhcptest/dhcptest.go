// Package dhcptest is a DHCPv4 client for tests: it gets a lease from a
// fence's gateway over a connection that carries Ethernet frames with
// corral's stream framing (a 4-byte big-endian length, then the frame:
// unix:// and tcp:// attachments, QEMU's -netdev stream). Tests of the
// switch process use it to see which addresses a gateway hands out
// without a VM or root.
package dhcptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/corralnet/corral/stack/dhcp"
)

// Lease is what the client got.
type Lease struct {
	IP     netip.Addr
	Server netip.Addr // option 54
	Router netip.Addr // option 3
	DNS    netip.Addr // option 6
}

// maxFrame bounds a frame read from the connection.
const maxFrame = 65535 + 14

// ErrNak means the server answered the request with a NAK.
var ErrNak = errors.New("dhcptest: the server answered NAK")

// StreamLease runs DISCOVER, OFFER, REQUEST, ACK for mac over conn and
// returns the acknowledged lease. The DISCOVER is resent every second
// until an OFFER comes (the gateway may not be attached yet); frames that
// are not the server's answer to this client (other traffic of the
// fence) are skipped. It fails after timeout; conn's deadline is left
// set.
func StreamLease(conn net.Conn, mac [6]byte, hostname string, timeout time.Duration) (Lease, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return Lease{}, err
	}
	xid := binary.BigEndian.Uint32(mac[2:]) ^ uint32(time.Now().UnixNano())
	stop, resent := make(chan struct{}), make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if err := writeFrame(conn, request(mac, xid, dhcp.Discover, netip.Addr{}, netip.Addr{}, hostname)); err != nil {
				resent <- fmt.Errorf("dhcptest: send DISCOVER: %w", err)
				return
			}
			select {
			case <-stop:
				resent <- nil
				return
			case <-tick.C:
			}
		}
	}()
	offer, err := await(conn, mac, xid, dhcp.Offer)
	close(stop)
	if werr := <-resent; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return Lease{}, err
	}
	ip := offer.YIAddr()
	sid, _ := offer.AddrOption(dhcp.OptServerID)
	if err := writeFrame(conn, request(mac, xid, dhcp.Request, ip, sid, hostname)); err != nil {
		return Lease{}, fmt.Errorf("dhcptest: send REQUEST: %w", err)
	}
	ack, err := await(conn, mac, xid, dhcp.Ack)
	if err != nil {
		return Lease{}, err
	}
	l := Lease{IP: ack.YIAddr()}
	l.Server, _ = ack.AddrOption(dhcp.OptServerID)
	l.Router, _ = ack.AddrOption(dhcp.OptRouter)
	l.DNS, _ = ack.AddrOption(dhcp.OptDNS)
	return l, nil
}

// await reads frames until the server's reply of type want for xid; a
// NAK is ErrNak.
func await(conn net.Conn, mac [6]byte, xid uint32, want dhcp.MessageType) (dhcp.Message, error) {
	buf := make([]byte, maxFrame)
	for {
		frame, err := readFrame(conn, buf)
		if err != nil {
			return nil, fmt.Errorf("dhcptest: waiting for %v for %s: %w", want, net.HardwareAddr(mac[:]), err)
		}
		m, ok := reply(frame, mac, xid)
		if !ok {
			continue
		}
		switch t, _ := m.Type(); t {
		case want:
			return m, nil
		case dhcp.Nak:
			return nil, ErrNak
		}
	}
}

// request builds the Ethernet frame of a broadcast DHCP message.
func request(mac [6]byte, xid uint32, typ dhcp.MessageType, ip, server netip.Addr, hostname string) []byte {
	msg := make([]byte, dhcp.HeaderSize, dhcp.MaxMessageSize)
	dhcp.Message(msg).Encode(&dhcp.MessageFields{Op: dhcp.OpRequest, XID: xid, Flags: dhcp.FlagBroadcast, CHAddr: mac})
	msg = dhcp.AppendOption(msg, dhcp.OptMessageType, byte(typ))
	if ip.IsValid() {
		msg = dhcp.AppendAddrOption(msg, dhcp.OptRequestedIP, ip)
	}
	if server.IsValid() {
		msg = dhcp.AppendAddrOption(msg, dhcp.OptServerID, server)
	}
	if hostname != "" {
		msg = dhcp.AppendOption(msg, dhcp.OptHostname, []byte(hostname)...)
	}
	msg = dhcp.AppendOption(msg, dhcp.OptParamRequest, dhcp.OptSubnetMask, dhcp.OptRouter, dhcp.OptDNS)
	msg = append(msg, dhcp.OptEnd)
	for len(msg) < dhcp.MinReplySize {
		msg = append(msg, dhcp.OptPad)
	}

	return UDPFrame(mac, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, msg)
}

// UDPFrame builds an Ethernet frame holding an IPv4 UDP datagram (no UDP
// checksum, which IPv4 allows).
func UDPFrame(src, dst [6]byte, srcIP, dstIP netip.Addr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ipv4 := f[14:34]
	ipv4[0] = 0x45
	binary.BigEndian.PutUint16(ipv4[2:], uint16(20+8+len(payload)))
	ipv4[8] = 64 // TTL
	ipv4[9] = 17 // UDP
	s4, d4 := srcIP.As4(), dstIP.As4()
	copy(ipv4[12:16], s4[:])
	copy(ipv4[16:20], d4[:])
	binary.BigEndian.PutUint16(ipv4[10:], checksum(ipv4))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(f[42:], payload)
	return f
}

// reply returns the DHCP message in frame when it is a server's reply to
// mac's transaction xid.
func reply(frame []byte, mac [6]byte, xid uint32) (dhcp.Message, bool) {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
		return nil, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl+8 || ip[9] != 17 {
		return nil, false
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[2:]) != 68 {
		return nil, false
	}
	m := dhcp.Message(udp[8:])
	if m.Validate() != nil || m.Op() != dhcp.OpReply || m.XID() != xid || m.CHAddr() != mac {
		return nil, false
	}
	return m, true
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func writeFrame(w io.Writer, f []byte) error {
	b := make([]byte, 4+len(f))
	binary.BigEndian.PutUint32(b, uint32(len(f)))
	copy(b[4:], f)
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > uint32(len(buf)) {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}
