// Package dhcp is a small DHCPv4 server for a fence gateway: a typed view
// of the wire format ([Message], [MessageFields]) and a [Server] that hands
// out leases stable per MAC, records client hostnames (option 12) and
// persists leases atomically. It reads and writes through a net.PacketConn,
// so it runs on plain sockets in tests and on a gVisor socket in package
// stack.
package dhcp
