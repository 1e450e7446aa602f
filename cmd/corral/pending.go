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
	add(r.Limits != (fileLimits{}), "limits")
	for i, f := range r.Fences {
		k := fmt.Sprintf("fences[%d]", i)
		add(f.BUMRate != nil, k+".bum_rate")
	}
	if len(keys) > 0 {
		return cfgErr(keys[0], "not supported yet by this build")
	}
	return nil
}
