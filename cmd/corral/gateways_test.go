package main

import (
	"strings"
	"testing"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/stack"
)

// TestPrintGatewaysRefusals: `corral gateways` shows the NAT refusals by
// reason, a row per reason that has any, and the new counters.
func TestPrintGatewaysRefusals(t *testing.T) {
	var st stack.Stats
	st.TCPRefusals[stack.RefusedLimitGuest] = 344
	st.UDPRefusals[stack.RefusedLimitGuest] = 12
	st.TCPRefusals[stack.RefusedSelf] = 3
	st.ICMPRefusals[stack.RefusedPolicy] = 1
	st.InBadChecksum, st.OutWaits, st.NATGuests = 5, 6, 2
	gs := admin.GatewayStatus{Fence: 1, Name: "lab", Stats: gatewayStatsOf(st)}
	if n := len(gs.Stats.TCPRefusals); n != int(stack.NumRefusals) {
		t.Fatalf("%d reasons in the API, want all %d", n, stack.NumRefusals)
	}
	var b strings.Builder
	printGateways(&b, []admin.GatewayStatus{gs})
	out := b.String()
	for _, want := range []string{
		"bad checksums 5, out waits 6",
		"; 2 guests",
		"  REFUSED\tTCP\tUDP\tICMP\n  limit_guest\t344\t12\t0\n  policy\t0\t0\t1\n  self\t3\t0\t0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dial_failed") {
		t.Errorf("a reason without refusals is shown:\n%s", out)
	}
	b.Reset()
	printGateways(&b, []admin.GatewayStatus{{Fence: 2, Name: "quiet", Stats: gatewayStatsOf(stack.Stats{})}})
	if strings.Contains(b.String(), "REFUSED") {
		t.Errorf("refusal table without refusals:\n%s", b.String())
	}
}
