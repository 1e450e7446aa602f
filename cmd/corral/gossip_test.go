package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/corralnet/corral/gossip"
)

func TestGossipConfig(t *testing.T) {
	const base = "fences: [{name: lab, id: 1}]\n"
	c, err := parse(t, base+`uplink: {udp: {listen: "0.0.0.0:7407"}, gossip: {listen: ":7946", join: ["192.0.2.10", "h.example:7000"], profile: WAN}}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gossip
	if g == nil || g.Listen.String() != "0.0.0.0:7946" || g.Profile != gossip.ProfileWAN ||
		strings.Join(g.Join, ",") != "192.0.2.10:7946,h.example:7000" || !c.Uplink.Directory {
		t.Fatalf("gossip settings %+v, directory %v", g, c.Uplink.Directory)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`uplink: {gossip: {listen: ":7946"}}`, "uplink.gossip.listen: gossip carries the uplink's control plane"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {join: ["a:1"]}}`, "uplink.gossip.listen: required"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: "nope"}}`, "uplink.gossip.listen: \"nope\""},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: ":7946", join: ["a:99999"]}}`, "uplink.gossip.join[0]"},
		{`uplink: {udp: {listen: ":7407"}, gossip: {listen: ":7946", profile: moon}}`, "uplink.gossip.profile"},
		{`uplink: {udp: {listen: ":7407", peers: ["192.0.2.1"]}, gossip: {listen: ":7946"}}`, "uplink.udp.peers: with uplink.gossip"},
		{`uplink: {udp: {listen: ":7407", learn_peers: true}, gossip: {listen: ":7946"}}`, "uplink.udp.learn_peers"},
	} {
		_, err := parse(t, base+tc.yaml+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestGossipKeyDerived(t *testing.T) {
	dir := t.TempDir()
	secret := writeSecret(t, dir, "s.key", 7, false, 0o600)
	k1, prev, err := gossipKeys(&SealSettings{SecretFile: secret, Installation: 1})
	if err != nil || len(k1) != gossip.SecretKeyLen || prev != nil {
		t.Fatalf("gossipKeys: %x %v %v", k1, prev, err)
	}
	k2, _, _ := gossipKeys(&SealSettings{SecretFile: secret, Installation: 2})
	if bytes.Equal(k1, k2) || bytes.Equal(k1, bytes.Repeat([]byte{7}, 32)) {
		t.Fatal("gossip key not bound to the installation, or equal to the secret")
	}
}
