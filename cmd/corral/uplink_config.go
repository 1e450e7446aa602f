package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/uplink"
)

// defaultUplinkPort is the UDP uplink port (DESIGN.md section 3.5).
const defaultUplinkPort = 7407

// uplinkConfig converts and checks the host.* and uplink.* keys into
// cfg.Uplink. The host keys are checked even without an uplink, so that a
// mistake shows before the uplink is turned on.
func uplinkConfig(cfg *Config, raw *fileConfig) error {
	h, u := raw.Host, raw.Uplink
	c := uplink.Config{}

	c.HostName = h.Name
	if c.HostName == "" {
		c.HostName, _ = os.Hostname()
	}
	if h.Installation != nil {
		if *h.Installation < 0 || *h.Installation > 255 {
			return cfgErr("host.installation", "%d out of range 0..255", *h.Installation)
		}
		c.Installation = uint8(*h.Installation)
	}
	if h.ID != nil {
		if *h.ID < 1 || *h.ID > maxHostID {
			return cfgErr("host.id", "%#x out of range 1..0xFFFE (0 and 0xFFFF are reserved)", *h.ID)
		}
		c.HostID = uint16(*h.ID)
	} else {
		mid, _ := os.ReadFile("/etc/machine-id")
		c.HostID = uplink.DeriveHostID([]byte(strings.TrimSpace(string(mid))), c.HostName)
	}
	if h.OUI != "" {
		b, err := parseOUI(h.OUI)
		if err != nil {
			return cfgErr("host.oui", "%q: %v", h.OUI, err)
		}
		if b[0]&0x02 == 0 || b[0]&0x01 != 0 {
			return cfgErr("host.oui", "%q: not a locally administered unicast prefix (first byte needs bit 0x02 set and bit 0x01 clear)", h.OUI)
		}
		copy(c.OUI[:], b[:])
	}
	if h.EtherType != nil {
		if *h.EtherType < 0x0600 || *h.EtherType > 0xFFFF {
			return cfgErr("host.ethertype", "%#x out of range 0x0600..0xFFFF", *h.EtherType)
		}
		c.EtherType = uint16(*h.EtherType)
	}

	if u.MTU != nil {
		if *u.MTU < uplink.MinMTU || *u.MTU > 65535 {
			return cfgErr("uplink.mtu", "%d out of range %d..65535", *u.MTU, uplink.MinMTU)
		}
		c.MTU = int(*u.MTU)
	}
	var err error
	if c.HelloInterval, err = parseDuration("uplink.hello_interval", u.HelloInterval); err != nil {
		return err
	}
	if u.UDP.Listen != "" {
		ap, err := parseListenAddrPort(u.UDP.Listen)
		if err != nil {
			return cfgErr("uplink.udp.listen", "%q: %v", u.UDP.Listen, err)
		}
		c.UDPListen = ap
	}
	for i, p := range u.UDP.Peers {
		key := fmt.Sprintf("uplink.udp.peers[%d]", i)
		ap, err := parseAddrPort(p, defaultUplinkPort)
		if err != nil {
			return cfgErr(key, "%q: %v", p, err)
		}
		if ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return cfgErr(key, "%q: want a unicast IP", p)
		}
		if u.UDP.Listen == "" {
			return cfgErr(key, "%q: peers need uplink.udp.listen", p)
		}
		c.Peers = append(c.Peers, ap)
	}
	if u.UDP.Group != "" {
		ap, err := parseAddrPort(u.UDP.Group, defaultUplinkPort)
		if err != nil {
			return cfgErr("uplink.udp.group", "%q: %v", u.UDP.Group, err)
		}
		if !ap.Addr().IsMulticast() {
			return cfgErr("uplink.udp.group", "%q: not a multicast address", u.UDP.Group)
		}
		if u.UDP.Listen == "" {
			return cfgErr("uplink.udp.group", "%q: a group needs uplink.udp.listen", u.UDP.Group)
		}
		c.Group = ap
	}
	if n := u.Raw.Interface; n != "" {
		if len(n) > 15 || strings.ContainsAny(n, "/ \t") {
			return cfgErr("uplink.raw.interface", "%q: not an interface name", n)
		}
		if runtime.GOOS != "linux" {
			return cfgErr("uplink.raw.interface", "%q: the raw uplink (AF_PACKET) needs Linux, and this is %s: use uplink.udp.listen", n, runtime.GOOS)
		}
		c.RawInterface = n
	}
	cfg.HasUplink = c.UDPListen.IsValid() || c.RawInterface != ""
	if u.UDP.LearnPeers != nil {
		if u.UDP.Listen == "" {
			return cfgErr("uplink.udp.learn_peers", "needs uplink.udp.listen")
		}
		c.LearnPeers = *u.UDP.LearnPeers
	}
	if n := u.MaxMACsPerHost; n != nil {
		if *n < 1 || *n > 1<<24 {
			return cfgErr("uplink.max_macs_per_host", "%d out of range 1..%d", *n, 1<<24)
		}
		cfg.Switch.MaxHostMACs = int(*n)
	}
	ss, err := sealConfig(raw, c.Installation)
	if err != nil {
		return err
	}
	if ss != nil {
		if !cfg.HasUplink {
			return cfgErr("uplink.seal.mode", "required, but no uplink is configured (uplink.udp.listen or uplink.raw.interface)")
		}
		if cfg.StateDir == "" {
			return cfgErr("state_dir", "a sealed uplink keeps its send counter's high-water mark in the state directory; set state_dir")
		}
		keys, err := ss.keys()
		if err != nil {
			return err
		}
		c.Seal = &uplink.SealConfig{Cipher: ss.Cipher, Keys: keys}
		cfg.Seal = ss
	}
	if err := gossipConfig(cfg, raw, &c); err != nil {
		return err
	}
	if cfg.HasUplink {
		if err := c.Validate(); err != nil {
			return cfgErr(uplinkErrKey(err), "%v", strings.TrimPrefix(err.Error(), "uplink: "))
		}
	}
	cfg.Uplink = c
	return nil
}

// uplinkErrKey maps an uplink.Config.Validate error to the key at fault.
func uplinkErrKey(err error) string {
	switch {
	case errors.Is(err, uplink.ErrOUINotLocalUnicast):
		return "host.oui"
	case errors.Is(err, uplink.ErrHostIDReserved):
		return "host.id"
	case errors.Is(err, uplink.ErrBadEtherType):
		return "host.ethertype"
	case errors.Is(err, uplink.ErrMTUTooSmall):
		return "uplink.mtu"
	}
	return "uplink"
}

// parseOUI parses "02:fe:0c" (or with dashes).
func parseOUI(s string) (fence.OUI, error) {
	var o fence.OUI
	hw, err := net.ParseMAC(s + ":00:00:00")
	if err != nil || len(hw) != 6 || len(o) != 3 {
		return o, fmt.Errorf("want three hex bytes such as 02:fe:0c")
	}
	copy(o[:], hw[:3])
	return o, nil
}

// parseListenAddrPort parses a UDP listen address: "IP:port", ":port"
// (all IPv4 addresses) or a bare IP (port 7407).
func parseListenAddrPort(s string) (netip.AddrPort, error) {
	if rest, ok := strings.CutPrefix(s, ":"); ok {
		s = "0.0.0.0:" + rest
	}
	ap, err := parseAddrPort(s, defaultUplinkPort)
	if err != nil {
		return ap, err
	}
	return ap, nil
}

// Guest MTU bounds: what stack.Config accepts.
const (
	minGuestMTU = 576
	maxGuestMTU = 65520
)

// guestMTU is the largest IP MTU of a VM whose frames cross uplink c
// without being fragmented (DESIGN.md 3.4), for DHCP option 26: the
// longest encapsulated frame the uplink sends whole, less the
// encapsulation (outer Ethernet and fence headers, 18 bytes) and the inner
// Ethernet header (14). Raw: mtu − 4 − 14 = mtu − 18; UDP over IPv4:
// mtu − 20 − 8 − 18 − 14 = mtu − 60; over IPv6 (an IPv6 or dual-stack
// listen address, or an IPv6 peer or group) mtu − 80. DESIGN's "46 for
// UDP/IPv4" counts the inner frame (Ethernet header included), not the
// VM's MTU. A sealed uplink (DESIGN.md 3.6) carries 25 more bytes per
// frame (key ID, counter, tag): mtu − 43, − 85 or − 105. On the raw
// uplink an interface MTU smaller than uplink.mtu is not known here (the
// uplink uses the smaller one at run time).
func guestMTU(c uplink.Config) int {
	mtu := c.MTU
	if mtu == 0 {
		mtu = uplink.DefaultMTU
	}
	var encap int
	if c.RawInterface != "" {
		encap = fence.MaxEncapLenRaw(mtu)
	} else {
		v6 := c.UDPListen.IsValid() && !c.UDPListen.Addr().Is4()
		for _, p := range c.Peers {
			v6 = v6 || !p.Addr().Unmap().Is4()
		}
		if c.Group.IsValid() && !c.Group.Addr().Unmap().Is4() {
			v6 = true
		}
		encap = fence.MaxEncapLenUDP(mtu, v6)
	}
	const innerEthernet = 14
	if c.Seal != nil {
		encap -= fence.SealOverhead
	}
	return min(max(encap-fence.EncapLen-innerEthernet, minGuestMTU), maxGuestMTU)
}
