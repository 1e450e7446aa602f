package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
)

// PortLimits are the port bounds of limits.* (issue 8) that the listeners
// and dialers apply; ports_per_fence is in Config.Switch.MaxFencePorts.
type PortLimits struct {
	PerListener  int           // limits.ports_per_listener
	FrameTimeout time.Duration // limits.frame_timeout
	DatagramIdle time.Duration // limits.datagram_idle_timeout
}

// maxPortsLimit bounds ports_per_listener and ports_per_fence: far above
// what a process's descriptors allow, low enough to catch a typo.
const maxPortsLimit = 1 << 20

// portLimits checks limits.ports_per_listener, ports_per_fence,
// frame_timeout and datagram_idle_timeout.
func (v *validator) portLimits() error {
	l := v.raw.Limits
	count := func(key string, p *int64, def int) (int, error) {
		if p == nil {
			return def, nil
		}
		if *p < 1 || *p > maxPortsLimit {
			return 0, cfgErr(key, "%d: want 1..%d", *p, maxPortsLimit)
		}
		return int(*p), nil
	}
	dur := func(key, s string, def time.Duration) (time.Duration, error) {
		if s == "" {
			return def, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Millisecond {
			return 0, cfgErr(key, "%q: want a duration of at least 10ms, such as %v (the default)", s, def)
		}
		return d, nil
	}
	var err error
	pl := &v.cfg.Ports
	if pl.PerListener, err = count("limits.ports_per_listener", l.PortsPerListener, attach.DefaultMaxPorts); err != nil {
		return err
	}
	if v.cfg.Switch.MaxFencePorts, err = count("limits.ports_per_fence", l.PortsPerFence, 0); err != nil {
		return err
	}
	if pl.FrameTimeout, err = dur("limits.frame_timeout", l.FrameTimeout, attach.DefaultFrameTimeout); err != nil {
		return err
	}
	if pl.DatagramIdle, err = dur("limits.datagram_idle_timeout", l.DatagramIdleTimeout, attach.DefaultPeerIdle); err != nil {
		return err
	}
	return nil
}

// listenerStatus returns every fence listener's port count and limit
// counters (GET /v1/status, /metrics).
func (rt *instance) listenerStatus() []admin.ListenerStatus {
	rt.lnMu.Lock()
	defer rt.lnMu.Unlock()
	out := make([]admin.ListenerStatus, 0, len(rt.listeners))
	for _, ln := range rt.listeners {
		st := ln.PortStats()
		out = append(out, admin.ListenerStatus{
			Fence: rt.listenerFence[ln], Addr: ln.Addr().String(), Ports: st.Ports,
			Refused: st.Refused, FrameTimeouts: st.FrameTimeouts, Expired: st.Expired,
		})
	}
	return out
}

// Returning a surge's memory. When many ports leave at once (a surge of
// datagram peers expiring, a host's VMs stopping), their memory is garbage
// but an idle corral allocates too little to start a collection, and the
// runtime returns freed pages to the OS only gradually: RSS would stay at
// the surge's height for minutes. reclaimer watches the port count and,
// after a wave of detaches, runs debug.FreeOSMemory (a collection that
// returns every free page), at most once per reclaimMinGap.
const (
	reclaimEvery  = time.Second
	reclaimMinGap = 5 * time.Second
	// reclaimMaxWait bounds the wait for a long wave to end.
	reclaimMaxWait = 30 * time.Second
	// reclaimWave is how many ports must have left since the last peak.
	reclaimWave = 256
)

// reclaim is the policy of reclaimer; defaultReclaim is corral's.
type reclaim struct {
	every, minGap, maxWait time.Duration
	wave                   int
	free                   func()
}

var defaultReclaim = reclaim{every: reclaimEvery, minGap: reclaimMinGap, maxWait: reclaimMaxWait, wave: reclaimWave, free: debug.FreeOSMemory}

// reclaimer runs until ctx is done; ports returns the current port count.
// It frees once the wave has ended (the count stopped falling), or every
// maxWait while it goes on, and once more minGap after that: the count
// falls when the switch detaches a port, but the port's goroutines and
// buffers may still be going away then (on a loaded machine, for longer
// than a tick), and an idle corral runs no collection of its own that
// would free them later.
func reclaimer(ctx context.Context, ports func() int, log *slog.Logger) {
	defaultReclaim.run(ctx, ports, log)
}

func (rc reclaim) run(ctx context.Context, ports func() int, log *slog.Logger) {
	t := time.NewTicker(rc.every)
	defer t.Stop()
	peak := ports()
	prev := peak
	var last, fallingSince time.Time
	followUp := false // a free is due minGap after the last
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if followUp && time.Since(last) >= rc.minGap {
			rc.free()
			last, followUp = time.Now(), false
		}
		n := ports()
		peak = max(peak, n)
		falling := n < prev
		prev = n
		switch {
		case !falling:
			fallingSince = time.Time{}
		case fallingSince.IsZero():
			fallingSince = time.Now()
		}
		if peak-n < rc.wave || time.Since(last) < rc.minGap || (falling && time.Since(fallingSince) < rc.maxWait) {
			continue
		}
		start := time.Now()
		rc.free()
		last, followUp = time.Now(), true
		log.Debug("memory returned after ports left", "ports_left", peak-n, "ports", n, "took", last.Sub(start))
		peak = n
	}
}
