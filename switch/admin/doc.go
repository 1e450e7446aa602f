// Package admin is corral's admin API server: HTTP and JSON on a unix
// socket created with mode 0600 (DESIGN.md section 7). It exposes the
// switch's status, fences, ports and bridge tables:
//
//	GET /v1/status          vswitch.Status plus version and start time
//	GET /v1/fences          []vswitch.FenceStatus
//	GET /v1/ports           []vswitch.PortStatus
//	GET /v1/fdb[?fence=F]   []FenceFDB (F is a fence ID or name)
//
// Other areas add routes with [Server.Handle] before [Server.Serve];
// cmd/corral adds GET /v1/peers, GET/POST/DELETE /v1/forwards and
// GET /v1/gateways (they need the uplink and stack packages, which admin
// does not import). Errors are JSON objects
// {"error": "..."} with a 4xx or 5xx status.
package admin
