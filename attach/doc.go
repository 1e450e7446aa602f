// Package attach implements the attachment transports of DESIGN.md section
// 5: unix and tcp streams and vsock and stdio with a 4-byte big-endian
// length before every frame, unixgram and udp datagrams with a port per
// peer address, and unixpacket (SOCK_SEQPACKET). Every transport yields
// [vswitch.Port] values.
package attach
