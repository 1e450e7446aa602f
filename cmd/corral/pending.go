package main

import "fmt"

// pending refuses the configuration keys that are declared (fileConfig)
// but not wired yet: each open issue removes its keys from here as it
// implements them, so that no key is ever accepted and ignored.
func (v *validator) pending() error {
	r := v.raw
	var keys []string
	add := func(set bool, key string) {
		if set {
			keys = append(keys, key)
		}
	}
	// Issue 8: bounded ports, memory, NAT fairness, storm control.
	add(r.Limits.MaxQueuedBytes != nil, "limits.max_queued_bytes")
	for i, f := range r.Fences {
		k := fmt.Sprintf("fences[%d]", i)
		add(f.BUMRate != nil, k+".bum_rate")
	}
	// Issue 10: gossip.
	add(r.Uplink.Gossip.Listen != "" || len(r.Uplink.Gossip.Join) > 0 || r.Uplink.Gossip.Profile != "", "uplink.gossip")
	if len(keys) > 0 {
		return cfgErr(keys[0], "not supported yet by this build")
	}
	return nil
}
