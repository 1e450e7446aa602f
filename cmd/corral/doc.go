// Command corral is a user-mode Ethernet switch for VMs (DESIGN.md).
//
//	corral [run] [--config FILE] [--log-level L] [--log-format F]
//	corral plug ADDRESS (--tap NAME [--netns NS] [--mtu N] | --stdio) [--once]
//	corral status | fences | ports | fdb [FENCE] | peers | gateways [FENCE]   [--admin ADDR] [--json]
//	corral forward add FENCE PROTO LISTEN TARGET [--sni N | --host N] | ls [FENCE] | rm FENCE PROTO LISTEN [--sni N | --host N]
//	corral capture (--fence FENCE | --port PORT) [-c N] [--seconds S] [-s SNAPLEN] [-w FILE|-]
//	corral version
//
// The root command adds every subcommand in one place (main.go). The
// client commands call the admin API through admin.Client and print its
// types (client.go, peers.go, gateways.go, forward.go, capture.go); the
// server is package admin, to which runSwitch hands the switch, the
// uplink and the gateways (gateways.go adapts package stack's gateways,
// and package forward's forwards into their fences, to admin.Gateways).
// The port forwards are the process's (one forward.Forwarder, run.go):
// forwards of several fences share a host listener by TLS SNI or HTTP
// Host, so a fence's gateway only lends its Dialer (wire.go attaches it
// when the gateway starts and detaches it when it stops). metrics.listen serves Prometheus text at /metrics from
// a collector that reads the switch's, uplink's and gateways' snapshots at
// scrape time (metrics.go).
//
// runSwitch (run.go) is a sequence of steps: prepareDirs, newSwitch,
// addFences, listen, dial, startGateways, attachUplink, serveMetrics,
// serveAdmin (last: once the admin socket answers, everything runs), then
// wait and shutdown, which takes the parts down in reverse. validate
// (validate.go) is a sequence of steps too, one per section of the
// configuration.
//
// This package is the only one that imports cobra and viper. The
// configuration is read once: the embedded default (default.yaml), then
// --config FILE merged over it, then CORRAL_* environment variables
// (CORRAL_LOG_LEVEL for log.level), then flags; it is decoded into a
// cmd-local struct with mapstructure tags, unknown keys rejected, and
// converted and validated into the typed configurations of vswitch,
// attach, uplink and stack (validate.go). Any configuration error exits
// with status 2, naming the key, before any socket exists.
//
// Gateways over an uplink (wire.go, validate.go): a gateway whose fence a
// peer also serves is refused by the uplink's tie-break (package uplink:
// the lower outer MAC keeps it); the yielding host detaches and closes its
// gateway (logged at error level with the fence and the peer), leaves it
// out of GET /v1/gateways (forward requests for it answer 409 naming the
// peer) and lists it in GET /v1/peers' gateway_yields; when the winner
// expires, the gateway starts again from the configuration (forwards added
// at run time are not restored). Without gateway.mtu, a gateway on a host
// with an uplink advertises (DHCP option 26) the VM MTU that avoids
// fragmentation: uplink.mtu − 18 (raw), − 60 (UDP/IPv4), − 80 (UDP/IPv6);
// 1500 without an uplink.
package main
