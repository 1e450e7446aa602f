package main

import (
	"fmt"
	"strings"

	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/stack"
	"github.com/corralnet/corral/stack/dns"
	"github.com/corralnet/corral/stack/socks"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

//go:generate go test -run TestConfigReference -update .

// keyDoc documents one configuration key of fileConfig for the reference
// docs/configuration.md, which configReference generates from keyDocs.
// TestConfigReference fails when a key of fileConfig has no entry, an
// entry names no key, a type does not match the field, an example does
// not decode into the field, or the file differs from the generated text
// (go test ./cmd/corral -run TestConfigReference -update rewrites it).
type keyDoc struct {
	// Key is the dotted key; "[]" marks the elements of a list:
	// "fences[].gateway.socks".
	Key string
	// Type is "string", "integer", "boolean", "duration", "list of
	// strings" or "list of objects", optionally followed by a qualifier
	// in parentheses: "string (IP:port)".
	Type string
	// Default is what an absent key means, in words or as YAML.
	Default string
	// Example is a YAML value for the key ("" for lists of objects,
	// whose keys are documented one by one).
	Example string
	// Doc says what the key does (Markdown, one paragraph).
	Doc string
}

// keySections orders and names the sections of the reference: every key
// belongs to the section with the longest prefix it has.
var keySections = []struct{ prefix, title, intro string }{
	{"host.", "host", "Who this corral is on an uplink: its outer MAC is `OUI · installation · host ID`."},
	{"state_dir", "state_dir", ""},
	{"uplink.", "uplink", "The transport between hosts. Without `uplink.udp.listen` and `uplink.raw.interface` there is no uplink and every fence stays on this host."},
	{"uplink.seal.", "uplink.seal", "The sealed uplink: frames between hosts authenticated and encrypted (AEAD) with keys derived per fence from an installation secret."},
	{"uplink.gossip.", "uplink.gossip", "Membership at scale on hashicorp/memberlist (SWIM gossip) instead of hellos."},
	{"fences", "fences", "Fences: private Ethernet networks. A file's `fences` list replaces the embedded default's (one fence `default`, ID 1, gateway on)."},
	{"fences[].gateway.", "fences[].gateway", "The fence's gateway: a gVisor netstack attached to the fence like a VM, with DHCP, DNS, NAT to the host and port forwards, like QEMU's user networking but private per fence."},
	{"fences[].gateway.forwards[].", "fences[].gateway.forwards[]", "Port forwards from host addresses into the fence; `corral forward add/rm` changes them at run time."},
	{"fences[].gateway.dns.", "fences[].gateway.dns", "Static records of the fence's DNS, answered besides the names the gateway defines (see [Gateway DNS names](#gateway-dns-names))."},
	{"admin.", "admin", ""},
	{"metrics.", "metrics", ""},
	{"log.", "log", ""},
	{"limits.", "limits", "Process-wide bounds: every resource a peer can make corral hold has a bound and a counter."},
}

// keySection returns the index of the section of key, -1 for none.
func keySection(key string) int {
	best := -1
	for i, s := range keySections {
		if strings.HasPrefix(key, s.prefix) && (best < 0 || len(s.prefix) > len(keySections[best].prefix)) {
			best = i
		}
	}
	return best
}

// keyDocs documents every key of fileConfig.
var keyDocs = []keyDoc{
	// host
	{"host.name", "string", "the machine's hostname", `lab1`,
		"This host's name in `corral peers`, hellos and logs; with /etc/machine-id it derives the host ID."},
	{"host.installation", "integer (0..255)", "`0`", `1`,
		"The installation ID: hosts that share one uplink segment and one address plan use the same value; two installations on one segment ignore each other's frames."},
	{"host.id", "integer (1..0xFFFE)", "derived from /etc/machine-id and `host.name`", `0x02c2`,
		"The host ID within the installation. Collisions are detected by hellos and logged loudly on both hosts."},
	{"host.oui", "string (3 bytes)", fmt.Sprintf("`%q`", fence.DefaultOUI.String()), `"02:fe:0c"`,
		"First three bytes of this host's outer MAC; must be locally administered unicast (bit 0x02 set, bit 0x01 clear)."},
	{"host.ethertype", "integer (0x0600..0xFFFF)", fmt.Sprintf("`0x%04x`", fence.EtherType), `0x88b5`,
		"EtherType of encapsulated frames on a raw uplink."},
	{"state_dir", "string (path)", "`$XDG_STATE_HOME/corral`, else `~/.local/state/corral`", `"/var/lib/corral"`,
		"The root of corral's state. Each instance keeps its own in a subdirectory: named after its admin socket's path (`run-user-1000-corral-admin.sock-1a2b3c4d` for `/run/user/1000/corral/admin.sock`), or `host-NAME` after `host.name` when `admin.listen` is `\"\"`. There the gateways keep their DHCP leases (`leases-<fence ID>.json`), so copies of a lab in several corral processes never share or disturb each other's, and a new instance hands out 10.0.2.15 first. A file `lock` there is flocked while corral runs: a second corral of the same instance stops at start, before any socket, with exit status 1 and a message naming the first. `$VARS` expand."},

	// uplink
	{"uplink.mtu", "integer (576..65535)", fmt.Sprintf("`%d`", uplink.DefaultMTU), `9000`,
		"Path MTU of the network between hosts. Frames that do not fit travel as two fragments; gateways advertise a guest MTU that avoids that (UDP/IPv4: mtu − 60, UDP/IPv6: mtu − 80, raw: mtu − 18)."},
	{"uplink.udp.listen", "string (IP:port, :port or IP)", "`\"\"`: no UDP uplink", `"0.0.0.0:7407"`,
		"Address of the UDP uplink (default port 7407). Listen on the address of the network the hosts share rather than 0.0.0.0 where you can."},
	{"uplink.udp.peers", "list of strings (IP:port or IP)", "`[]`", `["192.0.2.10:7407"]`,
		"Static peers; one each way is enough, the others are learned from their datagrams. Needs `uplink.udp.listen`."},
	{"uplink.udp.group", "string (multicast IP:port)", "`\"\"`: no group", `"239.7.4.7:7407"`,
		"A multicast group all hosts of the installation join instead of listing peers."},
	{"uplink.udp.learn_peers", "boolean", "`false`", `true`,
		"Unsealed uplink only: accept frames from addresses that are neither in `peers` nor the group. Off by default, so a stranger on the network cannot join an installation by sending to it; with `uplink.seal.mode: required` a peer is learned from any frame that opens."},
	{"uplink.raw.interface", "string (interface name)", "`\"\"`: no raw uplink", `"eth1"`,
		"Carry frames MAC-in-MAC on this interface with AF_PACKET instead of UDP (one L2 segment; needs CAP_NET_RAW)."},
	{"uplink.hello_interval", "duration", fmt.Sprintf("`%v`", uplink.DefaultHelloInterval), `2s`,
		"Period of hellos on the control channel; a peer silent for three intervals expires and its MACs are flushed. Not used with gossip."},
	{"uplink.max_macs_per_host", "integer", "`4096`", `16384`,
		"Remote MACs learned per peer host, so one host cannot fill a fence's bridge table; refusals are counted."},
	{"uplink.seal.mode", "string (off, required)", "`off`", `required`,
		"`required`: every frame on the uplink is sealed (AEAD, replay window per host and fence), and unsealed or unopenable frames are dropped and counted."},
	{"uplink.seal.secret_file", "string (path)", "`\"\"`", `"/etc/corral/installation.key"`,
		"The installation secret: 32 random bytes or 64 hex characters in a file of mode 0600 or 0400 (`corral keygen FILE` writes one). Per-fence keys derive from it (HKDF-SHA256)."},
	{"uplink.seal.previous_secret_file", "string (path)", "`\"\"`", `"/etc/corral/installation.key.old"`,
		"During a rotation, frames under this older secret are still accepted; it is never used to send."},
	{"uplink.seal.cipher", "string (aes-256-gcm, chacha20-poly1305)", "`aes-256-gcm`", `chacha20-poly1305`,
		"The AEAD of sealed frames."},
	{"uplink.gossip.listen", "string (IP:port, :port or IP)", "`\"\"`: no gossip (static peers or a group, and hellos)", `"0.0.0.0:7946"`,
		"TCP and UDP address of memberlist gossip (port default 7946; registered so no guest's NAT reaches it). With gossip the uplink sends no hellos: members, each host's fences, data address and gateway claims come from gossip, floods go only to the fence's hosts, and the MACs of each fence's local ports are gossiped among that fence's hosts only, so unicast to them goes straight to their host. Excludes `uplink.udp.peers`, `group` and `learn_peers`. With `uplink.seal.mode: required`, gossip is encrypted and authenticated (AES-256-GCM) with a key derived from the installation secret. The uplink's data address is announced; on `0.0.0.0` with the gossip address's IP."},
	{"uplink.gossip.join", "list of strings (host:port)", "`[]`: wait to be joined", `["192.0.2.10:7946"]`,
		"Any members of the cluster (one is enough; port default 7946); retried with backoff until one answers, and again whenever this host is alone."},
	{"uplink.gossip.profile", "string (lan, wan)", "`lan`", `wan`,
		"memberlist's timing: `lan` probes every 0.5 s and declares a silent host dead within about 10 s at 1,000 hosts; `wan` uses memberlist's WAN timing (5 s probes) for high-latency links."},

	// fences
	{"fences", "list of objects", "one fence `default` (ID 1) with a gateway, listening on `unix://$XDG_RUNTIME_DIR/corral/default.sock`", "",
		"The fences of this host. At least one."},
	{"fences[].name", "string", "required", `lab`,
		"Unique name, used by the CLI, logs and metrics; no spaces or slashes."},
	{"fences[].id", "integer (1..0xFFFFFE)", "required", `1`,
		"The 24-bit fence ID, unique on this host and the same on every host of the installation that has the fence."},
	{"fences[].listen", "list of strings (addresses)", "`[]`", `["unix://$XDG_RUNTIME_DIR/corral/lab.sock", "tcp://127.0.0.1:7400"]`,
		"Sockets corral creates for VMs: `unix://PATH`, `tcp://HOST:PORT`, `unixgram://PATH`, `unixpacket://PATH`, `udp://HOST:PORT`, `vsock://:PORT`, `stdio`. `$VARS` expand; an unset `$XDG_RUNTIME_DIR` means `/tmp/corral-UID` (created private, mode 0700), like the shell's `${XDG_RUNTIME_DIR:-/tmp/corral-$(id -u)}`. Unix sockets are created with mode 0600. `corral run` prints, and `corral attach-lines` shows, the QEMU, vfkit, krunkit, Lima and UML lines for each address."},
	{"fences[].dial", "list of strings (addresses)", "`[]`", `["unix:///run/vm/db.sock"]`,
		"Addresses corral connects to (a QEMU started with `server=on`), re-dialed with backoff when they drop."},
	{"fences[].max_macs", "integer", fmt.Sprintf("`0`: %d", vswitch.DefaultMaxFenceMACs), `4096`,
		"Bridge table entries of the fence; a full table refuses new MACs (counted) without evicting live ones."},
	{"fences[].port_max_macs", "integer", fmt.Sprintf("`0`: %d", vswitch.DefaultMaxPortMACs), `1`,
		"MACs one port may use; 1 pins a port to its first MAC."},
	{"fences[].bum_rate", "integer (frames/s)", fmt.Sprintf("`%d`", vswitch.DefaultBUMRate), `5000`,
		"Storm control: per port, the broadcast, multicast and unknown-unicast frames per second it may send (a token bucket; bursts of a tenth of a second's worth, at least 64 frames or the rate); the excess is dropped and counted (drop reason `storm`), and the port is not read again until half a burst of credit has returned (1–100 ms), so its writes block instead of costing the switch CPU. `0` turns it off. Frames from the uplink are not limited here: each host limits its own ports."},
	{"fences[].key_file", "string (path)", "`\"\"`: derived from the installation secret", `"/etc/corral/lab.key"`,
		"With a sealed uplink, this fence's own key instead of the derived one: a host given only some fences' keys can neither read nor inject the others."},
	{"fences[].previous_key_file", "string (path)", "`\"\"`: none", `"/etc/corral/lab.key.old"`,
		"The fence's previous own key during a rotation: frames sealed with it are accepted, never sent with it (32 bytes or 64 hex digits, mode 0600/0400, like key_file)."},

	// gateway
	{"fences[].gateway.enabled", "boolean", "`false` (`true` in the embedded default fence)", `true`,
		"Run a gateway for this fence. A fence spanning hosts needs it on one host only; two hosts serving one fence are detected and reported."},
	{"fences[].gateway.subnet", "string (IPv4 prefix, /8../29)", fmt.Sprintf("`%v`", stack.DefaultSubnet), `10.0.3.0/24`,
		"The fence's IPv4 subnet: gateway host .2 (which also reaches the host's loopback), DNS .3, DHCP leases from .15."},
	{"fences[].gateway.mac", "string (MAC)", "`52:55:0a` followed by the 24-bit fence ID", `"52:55:0a:00:00:01"`,
		"The gateway's MAC; must be unicast."},
	{"fences[].gateway.mtu", "integer (576..65520)", fmt.Sprintf("`%d`, or over an uplink the MTU that avoids fragmentation", stack.DefaultMTU), `9000`,
		"The MTU advertised to guests (DHCP option 26, router advertisements) and used on the gateway's link."},
	{"fences[].gateway.domain", "string (domain)", fmt.Sprintf("`%s`", stack.DefaultDomain), `lab.test`,
		"The DNS domain of the fence's names (`vm1.corral.internal`), handed to guests as domain (DHCP option 15) and search list (option 119, and DNSSL in router advertisements), so `vm1` resolves as well."},
	{"fences[].gateway.lease_time", "duration", fmt.Sprintf("`%v`", stack.DefaultLeaseTime), `12h`,
		"DHCP lease time. Leases are stable per MAC and persisted in `state_dir`."},
	{"fences[].gateway.resolvers", "list of strings (IP or IP:port)", "the nameservers of /etc/resolv.conf, read at start", `["192.0.2.53", "[2001:db8::53]:5353"]`,
		"Upstream DNS servers the gateway forwards other names to, tried in order."},
	{"fences[].gateway.forwards", "list of objects", "`[]`", "",
		"Port forwards into the fence, started with the gateway."},
	{"fences[].gateway.max_tcp_conns", "integer", "`0`: 1024", `4096`,
		"Concurrent NATed TCP connections (and pending SYNs) of the fence; more are refused and counted."},
	{"fences[].gateway.max_udp_flows", "integer", "`0`: 1024", `4096`,
		"Concurrent NATed UDP flows of the fence; more are refused and counted."},
	{"fences[].gateway.max_tcp_conns_per_guest", "integer", "a quarter of `max_tcp_conns` (256)", `64`,
		"NATed TCP connections one guest (one MAC) may hold, so one guest cannot take the fence's whole table."},
	{"fences[].gateway.max_udp_flows_per_guest", "integer", "a quarter of `max_udp_flows` (256)", `64`,
		"NATed UDP flows one guest (one MAC) may hold."},
	{"fences[].gateway.tcp_idle_timeout", "duration", "`2h4m` (RFC 5382's floor for established connections)", `30m`,
		"A NATed TCP connection without traffic for this long is closed and its slot freed (a connection is also freed when both sides have closed)."},
	{"fences[].gateway.udp_idle_timeout", "duration", "`60s`", `5m`,
		"A NATed UDP flow without traffic for this long ends."},
	{"fences[].gateway.ipv6", "boolean", "`true`", `false`,
		"IPv6 in the fence: a ULA /64, router advertisements (SLAAC, RDNSS, DNSSL), gateway ::2 reaching the host's ::1, DNS at ::3, NAT of IPv6 flows to the host's IPv6."},
	{"fences[].gateway.ipv6_prefix", "string (IPv6 /64)", fmt.Sprintf("`%v`", stack.DefaultIPv6Prefix), `"fd00:1:2:3::/64"`,
		"The fence's IPv6 prefix; only with `ipv6` on."},
	{"fences[].gateway.allow", "list of strings (prefixes or addresses)", "`[]`: every host destination", `["192.0.2.0/24", "127.0.0.1"]`,
		"When set, the only host destinations NATed guest flows may reach (the gateway address counts as 127.0.0.1 / ::1). Refusals are counted."},
	{"fences[].gateway.deny", "list of strings (prefixes or addresses)", "`[]`", `["169.254.0.0/16", "10.0.0.0/8"]`,
		"Host destinations refused even when allowed."},
	{"fences[].gateway.host_loopback", "boolean", "`true` (as QEMU's user networking)", `false`,
		"Map the gateway's address (10.0.2.2, ::2) to the host's loopback. Off: guests cannot reach services on the host's 127.0.0.1 / ::1, and `host.corral.internal` does not resolve. Whatever it says, NAT never reaches corral's own sockets."},
	{"fences[].gateway.socks", "string (IP:port, or a port on 127.0.0.1)", "`\"\"`: no SOCKS endpoint", `"127.0.0.1:1080"`,
		fmt.Sprintf("A SOCKS5 endpoint on the host that reaches every guest address of this fence, and nothing else (CONNECT and UDP ASSOCIATE, no authentication; names resolved by the fence's DNS: `curl --socks5-hostname`, `ssh -o ProxyCommand='nc -X 5 -x 127.0.0.1:1080 %%h %%p'`). At most %d clients at once. A bare port listens on 127.0.0.1; any other address must be written out, and anyone who can connect to it reaches the fence.", socks.DefaultMaxConns)},
	{"fences[].gateway.dns.records", "list of objects", "`[]`", "",
		"Static DNS records of the fence."},
	{"fences[].gateway.dns.records[].name", "string (domain name)", "required", `db`,
		"The owner. One label (`db`) is a name under the fence's domain, answered as `db` and `db.corral.internal`; any other name is absolute (`api.lab.test`) and shadows what upstream resolvers would say."},
	{"fences[].gateway.dns.records[].type", "string (" + strings.Join(dns.RecordTypes, ", ") + ")", "required", `A`,
		"The record type. A name with a CNAME holds nothing else. Records of a type replace the gateway's own answers of that type for the name; other types still come from the gateway."},
	{"fences[].gateway.dns.records[].data", "list of strings", "required", `["10.0.2.50", "10.0.2.51"]`,
		"One entry per record: an address (A, AAAA), a name (CNAME: exactly one; PTR), a text (TXT), `\"priority weight port target\"` (SRV), `\"preference exchange\"` (MX)."},
	{"fences[].gateway.dns.records[].ttl", "duration (or seconds)", fmt.Sprintf("`%v`", dns.DefaultRecordTTL), `5m`,
		"TTL of the answers, whole seconds."},
	{"fences[].gateway.forwards[].proto", "string (tcp, udp)", "`tcp`", `udp`,
		"Protocol of the forward."},
	{"fences[].gateway.forwards[].listen", "string (IP:port)", "required", `"127.0.0.1:2222"`,
		"The host address the forward listens on; port 0 takes a free port (`corral forward ls` shows it). Two fences cannot forward one address."},
	{"fences[].gateway.forwards[].target", "string (IP:port)", "required", `"10.0.2.15:22"`,
		"The guest address inside the fence, reached from the gateway's address."},
	{"fences[].gateway.forwards[].sni", "string (server name)", "`\"\"`", `lab-a.test`,
		"TCP only: route connections whose TLS ClientHello names this server here, so several forwards (of several fences) share one listen address."},
	{"fences[].gateway.forwards[].host", "string (HTTP host)", "`\"\"`", `lab-a.test`,
		"TCP only: route HTTP requests whose Host header is this name here, so several forwards share one listen address."},

	// admin, metrics, log
	{"admin.listen", "string (unix:// address)", "`unix://$XDG_RUNTIME_DIR/corral/admin.sock`", `"unix:///run/corral/admin.sock"`,
		"The admin API (HTTP+JSON, mode 0600) that every client command talks to; `\"\"` turns it off."},
	{"metrics.listen", "string (host:port)", "`\"\"`: no metrics", `"127.0.0.1:9740"`,
		"Serve Prometheus metrics at /metrics on this address."},
	{"log.level", "string (debug, info, warn, error)", "`info`", `debug`,
		"Log level; also `--log-level` and `CORRAL_LOG_LEVEL`."},
	{"log.format", "string (text, json)", "`text`", `json`,
		"Log format (log/slog); also `--log-format` and `CORRAL_LOG_FORMAT`."},

	// limits
	{"limits.ports_per_listener", "integer", "`1024`", `256`,
		"Ports (connections, or datagram peers) one listen address may hold; a connection beyond it is closed at once and a datagram from a new peer beyond it dropped, before any per-port allocation. Counted (`corral status` LISTENERS, `corral_listener_refused_total`) and logged (rate-limited)."},
	{"limits.ports_per_fence", "integer", "`4096`", `1024`,
		"Ports one fence may hold, over all its listeners and dials (the gateway counts as one). Refusals are counted (`ports_refused` of the fence, `corral_fence_ports_refused_total`) and logged (rate-limited)."},
	{"limits.frame_timeout", "duration", "`30s`", `10s`,
		"A stream port that has begun a frame (part of a length header or of a frame) and does not complete it within this time is closed and counted (`frame_timeouts` of its listener, `corral_listener_frame_timeouts_total`). An idle VM is never closed."},
	{"limits.datagram_idle_timeout", "duration", "`5m`", `1m`,
		"A datagram peer (`udp://`, `unixgram://`) silent this long is forgotten and its port closed; counted (`expired` of its listener, `corral_listener_expired_total`)."},
	{"limits.max_queued_bytes", "integer (bytes, 1 MiB … 1 TiB)", fmt.Sprintf("`%d` (256 MiB)", vswitch.DefaultMaxQueuedBytes), `67108864`,
		"Buffer bytes queued for all ports and the uplink together (each queued frame counts the buffer it sits in), enforced before each port's own queue bound; a frame beyond it is dropped and counted (drop reason `global_queue_full`)."},
}

// configReference renders docs/configuration.md from keyDocs.
func configReference() string {
	var b strings.Builder
	b.WriteString(`<!-- Generated from cmd/corral/keydocs.go by
     go test ./cmd/corral -run TestConfigReference -update
     Do not edit: the test fails when this file and the table differ. -->

# corral configuration reference

corral reads its configuration once at start, merging, from lowest to
highest precedence:

1. the embedded default (one fence ` + "`default`" + `, ID 1, with a gateway and a unix
   socket in ` + "`$XDG_RUNTIME_DIR/corral/`" + `, and the admin socket there);
2. a YAML file: ` + "`--config FILE`" + ` or ` + "`CORRAL_CONFIG=FILE`" + ` (its ` + "`fences`" + ` list replaces
   the default's);
3. environment variables: the key in upper case with ` + "`_`" + ` for ` + "`.`" + `, prefixed
   ` + "`CORRAL_`" + ` (` + "`CORRAL_LOG_LEVEL=debug`" + `, ` + "`CORRAL_UPLINK_UDP_LISTEN=0.0.0.0:7407`" + `);
   keys inside lists (` + "`fences[]`" + `) have none;
4. flags: ` + "`--log-level`" + `, ` + "`--log-format`" + `.

An unknown key or an invalid value stops corral before any socket exists,
with exit status 2 and the key in the message
(` + "`config: fences[1].id: 0x1000000 out of range 1..0xFFFFFE`" + `).

Durations are Go durations (` + "`90s`" + `, ` + "`5m`" + `, ` + "`1h30m`" + `). Addresses in ` + "`listen`" + `,
` + "`dial`" + `, ` + "`admin.listen`" + ` and ` + "`state_dir`" + ` expand ` + "`$VARS`" + `; an unset variable is an
error, except ` + "`$XDG_RUNTIME_DIR`" + `, which falls back to /tmp/corral-UID (made
private, mode 0700): what the shell's ` + "`${XDG_RUNTIME_DIR:-/tmp/corral-$(id -u)}`" + `
names.

[contrib/examples/corral.yaml](../contrib/examples/corral.yaml) is a complete
example (it is also the sample in the README, and a test loads it).

`)
	b.WriteString("## Keys\n\n")
	for _, sec := range keySections {
		fmt.Fprintf(&b, "- [%s](#%s)\n", sec.title, anchor(sec.title))
	}
	b.WriteString("\n")
	for i, sec := range keySections {
		var rows []keyDoc
		for _, d := range keyDocs {
			if keySection(d.Key) == i {
				rows = append(rows, d)
			}
		}
		fmt.Fprintf(&b, "### %s\n\n", sec.title)
		if sec.intro != "" {
			b.WriteString(sec.intro + "\n\n")
		}
		b.WriteString("| key | type | default | example | meaning |\n|---|---|---|---|---|\n")
		for _, d := range rows {
			ex := "—"
			if d.Example != "" {
				ex = "`" + d.Example + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", d.Key, d.Type, d.Default, ex, cell(d.Doc))
		}
		b.WriteString("\n")
	}
	b.WriteString(gatewayDNSNames)
	return b.String()
}

// cell escapes a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// anchor is GitHub's heading anchor of a section title.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// gatewayDNSNames closes the reference: the names a gateway's DNS answers.
const gatewayDNSNames = `## Gateway DNS names

A fence's gateway answers DNS at .3 (10.0.2.3) and, with IPv6, at ::3;
DHCP and router advertisements hand guests that server and the fence's
domain (` + "`corral.internal`" + ` unless ` + "`gateway.domain`" + ` says otherwise) as their
search list. It answers, with authority:

| name | A | AAAA |
|---|---|---|
| ` + "`host.corral.internal`" + ` | the gateway (10.0.2.2), which NAT maps to the host's 127.0.0.1 | ::2 (mapped to the host's ::1), only when the host has an IPv6 loopback; otherwise an empty answer |
| ` + "`gateway.corral.internal`" + ` | 10.0.2.2 | ::2 when IPv6 is on |
| ` + "`dns.corral.internal`" + ` | 10.0.2.3 | ::3 when IPv6 is on |
| ` + "`NAME.corral.internal`" + ` | the address leased to the guest that sent hostname NAME by DHCP | empty (guests choose their SLAAC addresses) |
| static records (` + "`gateway.dns.records`" + `) | as configured | as configured |

- **Short names**: a single label (` + "`vm1`" + `, ` + "`host`" + `, ` + "`db`" + `) is answered as
  the same name under the domain, whether the guest's resolver expands
  it with the search list or sends it bare; a single label that is no
  name of the fence goes upstream.
- **Other tools' names**: ` + "`host.containers.internal`" + `, ` + "`host.docker.internal`" + `,
  ` + "`host.lima.internal`" + ` answer as ` + "`host`" + `; ` + "`gateway.containers.internal`" + ` and
  ` + "`gateway.docker.internal`" + ` as ` + "`gateway`" + `, so images made for podman,
  Docker and Lima work unchanged.
- **A type the name does not have** gets an empty NOERROR answer, never
  another type's address: a guest whose host service listens on
  127.0.0.1 only is not sent to ::2 first.
- **Reverse lookups** of the fence's own addresses name the gateway, the
  DNS server and the leases; other addresses of the fence get NXDOMAIN
  and are never forwarded.
- Every other name is forwarded to ` + "`gateway.resolvers`" + `.
`
