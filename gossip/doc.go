// Package gossip is corral's membership and fence-state control plane
// at scale (DESIGN.md 4.7, issue 10), on github.com/hashicorp/memberlist
// (SWIM with Lifeguard). A [Node] joins a cluster through any member,
// learns every member's metadata (name, outer MAC, installation, data
// addresses, fences, gateway claims), and exchanges, only among the hosts
// of each fence, the inner MACs that each host's local ports hold, so that
// a unicast to a MAC learned anywhere in the fence can go straight to its
// host. The data path reads an immutable [Snapshot] (one atomic load per
// batch, lookups without locks or allocation); it never waits on gossip.
//
// The package does not import the uplink or the switch: [Snapshot]'s
// lookups use builtin and net/netip types, so the uplink can declare an
// interface of its own that *Snapshot satisfies, and cmd wires them.
//
// # Vocabulary
//
//   - member: a host in the memberlist cluster, known by its node name;
//     alive, suspect (alive until memberlist declares it dead), dead or
//     left.
//   - owner: the host whose local ports hold a set of MACs in a fence.
//   - fence table: a local fence's MAC sets, one per owner (this host's
//     included), each with a version ("seq").
//   - inbound: received from the gossip network; outbound: sent to it.
//
// # Design, with the numbers behind it
//
// Fence membership rides in the memberlist node metadata (exact fence
// IDs, 3 bytes each). Every host thus knows every host's fences, and a
// change is disseminated by memberlist's own alive broadcast and repaired
// by its push/pull, with no second membership protocol. At the target mix
// (1,000 hosts, 1,000 fences each on 3 to 50 hosts: 26.5 fences per host
// on average) the metadata is 24 + 7 + 26.5·3 ≈ 110 bytes, and all the
// membership knowledge is 26,500 (host, fence) pairs per host, about
// 0.5 MB. The alternatives cost more: NetworkDB's cluster-wide membership
// events carry the same facts with lamport clocks plus a second push/pull
// state of the same size; rendezvous-hashed directory nodes avoid the
// global knowledge but add a registration protocol, directory hand-over on
// every membership change and a window where a fence's members do not see
// each other. The price of metadata: its 512-byte cap. With one IPv4 data
// address a host announces at most 160 fences plus gateways
// ([MaxMetaFences]; [Node.SetLocalFences] returns [ErrMetaTooLarge]
// beyond). A compact fallback for hosts with more (a Bloom filter in the
// metadata and a confirmation before MACs are sent) is not built yet.
//
// MACs never ride on cluster-wide gossip (the delegate's GetBroadcasts and
// LocalState are empty). They move as fence-state messages sent directly
// (memberlist SendBestEffort, or SendReliable above 1,200 bytes) to the
// hosts of the fence:
//
//   - on change, [Node.SetLocalMACs] diffs the new set against the old and
//     sends an update (added and removed MACs, from version Base to Seq) to
//     each host of the fence; a receiver holding another version asks for
//     the full set (pull);
//   - when a host and a peer start sharing a fence (either side's metadata
//     changed, a join, a restart), each sends the other its full set and
//     pulls the other's;
//   - anti-entropy: every SyncInterval (30 s LAN, ±25 %), for each local
//     fence, one random other host of the fence gets a 21-byte hash of the
//     table (the XOR of a 64-bit mix of every (owner, seq)); only on a
//     mismatch are digests exchanged and the differences sent. A fence
//     whose membership changed gets an early round 2 s later. At 26
//     fences per host this is about 26 × 21 bytes per 30 s, 0.15 kbit/s
//     per host with memberlist's framing.
//
// A receiver accepts a fence-state message only for a fence it has, only
// from a host whose metadata lists the fence, and an update only about an
// owner whose metadata lists the fence, under the owner's current
// instance (so a restarted host's previous MACs cannot be replayed); a
// host not in a fence never receives its MACs (TestCluster50 scans every
// byte delivered to every host). Per owner and fence at most
// Config.MaxMACsPerHost MACs (default 4,096) and at most Config.MaxMACs
// (default 262,144) remote MACs in all are kept; the rest are refused and
// counted.
//
// A member that leaves (or that memberlist declares dead) has its fences,
// gateway claims and MACs withdrawn by every host on the event. A
// restarted host (same name, new random instance in its metadata) has its
// previous state dropped and re-announced at once, without waiting for
// failure detection. Two members claiming one fence's gateway: every host
// computes the same owner, the lowest outer MAC (byte-wise: within an
// installation the lowest host ID), the rule of the hello protocol;
// [Snapshot.GatewayClaims] lists all claimants, winner first.
//
// # memberlist tuning ("lan", the default profile)
//
// Starting from memberlist.DefaultLANConfig:
//
//   - ProbeInterval 500 ms, ProbeTimeout 250 ms: each member is probed by
//     someone about twice a second, so a failure is suspected within about
//     1 s. Probes cost about 2 × (ping + ack) ≈ 2.5 kbit/s per host.
//   - SuspicionMult 3, SuspicionMaxTimeoutMult 2: a suspect is declared
//     dead after 3 · log10(n) · 0.5 s (4.5 s at 1,000 members) once one
//     other member confirms the suspicion (Lifeguard, k = 1), after at most
//     9 s without confirmation; memberlist's default (4, 6, 1 s probes)
//     gives 12 to 72 s at 1,000 members, outside the 10 s target.
//   - PushPullInterval 60 s (memberlist's default 30 s): push/pull is a
//     full membership exchange, both ways, about 150 bytes per member, so
//     at 1,000 members each one is about 150 kB each way. memberlist scales
//     the interval by ⌈log2(n/32)⌉+1 (6 at 1,000: 360 s); each host takes
//     part in about two per interval (its own and a random peer's), which
//     at 30 s base would be ≈ 13 kbit/s per host, over the budget on its
//     own; at 60 s it is about 6.7 kbit/s before compression.
//   - GossipToTheDeadTime 15 s; gossip fan-out (GossipNodes 3, every
//     200 ms) and RetransmitMult 4 unchanged: a broadcast reaches 1,000
//     members in about log4(1000) ≈ 5 rounds, 1 s.
//
// "wan" is memberlist.DefaultWANConfig with a 120 s push/pull base and a
// 60 s anti-entropy period.
//
// After a successful join a host exchanges state with two random members
// (about 1 s and 4 s later): a seed that booted at the same time may not
// have known every member, and push/pull would fill the gap only minutes
// later at scale. The join is retried with exponential backoff until a
// configured member answers, and again whenever the host is alone.
//
// With Config.SecretKey every packet and stream is encrypted and
// authenticated with AES-256-GCM (memberlist's keyring); the memberlist
// label "corral/<installation>" is authenticated data, so two
// installations never merge. A host without the key can neither join,
// read nor forge membership (TestKeyring).
//
// # Node metadata, version 1 (at most 512 bytes), network byte order
//
//	 0       1       2               8       9      10              18      20      22      24
//	+-------+-------+---------------+-------+------+---------------+-------+-------+-------+
//	| ver   | inst  | outer MAC (6) | flags | naddr| instance (8)  | nfence| ngw   | 0 0   |
//	+-------+-------+---------------+-------+------+---------------+-------+-------+-------+
//	| naddr × (family 4|6 (1), IPv4 (4) or IPv6 (16), port (2))                            |
//	| nfence × fence ID (3), sorted | ngw × gateway fence ID (3), sorted                   |
//
// flags bit 0: leaving (a host leaving on purpose; listed as left, not
// dead). A gateway fence is listed only among the gateways. Readers accept
// any version >= 1 and ignore trailing bytes (a later version appends).
//
// # Fence-state messages, version 1, network byte order
//
// Every message starts with type (1), version (1), sender outer MAC (6),
// fence ID (3); then:
//
//	update (1):  owner (6) | owner instance (8) | base (8) | seq (8) | nadd (2) | ndel (2) | nadd × MAC (6) | ndel × MAC (6)
//	sync-hash (2): owners (2) | hash (8)
//	sync-digest (3): flags (1, zero) | n (2) | n × (owner (6), seq (8))
//	pull (4):    n (2) | n × owner (6)
//
// An update with base 0 carries the owner's full set. At most 4,096 MACs
// per update ([MaxMsgMACs]) and 1,024 owners per digest or pull.
//
// # Scale simulation
//
// BenchmarkScale runs 50, 100, 300 and 1,000 members in one process on
// package memnet (an in-memory transport; memberlist's MockNetwork blocks
// a sender for ever on a stopped node) and reports convergence, join and
// failure times, gossip kbit/s per host at steady state and heap per host:
//
//	go test -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 60m ./gossip/ -args -sim.window 60s
//
// make bench (contrib/bench/run.sh) runs it for the sizes in BENCH_GOSSIP
// (default 50 and 100: on two shared cores one process cannot run 200 or
// more members in real time, see the README) and prints the figures with
// the other tables.
//
// # Use by corral
//
// cmd/corral starts a Node for uplink.gossip and hands every snapshot to
// the uplink (uplink.Uplink.SetDirectory; *Snapshot satisfies
// uplink.Directory), which then sends no hellos. Once a second it sets
// the local fences (the switch's fences with ports), the gateways served
// and, per fence, the MACs of the local ports (from the switch's bridge
// table). With a sealed uplink, SecretKey is HKDF-SHA256 of the
// installation secret with the info "corral gossip key v1" and the
// installation ID, and SIGHUP replaces it (Node.SetKeys) with the
// uplink's keys.
package gossip
