package uplink

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corralnet/corral/fence"
)

// counter indexes the uplink's counters. Names are what Status reports.
type counter int

const (
	ctrRxFrames counter = iota
	ctrRxBytes
	ctrTxFrames
	ctrTxBytes
	ctrTxDatagrams
	ctrRxHellos
	ctrTxHellos
	ctrRxFragments
	ctrTxFragmented
	ctrReassembled
	ctrDropInvalid // Parse failed with an error not listed below
	ctrDropOwnMAC
	ctrDropOwnEcho
	ctrDropOtherDst
	ctrDupMAC
	ctrDropBadHello
	ctrDropTooBig
	ctrDropReassembly
	ctrDropTxNoHost
	ctrDropTxInvalid
	ctrTxErrors
	ctrRxErrors
	ctrTxGSO
	ctrRxGRO
	ctrDropTableFull
	ctrGatewayConflict
	ctrPeersExpired
	ctrDropNotPeer     // unsealed UDP: the source address is not a peer's
	ctrDropAuth        // sealed: the tag did not verify
	ctrDropReplay      // sealed: counter seen before or too old
	ctrDropNoKey       // sealed: no key with the frame's key ID for its fence
	ctrDropSealedShort // sealed: payload too short for key ID, counter, inner frame and tag
	ctrDropTxNoKey     // sealed: no send key for the frame's fence
	ctrDropTxCounter   // sealed: the reserved send counters are used up
	ctrTxDirect        // directory: unknown unicast sent straight to its host
	ctrDropUnconfirmed // unsealed, learning: from an address not confirmed yet
	ctrTxProbes        // probes sent (return routability)
	ctrPeersConfirmed  // addresses confirmed by an echoed cookie
	numCounters
)

var counterNames = [numCounters]string{
	ctrRxFrames:        "rx_frames",
	ctrRxBytes:         "rx_bytes",
	ctrTxFrames:        "tx_frames",
	ctrTxBytes:         "tx_bytes",
	ctrTxDatagrams:     "tx_sends",
	ctrRxHellos:        "rx_hellos",
	ctrTxHellos:        "tx_hellos",
	ctrRxFragments:     "rx_fragments",
	ctrTxFragmented:    "tx_fragmented",
	ctrReassembled:     "rx_reassembled",
	ctrDropInvalid:     "drop_invalid",
	ctrDropOwnMAC:      "drop_own_mac",
	ctrDropOwnEcho:     "drop_own_echo",
	ctrDropOtherDst:    "drop_other_dst",
	ctrDupMAC:          "duplicate_mac",
	ctrDropBadHello:    "drop_bad_hello",
	ctrDropTooBig:      "drop_tx_too_big",
	ctrDropReassembly:  "drop_reassembly",
	ctrDropTxNoHost:    "drop_tx_unknown_host",
	ctrDropTxInvalid:   "drop_tx_invalid",
	ctrTxErrors:        "tx_errors",
	ctrRxErrors:        "rx_errors",
	ctrTxGSO:           "tx_gso_sends",
	ctrRxGRO:           "rx_gro_buffers",
	ctrDropTableFull:   "drop_host_table_full",
	ctrGatewayConflict: "gateway_conflict",
	ctrPeersExpired:    "peers_expired",
	ctrDropNotPeer:     "drop_not_peer",
	ctrDropAuth:        "drop_auth",
	ctrDropReplay:      "drop_replay",
	ctrDropNoKey:       "drop_no_key",
	ctrDropSealedShort: "drop_sealed_short",
	ctrDropTxNoKey:     "drop_tx_no_key",
	ctrDropTxCounter:   "drop_tx_counter_limit",
	ctrTxDirect:        "tx_directory_unicast",
	ctrDropUnconfirmed: "drop_unconfirmed",
	ctrTxProbes:        "tx_probes",
	ctrPeersConfirmed:  "peers_confirmed",
}

type counters struct {
	c [numCounters]atomic.Uint64
	// parse counts drops by fence.Parse error, indexed like parseErrs.
	parse [len(parseErrs)]atomic.Uint64
}

func (c *counters) add(k counter, n uint64) { c.c[k].Add(n) }

// parseErrs are the drop reasons of fence.Params.Parse, reported as
// "drop_<name>".
var parseErrs = [...]struct {
	name string
	err  error
}{
	{"short", fence.ErrShort},
	{"too_big", fence.ErrTooBig},
	{"ethertype", fence.ErrEtherType},
	{"oui", fence.ErrOUI},
	{"installation", fence.ErrInstallation},
	{"host_id", fence.ErrHostID},
	{"dst", fence.ErrDst},
	{"version", fence.ErrVersion},
	{"fragtype", fence.ErrFragType},
	{"fence_reserved", fence.ErrReservedFence},
	{"runt", fence.ErrRunt},
}

// countParse counts a Parse error by reason.
func (c *counters) countParse(err error) {
	for i := range parseErrs {
		if errors.Is(err, parseErrs[i].err) {
			c.parse[i].Add(1)
			return
		}
	}
	c.c[ctrDropInvalid].Add(1)
}

// countOpen counts a fence.Sealer.Open error by reason.
func (c *counters) countOpen(err error) {
	switch err {
	case fence.ErrAuth:
		c.c[ctrDropAuth].Add(1)
	case fence.ErrReplay:
		c.c[ctrDropReplay].Add(1)
	case fence.ErrNoKey:
		c.c[ctrDropNoKey].Add(1)
	default: // fence.ErrSealLen, fence.ErrRunt
		c.c[ctrDropSealedShort].Add(1)
	}
}

func (c *counters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, int(numCounters)+len(parseErrs))
	for i := range c.c {
		m[counterNames[i]] = c.c[i].Load()
	}
	for i := range parseErrs {
		m["drop_"+parseErrs[i].name] = c.parse[i].Load()
	}
	return m
}

// maxFenceCounters bounds the per-fence receive counters.
const maxFenceCounters = 4096

// fenceCounters counts received frames per fence without a lock on the hot
// path: the map is an immutable snapshot, replaced (copied) when a fence is
// seen for the first time.
type fenceCounters struct {
	m  atomic.Pointer[map[uint32]*atomic.Uint64]
	mu sync.Mutex // serializes replacements of m
}

// add adds n received frames to fenceID's counter.
func (f *fenceCounters) add(fenceID uint32, n uint64) {
	if mp := f.m.Load(); mp != nil {
		if c := (*mp)[fenceID]; c != nil {
			c.Add(n)
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.m.Load()
	var m map[uint32]*atomic.Uint64
	if old != nil {
		if c := (*old)[fenceID]; c != nil {
			c.Add(n)
			return
		}
		if len(*old) >= maxFenceCounters {
			return
		}
		m = make(map[uint32]*atomic.Uint64, len(*old)+1)
		for k, v := range *old {
			m[k] = v
		}
	} else {
		m = make(map[uint32]*atomic.Uint64, 1)
	}
	c := new(atomic.Uint64)
	c.Add(n)
	m[fenceID] = c
	f.m.Store(&m)
}

func (f *fenceCounters) snapshot() map[uint32]uint64 {
	out := map[uint32]uint64{}
	if mp := f.m.Load(); mp != nil {
		for k, v := range *mp {
			out[k] = v.Load()
		}
	}
	return out
}

// drops returns the counters that count dropped or failed frames.
func (c *counters) drops() map[string]uint64 {
	m := map[string]uint64{}
	for k, v := range c.snapshot() {
		if strings.HasPrefix(k, "drop_") || strings.HasSuffix(k, "_errors") {
			m[k] = v
		}
	}
	return m
}
