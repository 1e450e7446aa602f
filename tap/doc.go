// Package tap opens Linux TAP devices, optionally inside a named network
// namespace, as [vswitch.Port] values: `corral plug --tap` uses one to
// connect a namespace (a test host, a container) to a switch.
//
// Inbound frames are those the kernel sends out of the TAP interface (the
// namespace's stack transmitting); outbound frames are those Write hands
// to the kernel as if received on the interface.
//
// *Device implements vswitch.Port. Offloads (IFF_VNET_HDR, TSO, GRO) are
// not used: every frame is a plain Ethernet frame of at most the MTU plus
// its header.
package tap
