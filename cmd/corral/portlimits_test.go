package main

import (
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/attach"
)

func TestPortLimitsConfig(t *testing.T) {
	const fence = "fences: [{name: a, id: 1, listen: [\"unix:///tmp/x.sock\"]}]\n"
	cfg, err := parse(t, fence)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Ports, (PortLimits{PerListener: attach.DefaultMaxPorts, FrameTimeout: 30 * time.Second, DatagramIdle: 5 * time.Minute}); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	if cfg.Switch.MaxFencePorts != 0 { // 0: the switch's default
		t.Errorf("ports_per_fence default: %d, want 0 (vswitch.DefaultMaxFencePorts)", cfg.Switch.MaxFencePorts)
	}
	cfg, err = parse(t, fence+"limits: {ports_per_listener: 10, ports_per_fence: 20, frame_timeout: 2s, datagram_idle_timeout: 1m}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Ports, (PortLimits{PerListener: 10, FrameTimeout: 2 * time.Second, DatagramIdle: time.Minute}); got != want {
		t.Errorf("set: %+v, want %+v", got, want)
	}
	if cfg.Switch.MaxFencePorts != 20 {
		t.Errorf("ports_per_fence: %d, want 20", cfg.Switch.MaxFencePorts)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"limits: {ports_per_listener: 0}", "config: limits.ports_per_listener: 0: want 1..1048576"},
		{"limits: {ports_per_fence: -1}", "config: limits.ports_per_fence: -1: want 1..1048576"},
		{"limits: {frame_timeout: soon}", `config: limits.frame_timeout: "soon": want a duration`},
		{"limits: {frame_timeout: 0s}", `config: limits.frame_timeout: "0s"`},
		{"limits: {datagram_idle_timeout: 1ms}", `config: limits.datagram_idle_timeout: "1ms"`},
	} {
		_, err := parse(t, fence+tc.yaml+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
