package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/events"
	"github.com/corralnet/corral/forward"
)

// Reload (SIGHUP, POST /v1/reload, `corral reload`): read the
// configuration again as at start (embedded default, --config FILE,
// CORRAL_* variables, flags), validate it, and apply what changed:
//
//   - fences added (with their listeners, dials and gateway) and removed
//     (their ports are closed);
//   - a fence's listen addresses added and removed, its dial addresses
//     (its dials restart), its gateway settings (its gateway restarts,
//     with its configured forwards and those added at run time) and its
//     forwards (added and removed one by one, the gateway kept);
//   - the keys of a sealed uplink (reloadKeys), as before.
//
// Fences whose configuration did not change are not touched: their ports,
// bridge tables and gateways go on. An invalid configuration, or one that
// changes what cannot change at run time, is refused as a whole, with an
// error naming the key, and the running one is kept. What cannot change:
// host.*, state_dir, uplink.* (except the seal's key files, re-read),
// admin.*, metrics.*, log.*, limits.*, and a fence's name, max_macs,
// port_max_macs and bum_rate (remove the fence and add it under another
// id instead).

// reloadState is what reload keeps between calls.
type reloadState struct {
	mu sync.Mutex // one reload at a time, and not during shutdown
	// load reads and validates the configuration again; nil: reload is
	// not available (corral run in tests without a file).
	load func() (*fileConfig, *Config, error)
	raw  *fileConfig // the running configuration as read

	listeners map[uint32][]attach.Listener // per fence
	dials     map[uint32]context.CancelFunc
}

// trackListener records ln as one of fence id's listeners.
func (rt *instance) trackListener(id uint32, ln attach.Listener) {
	if rt.rl.listeners == nil {
		rt.rl.listeners = map[uint32][]attach.Listener{}
	}
	rt.rl.listeners[id] = append(rt.rl.listeners[id], ln)
}

// dialContext returns the context of fence id's dials, cancelled when the
// fence is removed or its dials change.
func (rt *instance) dialContext(id uint32) context.Context {
	if rt.rl.dials == nil {
		rt.rl.dials = map[uint32]context.CancelFunc{}
	}
	ctx, cancel := context.WithCancel(rt.ctx)
	rt.rl.dials[id] = cancel
	return ctx
}

// keysReloaded is the change that says the uplink's keys were reloaded.
const keysReloaded = "uplink keys reloaded"

// errKeysNotReloaded: the configuration was applied, the keys were not
// (the running keys stay).
var errKeysNotReloaded = errors.New("keys not reloaded, the running keys stay")

// errReloadUnavailable: corral runs without a way to read its
// configuration again.
var errReloadUnavailable = errors.New("reload: this corral cannot read its configuration again")

// reloadConfig reads the configuration again and applies it; it returns
// what changed. On error nothing changed.
func (rt *instance) reloadConfig() ([]string, error) {
	rt.rl.mu.Lock()
	defer rt.rl.mu.Unlock()
	if rt.ctx.Err() != nil {
		return nil, errors.New("reload: corral is shutting down")
	}
	if rt.rl.load == nil {
		return nil, errReloadUnavailable
	}
	raw, cfg, err := rt.rl.load()
	if err != nil {
		return nil, fmt.Errorf("reload: %w; the running configuration stays", err)
	}
	if key := fixedKeyChanged(rt.rl.raw, raw); key != "" {
		return nil, fmt.Errorf("reload: %s cannot change at run time (restart corral); the running configuration stays", key)
	}
	plan, err := planReload(rt.cfg.Fences, cfg.Fences)
	if err != nil {
		return nil, fmt.Errorf("reload: %w; the running configuration stays", err)
	}
	changes := rt.applyReload(plan)
	rt.rl.raw = raw
	rt.cfg.Fences = cfg.Fences
	rt.cfg.Seal = cfg.Seal
	rt.ev.setFences(cfg.Fences)
	return changes, nil
}

// fixedKeyChanged returns the first key that differs between a and b
// among those that cannot change at run time, "" when none does.
func fixedKeyChanged(a, b *fileConfig) string {
	if a == nil || b == nil {
		return ""
	}
	ua, ub := a.Uplink, b.Uplink
	// The seal's key files are re-read by every reload; their names may
	// change too.
	ua.Seal.SecretFile, ub.Seal.SecretFile = "", ""
	ua.Seal.PreviousSecretFile, ub.Seal.PreviousSecretFile = "", ""
	for _, x := range []struct {
		key  string
		a, b any
	}{
		{"host", a.Host, b.Host},
		{"state_dir", a.StateDir, b.StateDir},
		{"uplink", ua, ub},
		{"admin", a.Admin, b.Admin},
		{"metrics", a.Metrics, b.Metrics},
		{"log", a.Log, b.Log},
		{"limits", a.Limits, b.Limits},
	} {
		if k := diffKey(x.key, reflect.ValueOf(x.a), reflect.ValueOf(x.b)); k != "" {
			return k
		}
	}
	return ""
}

// diffKey returns the configuration key (by mapstructure tags) of the
// first difference between a and b, "" when they are equal.
func diffKey(key string, a, b reflect.Value) string {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
			if tag == "" {
				tag = strings.ToLower(t.Field(i).Name)
			}
			if k := diffKey(key+"."+tag, a.Field(i), b.Field(i)); k != "" {
				return k
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return key
	}
	return ""
}

// reloadPlan is what a reload does, fence by fence.
type reloadPlan struct {
	remove []Fence
	add    []Fence
	change []fenceChange
}

type fenceChange struct {
	old, new         Fence
	listenAdd        []attach.Addr
	listenRemove     []attach.Addr
	dials            bool // the dial addresses changed: restart them
	gateway          bool // the gateway's settings changed: restart it
	forwardAdd       []forward.Forward
	forwardRemove    []forward.Forward
	gatewayAddRemove bool // a gateway appears or goes
}

// planReload compares the running fences with the new ones (by ID).
func planReload(old, new []Fence) (reloadPlan, error) {
	var p reloadPlan
	byID := map[uint32]Fence{}
	for _, f := range old {
		byID[f.ID] = f
	}
	seen := map[uint32]bool{}
	for i, nf := range new {
		seen[nf.ID] = true
		of, ok := byID[nf.ID]
		if !ok {
			p.add = append(p.add, nf)
			continue
		}
		key := fmt.Sprintf("fences[%d]", i)
		if of.Name != nf.Name {
			return p, fmt.Errorf("%s.name: cannot change at run time (%q → %q): remove the fence and add it under another id", key, of.Name, nf.Name)
		}
		if of.FenceConfig != nf.FenceConfig || of.PortMaxMACs != nf.PortMaxMACs {
			return p, fmt.Errorf("%s (%s): max_macs, port_max_macs and bum_rate cannot change at run time: remove the fence and add it under another id", key, nf.Name)
		}
		c := fenceChange{old: of, new: nf}
		c.listenAdd = addrsNotIn(nf.Listen, of.Listen)
		c.listenRemove = addrsNotIn(of.Listen, nf.Listen)
		c.dials = !slices.Equal(of.Dial, nf.Dial)
		switch {
		case (of.Gateway == nil) != (nf.Gateway == nil):
			c.gatewayAddRemove = true
		case of.Gateway != nil && !reflect.DeepEqual(*of.Gateway, *nf.Gateway):
			c.gateway = true
		case of.Gateway != nil:
			c.forwardAdd = forwardsNotIn(nf.Forwards, of.Forwards)
			c.forwardRemove = forwardsNotIn(of.Forwards, nf.Forwards)
		}
		if len(c.listenAdd)+len(c.listenRemove)+len(c.forwardAdd)+len(c.forwardRemove) > 0 || c.dials || c.gateway || c.gatewayAddRemove {
			p.change = append(p.change, c)
		}
	}
	for _, f := range old {
		if !seen[f.ID] {
			p.remove = append(p.remove, f)
		}
	}
	return p, nil
}

func addrsNotIn(a, b []attach.Addr) []attach.Addr {
	var out []attach.Addr
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func forwardsNotIn(a, b []forward.Forward) []forward.Forward {
	var out []forward.Forward
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y forward.Forward) bool { return reflect.DeepEqual(x, y) }) {
			out = append(out, x)
		}
	}
	return out
}

// applyReload carries out p. A part that fails is logged and reported
// among the changes; the rest goes on (the configuration was valid, so
// such a failure is the host's: an address taken meanwhile).
func (rt *instance) applyReload(p reloadPlan) []string {
	var changes []string
	note := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		changes = append(changes, s)
		rt.log.Info("reload: " + s)
	}
	fail := func(format string, args ...any) {
		s := "FAILED: " + fmt.Sprintf(format, args...)
		changes = append(changes, s)
		rt.log.Error("reload: " + s)
	}
	for _, f := range p.remove {
		rt.stopFenceParts(f, true)
		if err := rt.sw.RemoveFence(f.ID); err != nil {
			fail("fence %s (%d): remove: %v", f.Name, f.ID, err)
			continue
		}
		rt.points.remove(f.ID)
		note("fence %s (%d) removed", f.Name, f.ID)
	}
	for _, f := range p.add {
		if err := rt.sw.AddFence(f.FenceConfig); err != nil {
			fail("fence %s (%d): add: %v", f.Name, f.ID, err)
			continue
		}
		rt.points.addFence(f.ID, f.Name)
		for _, a := range f.Listen {
			if err := rt.listenOne(f, a); err != nil {
				fail("fence %s: listen %s: %v", f.Name, a, err)
			}
		}
		rt.dialFence(f)
		if f.Gateway != nil {
			if err := rt.gateways.start(f); err != nil {
				fail("fence %s: gateway: %v", f.Name, err)
			}
		}
		note("fence %s (%d) added", f.Name, f.ID)
	}
	for _, c := range p.change {
		f := c.new
		for _, a := range c.listenRemove {
			rt.closeListener(f.ID, a)
			note("fence %s: stopped listening on %s", f.Name, a)
		}
		for _, a := range c.listenAdd {
			if err := rt.listenOne(f, a); err != nil {
				fail("fence %s: listen %s: %v", f.Name, a, err)
				continue
			}
			note("fence %s: listening on %s", f.Name, a)
		}
		if c.dials {
			if cancel := rt.rl.dials[f.ID]; cancel != nil {
				cancel()
			}
			rt.points.removeDials(f.ID)
			rt.dialFence(f)
			note("fence %s: dials restarted (%d addresses)", f.Name, len(f.Dial))
		}
		if c.gateway || c.gatewayAddRemove {
			if c.old.Gateway != nil && f.Gateway == nil {
				rt.gateways.stop(f.ID)
			}
			if f.Gateway != nil {
				start := rt.gateways.start
				if c.old.Gateway != nil {
					start = rt.gateways.restart
				}
				if err := start(f); err != nil {
					fail("fence %s: gateway: %v", f.Name, err)
					continue
				}
				note("fence %s: gateway (re)started with the new settings", f.Name)
			} else {
				note("fence %s: gateway removed", f.Name)
			}
		}
		for _, fw := range c.forwardRemove {
			if err := rt.forwards.Remove(fw); err != nil {
				fail("fence %s: remove forward %s: %v", f.Name, fw.Listen, err)
				continue
			}
			note("fence %s: forward %s %s → %s removed", f.Name, fw.Proto, fw.Listen, fw.Target)
		}
		for _, fw := range c.forwardAdd {
			if _, err := rt.forwards.Add(fw); err != nil {
				fail("fence %s: add forward %s: %v", f.Name, fw.Listen, err)
				continue
			}
			note("fence %s: forward %s %s → %s added", f.Name, fw.Proto, fw.Listen, fw.Target)
		}
		rt.gateways.setFence(f)
	}
	return changes
}

// listenOne opens one listen address of fence f.
func (rt *instance) listenOne(f Fence, a attach.Addr) error {
	ln, err := rt.listenAddr(f, a) // systemd.go
	if err != nil {
		return err
	}
	rt.addListener(f.Name, ln)
	rt.trackListener(f.ID, ln)
	rt.points.add(f.ID, ln.Addr(), false)
	rt.registerListener(ln.Addr())
	rt.log.Info("listening", "fence", f.Name, "addr", ln.Addr().String())
	return nil
}

// dialFence starts dialing fence f's dial addresses under a context of
// the fence's.
func (rt *instance) dialFence(f Fence) {
	if len(f.Dial) == 0 {
		return
	}
	ctx := rt.dialContext(f.ID)
	onPort := rt.ev.onPort(f, rt.sw)
	for _, a := range f.Dial {
		rt.points.add(f.ID, a, true)
		rt.group.Go(func() error {
			err := attach.Dial(ctx, a, rt.attachOptions(f), onPort)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("fence %s: dial %s: %w", f.Name, a, err)
			}
			return nil
		})
	}
}

// addListener records ln, a listener of the fence named fence.
func (rt *instance) addListener(fence string, ln attach.Listener) {
	rt.lnMu.Lock()
	defer rt.lnMu.Unlock()
	if rt.listenerFence == nil {
		rt.listenerFence = map[attach.Listener]string{}
	}
	rt.listeners = append(rt.listeners, ln)
	rt.listenerFence[ln] = fence
}

// dropListener forgets ln (closed by the caller).
func (rt *instance) dropListener(ln attach.Listener) {
	rt.lnMu.Lock()
	defer rt.lnMu.Unlock()
	rt.listeners = slices.DeleteFunc(rt.listeners, func(x attach.Listener) bool { return x == ln })
	delete(rt.listenerFence, ln)
}

// closeListener closes fence id's listener on a (its ports close).
func (rt *instance) closeListener(id uint32, a attach.Addr) {
	lns := rt.rl.listeners[id]
	for i, ln := range lns {
		if ln.Addr() == a || addrConfigured(ln.Addr(), a) {
			if err := ln.Close(); err != nil {
				rt.log.Warn("close listener", "addr", a.String(), "err", err)
			}
			rt.rl.listeners[id] = slices.Delete(lns, i, i+1)
			rt.dropListener(ln)
			rt.points.removeAddr(id, ln.Addr())
			return
		}
	}
}

// addrConfigured reports whether bound is the listener configured as a
// (a tcp port 0 is bound to a real port).
func addrConfigured(bound, a attach.Addr) bool {
	return bound.Scheme == a.Scheme && strings.HasSuffix(a.Target, ":0") &&
		strings.HasPrefix(bound.Target, strings.TrimSuffix(a.Target, "0"))
}

// stopFenceParts closes fence f's listeners and dials and stops its
// gateway.
func (rt *instance) stopFenceParts(f Fence, gateway bool) {
	for _, ln := range rt.rl.listeners[f.ID] {
		if err := ln.Close(); err != nil {
			rt.log.Warn("close listener", "addr", ln.Addr().String(), "err", err)
		}
		rt.dropListener(ln)
	}
	delete(rt.rl.listeners, f.ID)
	if cancel := rt.rl.dials[f.ID]; cancel != nil {
		cancel()
		delete(rt.rl.dials, f.ID)
	}
	if gateway && f.Gateway != nil {
		rt.gateways.stop(f.ID)
	}
}

// reloadAll is what SIGHUP and POST /v1/reload do: the configuration,
// then the sealed uplink's keys (from the settings just applied).
func (rt *instance) reloadAll() ([]string, error) {
	changes, err := rt.reloadConfig()
	if err != nil && !errors.Is(err, errReloadUnavailable) {
		return nil, err
	}
	if kerr := reloadKeys(rt); kerr == nil {
		changes = append(changes, keysReloaded)
	} else if !errors.Is(kerr, errNoSeal) {
		return changes, fmt.Errorf("reload: %w: %w", errKeysNotReloaded, kerr)
	}
	detail := strings.Join(changes, "; ")
	if detail == "" {
		detail = "nothing changed"
	}
	rt.ev.bus.Publish(events.Event{Kind: events.Reload, Detail: detail})
	return changes, nil
}

// reloadFromAdmin is admin.Config.Reload.
func (rt *instance) reloadFromAdmin(ctx context.Context) (admin.ReloadResponse, error) {
	changes, err := rt.reloadAll()
	if err != nil {
		rt.log.Error("reload refused", "err", err)
		return admin.ReloadResponse{}, err
	}
	return admin.ReloadResponse{Changes: changes}, nil
}

func (c *cli) newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Apply the running switch's configuration again (like SIGHUP)",
		Long: `Ask the running corral to read its configuration again (POST /v1/reload,
the same as SIGHUP) and apply what changed: fences added and removed,
listen and dial addresses, gateway settings, forwards, a sealed uplink's
keys. Unchanged fences are not disturbed. An invalid configuration, or a
change of what cannot change at run time (host, state_dir, uplink, admin,
metrics, log, limits, a fence's name or limits), is refused with a message
naming the key (exit 1), and the running configuration stays.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Reload, func(w io.Writer, r admin.ReloadResponse) {
				if len(r.Changes) == 0 {
					fmt.Fprintln(w, "reloaded: nothing changed")
					return
				}
				fmt.Fprintln(w, "reloaded:")
				for _, s := range r.Changes {
					fmt.Fprintln(w, "  "+s)
				}
			})
		},
	}
}
