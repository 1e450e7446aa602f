package main

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
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

// TestReclaimer: memory is returned after a wave of detaches has ended
// and once more minGap later (what the wave's ports still held then), not
// while ports come, not for a small wave, and not again within minGap.
func TestReclaimer(t *testing.T) {
	var ports atomic.Int64
	frees := make(chan int, 16)
	rc := reclaim{every: 5 * time.Millisecond, minGap: 200 * time.Millisecond, maxWait: time.Hour, wave: 100,
		free: func() { frees <- int(ports.Load()) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rc.run(ctx, func() int { return int(ports.Load()) }, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })
	noFree := func(what string) {
		t.Helper()
		select {
		case n := <-frees:
			t.Fatalf("%s: memory freed at %d ports", what, n)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for i := 0; i < 500; i += 50 { // ports arrive
		ports.Store(int64(i))
		time.Sleep(time.Millisecond)
	}
	noFree("ports arriving")
	ports.Store(450) // a small wave
	noFree("50 ports leaving")
	ports.Store(100) // a big one, then quiet
	select {
	case n := <-frees:
		if n != 100 {
			t.Fatalf("freed at %d ports, want 100", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("memory not freed after 350 ports left")
	}
	noFree("quiet after the wave")
	select {
	case n := <-frees:
		if n != 100 {
			t.Fatalf("follow-up free at %d ports, want 100", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no follow-up free after the wave")
	}
	noFree("quiet after the follow-up")
}
