// Package stack is a fence's gateway: an embedded gVisor network stack
// attached to the fence as a port with its own MAC, giving the fence what
// QEMU's user networking gives one VM (DESIGN.md section 6).
//
// Directions: inbound frames come from the fence (the switch calls
// [Gateway.Write]) into the stack; outbound frames leave the stack for the
// fence ([Gateway.Read]). Guest flows NATed to the host are "outgoing";
// port forwards carry "incoming" connections from host into the fence
// ([Gateway.DialTCP], [Gateway.DialUDP]).
//
// Services, per fence (defaults of [Config] in brackets):
//   - addresses: gateway .2 and DNS .3 of the subnet [10.0.2.0/24], and
//     ::2 / ::3 of a ULA /64 [fd63:6f72:7261::/64]; ARP and neighbor
//     solicitations are answered only for these (the NIC spoofs, so the
//     link endpoint filters them);
//   - DHCP (package dhcp): leases from .15, stable per MAC, persisted in
//     StateDir/leases-<fence>.json; Domain as domain and search list
//     (options 15, 119); router advertisements for SLAAC with RDNSS and
//     DNSSL;
//   - DNS (package dns) at .3 and ::3: "host" (AAAA only when the host
//     has ::1), "gateway", "dns", lease hostnames and DNSRecords under
//     Domain [corral.internal], also as short names; other tools' host
//     names (host.lima.internal, ...); PTR of the fence's addresses;
//     everything else forwarded to Resolvers [/etc/resolv.conf];
//   - NAT of TCP, UDP and ICMP echo through host sockets; the gateway's
//     addresses reach the host's loopback (127.0.0.1, ::1) unless
//     NoHostLoopback. Bounded per fence (MaxTCPConns, MaxUDPFlows, 256
//     connections being set up, 256 echo sessions) and per guest, a guest
//     being the source MAC of the frame that opened a flow
//     (MaxTCPConnsPerGuest, MaxUDPFlowsPerGuest, a quarter of the rest);
//     UDP flows end after UDPIdleTimeout, TCP connections when both sides
//     closed, when either resets, or after TCPIdleTimeout idle (a
//     half-closed one sooner, TCPHalfClosedTimeout). Never to this
//     process's own sockets (Config.IsSelf). Flows from sources outside
//     the fence's subnet and prefix are refused. Every refusal is counted
//     by protocol and reason ([Refusal], [Stats]). ICMP echo NAT needs raw
//     sockets (CAP_NET_RAW); without them pings of .2/.3 are answered by
//     the stack and others are dropped, never answered falsely.
//     Allow/Deny filter destinations;
//   - connections into the fence for port forwards: [Gateway.DialTCP] and
//     [Gateway.DialUDP] (the gateway is package forward's forward.Dialer;
//     package forward owns the host sockets, which may serve several
//     fences), counted against MaxTCPConns and MaxUDPFlows and closed with
//     the gateway.
//   - a SOCKS5 endpoint (package socks) on the host address Socks, whose
//     connections and UDP associations reach only the fence's guests, from
//     the gateway's address, names resolved by the fence's DNS.
//
// The link endpoint speaks Ethernet itself, coalesces inbound TCP segments
// of each batch with gVisor's GRO, and lets gVisor's TCP send segments up
// to 64 KiB (host GSO) which it splits into MTU-sized frames while copying
// them out (package offload, the segmenter package tap uses too). It
// verifies the checksums of every inbound packet (csum.go) and never drops
// an outbound one while open: its queue is bounded in bytes and packets,
// and a full queue makes the stack wait (outqueue.go). What it lets into
// the stack is a separate policy: ARP and neighbor solicitations only for
// the gateway's addresses, router solicitations and ICMP echo requests to
// the gateway's hooks.
//
// Only this package (not its subpackages) imports gvisor.dev/...; the DHCP
// and DNS servers work on net.PacketConn and net.Listener, the SOCKS5
// server on a net.Listener and dial functions.
package stack
