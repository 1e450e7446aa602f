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
		for j, fw := range f.Gateway.Forwards {
			add(fw.SNI != "", fmt.Sprintf("%s.gateway.forwards[%d].sni", k, j))
			add(fw.Host != "", fmt.Sprintf("%s.gateway.forwards[%d].host", k, j))
		}
		// Issue 9: per-fence keys.
		add(f.KeyFile != "", k+".key_file")
		// Issue 11: SOCKS5 and static DNS records.
		add(f.Gateway.Socks != "", k+".gateway.socks")
		add(len(f.Gateway.DNS.Records) > 0, k+".gateway.dns.records")
	}
	// Issue 9: the sealed uplink and authenticated peers.
	add(r.Uplink.Seal != (fileSeal{}), "uplink.seal")
	add(r.Uplink.UDP.LearnPeers != nil, "uplink.udp.learn_peers")
	add(r.Uplink.MaxMACsPerHost != nil, "uplink.max_macs_per_host")
	// Issue 10: gossip.
	add(r.Uplink.Gossip.Listen != "" || len(r.Uplink.Gossip.Join) > 0 || r.Uplink.Gossip.Profile != "", "uplink.gossip")
	if len(keys) > 0 {
		return cfgErr(keys[0], "not supported yet by this build")
	}
	return nil
}
