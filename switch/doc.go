// Package vswitch is corral's switch core: ports, per-fence bridge tables
// with learning and aging, forwarding, port security, transmit queues and
// counters (DESIGN.md sections 2 and 4).
//
// The folder is switch/ (the layout's name), but switch is a Go keyword, so
// the package is vswitch; import it as
//
//	vswitch "github.com/corralnet/corral/switch"
//
// Vocabulary. A fence is a private Ethernet network with a 24-bit ID; every
// [Port] belongs to exactly one fence, named by its configuration, never read
// from a frame. A [Trunk] is the uplink to other hosts; it carries frames of
// every fence, tagged with the fence ID. Directions are relative to the
// switch: inbound frames enter the switch from a port or trunk (Read),
// outbound frames leave it (Write).
//
// vswitch imports nothing from this repository and nothing from gVisor.
package vswitch
