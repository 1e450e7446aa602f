// Package admin is corral's admin API (DESIGN.md section 7): an HTTP and
// JSON server on a unix socket created with mode 0600 ([Listen]), the
// types of its requests and answers, and a [Client] that the CLI uses.
//
// [New] registers every route, in one place:
//
//	GET    /v1/status               StatusResponse: fences, ports, trunk, version, start time
//	GET    /v1/fences               []FenceStatus
//	GET    /v1/ports                []PortStatus
//	GET    /v1/fdb[?fence=F][&limit=N][&after=C]
//	                                FDBPage: a page of the bridge tables (by fence ID, then MAC; default
//	                                limit 1000, at most 10000) and Next, the after= of the next page
//	GET    /v1/capture?fence=F|port=P|uplink=1[&count=N][&seconds=S][&snaplen=N]
//	                                a pcap stream (see capture.go), trailers TrailerFrames, TrailerDropped
//	GET    /v1/peers                PeersResponse (404 without an uplink: Client.Peers returns ErrNoUplink)
//	GET    /v1/gateways[?fence=F]   []GatewayStatus
//	GET    /v1/forwards[?fence=F]   []FenceForwards
//	POST   /v1/forwards             body Forward → 201 Forward (as running: a listen port 0 is bound)
//	DELETE /v1/forwards             body Forward, or ?fence=&proto=&listen=[&sni=|&host=] → Forward
//	GET    /v1/attach[?fence=F]     []FenceAttach: each fence's addresses with QEMU, vfkit, krunkit, Lima, UML lines
//	GET    /v1/health               HealthResponse: the liveness probe (answers once everything runs)
//	GET    /v1/events[?kind=K,…][&buffer=N]  events.Event as JSON lines until the client leaves (404 without Config.Events)
//	POST   /v1/reload               ReloadResponse: the configuration applied again; 400 with the reason when refused
//
// F names a fence by name, else by ID (decimal or 0x hex); P a port by ID
// or name. Every error is an [ErrorResponse] with a 4xx or 5xx status.
//
// The server reads its sources through interfaces it declares, so that it
// can be tested with fakes and does not depend on how they are built:
// [Switch] (*vswitch.Switch implements it), [Uplink] (*uplink.Uplink) and
// [Gateways] (cmd/corral implements it over package stack's gateways:
// admin imports neither gVisor nor cobra and viper). The JSON types are
// admin's own, converted from the packages' snapshots; [Client] decodes
// into the same types.
package admin
