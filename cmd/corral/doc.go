// Command corral is a user-mode Ethernet switch for VMs (DESIGN.md).
//
//	corral [run] [--config FILE] [--log-level L] [--log-format F]
//	corral plug ADDRESS (--tap NAME [--netns NS] [--mtu N] | --stdio)
//	corral status | fences | ports | fdb [FENCE] | peers   [--admin ADDR] [--json]
//	corral version
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
// Other files extend the binary without touching the core: a subcommand
// through registerCommand from init, run-time wiring (admin routes, extra
// services) through runHooks.
package main
