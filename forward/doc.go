// Package forward serves corral's port forwards (DESIGN.md section 6):
// host sockets whose TCP connections and UDP flows are relayed to
// addresses inside fences, through each fence's gateway. It imports no
// gVisor: a fence is reached through a [Dialer] (package stack's Gateway
// implements it) that returns net.Conn values, so the package is tested
// on plain sockets.
//
// Vocabulary:
//   - A forward ([Forward]) relays what reaches a listen address on the
//     host to a target address inside one fence.
//   - A listener is one host socket (protocol and address). Listen
//     addresses belong to the process, not to a fence: a [Forwarder] owns
//     every listener, and forwards of several fences may share one.
//   - A route ([Route]) is what identifies a forward on its listener: the
//     protocol and listen address, and for TCP optionally a name: sni (the
//     server name of a TLS ClientHello) or host (the host of an HTTP/1
//     request's Host header, without its port). A forward without a name is
//     its listener's default route.
//
// Routing, for a TCP listener (UDP listeners carry one forward each):
//   - Without named routes, a connection goes to the default route at
//     once; nothing is read first, so protocols where the server speaks
//     first (SSH, SMTP) work.
//   - With named routes, the first bytes of each connection are read
//     (github.com/inetaf/tcpproxy's SNI and HTTP Host matchers, which
//     replay them to the target) within [Config.SniffTimeout] (default 5 s),
//     and at most [Config.MaxSniffing] connections per listener wait at
//     once (default 256; more are closed and counted). A connection whose
//     name matches a route goes to it; any other (another name, no name,
//     not TLS or HTTP, nothing sent in time) goes to the default route if
//     there is one, else it is closed and counted ([Stats].Unrouted). A
//     server-first protocol on the default route of such a listener thus
//     waits the sniff timeout: give it its own listen address.
//   - An HTTP connection is routed by its first request; later requests on
//     the same connection follow it whatever their Host.
//
// Conflicts: two forwards with the same route conflict, in one fence
// ([ErrExists]) or in two ([ErrConflict]); forwards with distinct names
// share a listener across fences; one default route per listener; one
// forward per UDP address. A listen port 0 binds a new socket on a free
// port, reported by [Forwarder.Add] and [Forwarder.Forwards].
//
// Limits: connections and flows count against their fence's limits (the
// Dialer refuses beyond them); removing a forward closes its connections
// and flows before [Forwarder.Remove] returns; [Forwarder.DetachFence]
// does so for every forward of a fence, [Forwarder.Close] for all.
//
// [Forwarder.Listeners] and [Forwarder.Bound] tell which host sockets the
// forwards have bound, so that gateways can refuse guest flows to them.
package forward
