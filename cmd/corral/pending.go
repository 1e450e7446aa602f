package main

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
	// Issue 10: gossip.
	add(r.Uplink.Gossip.Listen != "" || len(r.Uplink.Gossip.Join) > 0 || r.Uplink.Gossip.Profile != "", "uplink.gossip")
	if len(keys) > 0 {
		return cfgErr(keys[0], "not supported yet by this build")
	}
	return nil
}
