package admin

import (
	"reflect"
	"testing"

	"github.com/corralnet/corral/uplink"
)

func TestGatewayConflicts(t *testing.T) {
	peers := []uplink.PeerStatus{
		{OuterMAC: "02:fe:0c:01:00:02", Name: "h2", Addr: "192.0.2.2:7407", Gateways: []uint32{1, 5}},
		{OuterMAC: "02:fe:0c:01:00:03", Name: "h3", Gateways: []uint32{2}},
		{OuterMAC: "02:fe:0c:01:00:04", Name: "h4"},
	}
	for _, tc := range []struct {
		name  string
		local []uint32
		want  []GatewayConflict
	}{
		{"no local gateways", nil, []GatewayConflict{}},
		{"disjoint", []uint32{3, 4}, []GatewayConflict{}},
		{"one", []uint32{2}, []GatewayConflict{{Fence: 2, Peer: "02:fe:0c:01:00:03", PeerName: "h3"}}},
		{"two on one peer", []uint32{5, 1}, []GatewayConflict{
			{Fence: 1, Peer: "02:fe:0c:01:00:02", PeerName: "h2", PeerAddr: "192.0.2.2:7407"},
			{Fence: 5, Peer: "02:fe:0c:01:00:02", PeerName: "h2", PeerAddr: "192.0.2.2:7407"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GatewayConflicts(tc.local, peers); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
