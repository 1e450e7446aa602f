package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/forward"
	"github.com/corralnet/corral/gossip"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

func (c *cli) newRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the switch (the default command)",
		Long: `Run the switch on the embedded default configuration, or on --config FILE
merged over it. CORRAL_* environment variables (CORRAL_LOG_LEVEL for
log.level) and flags override the file. A configuration error exits with
status 2 before any socket exists; another corral running with the same
state (the same admin socket) makes it exit with status 1, also before
any socket. Once everything is bound, it logs for every address the
lines that attach a VM (QEMU, vfkit, krunkit, Lima, UML; corral
attach-lines prints them again), and prints them for people when stderr
is a terminal. SIGINT and SIGTERM close every port, remove the socket
files and exit 0. SIGHUP (like corral reload) reads the configuration
again and applies what changed — fences added and removed, listen and
dial addresses, gateway settings, forwards — without touching unchanged
fences, then re-reads the key files of a sealed uplink
(uplink.seal.secret_file, previous_secret_file, fences[].key_file) and
swaps the keys without losing a frame; an invalid configuration, or a
change of what cannot change at run time, is logged and the running one
stays. Under systemd socket activation (LISTEN_FDS), the inherited
sockets serve the configured addresses they are bound to.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd)
		},
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command or argument %q for %q", args[0], cmd.CommandPath())}
	}
	return nil
}

func (c *cli) run(cmd *cobra.Command) error {
	load := func() (*fileConfig, *Config, error) { return loadConfigRaw(cmd.Flags()) }
	raw, cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills at once.
	go func() { <-ctx.Done(); stop() }()
	inherited, err := takeInheritedSockets()
	if err != nil {
		return err
	}
	return runSwitchWith(ctx, cfg, log, runOptions{attachOut: terminalWriter(c.stderr), load: load, raw: raw, inherited: inherited})
}

// runOptions are what `corral run` adds to runSwitch.
type runOptions struct {
	// attachOut, when not nil, gets the attach lines for people once
	// everything is bound (stderr when it is a terminal).
	attachOut io.Writer
	// load reads the configuration again, and raw is the one running
	// (reload.go); nil: no reload.
	load func() (*fileConfig, *Config, error)
	raw  *fileConfig
	// inherited are the sockets systemd passed (systemd.go).
	inherited *inheritedSockets
}

// newLogger builds the process's logger; every package gets it (tagged)
// through its constructor.
func newLogger(w io.Writer, lc LogConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lc.Level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// instance is a running switch with everything attached to it: the steps
// of runSwitch build it up, shutdown takes it down.
type instance struct {
	cfg *Config
	log *slog.Logger
	sw  *vswitch.Switch
	// gateways of the fences (never nil); uplink is nil without an uplink.
	gateways *gatewaySet
	// forwards are the port forwards into the gateways' fences: the
	// process's, since forwards of several fences share listeners.
	forwards *forward.Forwarder
	points   *attachPoints // the fences' addresses (attachlines.go)
	// self registers every IP socket corral binds, and the VMs' addresses
	// it dials, so that no gateway NATs a guest to them (self.go).
	self   *selfSockets
	uplink *uplink.Uplink
	gossip *gossip.Node // nil without uplink.gossip (gossip.go)
	// listeners are the fences' listeners, changed by listen and reload
	// (under rl.mu and lnMu) and read by status and metrics (under lnMu);
	// listenerFence names the fence of each.
	lnMu          sync.Mutex
	listeners     []attach.Listener
	listenerFence map[attach.Listener]string
	admin         *admin.Server // nil until it serves, and without an admin socket
	group         *errgroup.Group
	ctx           context.Context // cancelled at shutdown
	cancel        context.CancelFunc
	// closers run in reverse order at shutdown, after the listeners and
	// the admin server and before the switch closes.
	closers      []func() error
	shutdownOnce sync.Once
	// ev publishes the instance's events (events.go).
	ev *eventHooks
	// rl is what reload needs (reload.go).
	rl reloadState
	// inherited are the sockets of socket activation (systemd.go); nil:
	// none.
	inherited *inheritedSockets
}

// onClose registers f to run at shutdown.
func (rt *instance) onClose(f func() error) { rt.closers = append(rt.closers, f) }

// runSwitch runs the switch described by cfg until ctx is done: a
// sequence of steps, each of which may fail and stop corral (every part
// already running is then shut down).
func runSwitch(ctx context.Context, cfg *Config, log *slog.Logger) error {
	return runSwitchWith(ctx, cfg, log, runOptions{})
}

// runSwitchWith is runSwitch with the options of `corral run`.
func runSwitchWith(ctx context.Context, cfg *Config, log *slog.Logger, opts runOptions) (err error) {
	if err := prepareDirs(); err != nil {
		return err
	}
	// The instance's state is ours until the end (after shutdown, which
	// saves the leases), or corral stops here, before any socket.
	release, err := lockInstance(cfg, log)
	if err != nil {
		return err
	}
	defer release()
	rt, err := newSwitch(ctx, cfg, log)
	if err != nil {
		return err
	}
	rt.rl.load, rt.rl.raw = opts.load, opts.raw
	rt.inherited = opts.inherited
	defer func() {
		if err != nil {
			rt.shutdown()
			_ = rt.group.Wait()
		}
	}()
	for _, step := range []func() error{
		rt.registerConfiguredSelf,
		rt.addFences,
		rt.listen,
		rt.dial,
		rt.startGateways,
		rt.attachUplink,
		rt.startEvents,
		rt.watchReload,
		rt.serveMetrics,
		rt.serveAdmin, // last: once the admin socket answers, everything runs
		rt.checkInherited,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	log.Debug("gateways refuse NAT to corral's own sockets", "addrs", rt.self.entries())
	rt.group.Go(func() error { reclaimer(rt.ctx, rt.sw.NumPorts, log.With("component", "memory")); return nil })
	rt.announceAttach(opts.attachOut)
	log.Info("corral ready", "fences", len(cfg.Fences), "version", version())
	return rt.wait(ctx)
}

// prepareDirs makes sure the runtime directory is private when it is the
// fallback in os.TempDir (shared with other users).
func prepareDirs() error {
	if d := tempRuntimeDir(); d != "" {
		return ensurePrivateDir(d)
	}
	return nil
}

// newSwitch creates the switch and the instance around it.
func newSwitch(ctx context.Context, cfg *Config, log *slog.Logger) (*instance, error) {
	swc := cfg.Switch
	swc.Logger = log.With("component", "switch")
	ev := newEventHooks(cfg.Fences)
	swc.OnMACMove = ev.macMove
	sw, err := vswitch.New(swc)
	if err != nil {
		return nil, fmt.Errorf("switch: %w", err)
	}
	gctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(gctx)
	self := newSelfSockets()
	fwd := forward.New(forward.Config{Logger: log.With("component", "forward"), Reserve: self.add})
	rt := &instance{cfg: cfg, log: log, sw: sw, group: g, ctx: gctx, cancel: cancel, self: self, ev: ev,
		gateways: newGatewaySet(sw, fwd, log, cfg.Fences, self), forwards: fwd, points: newAttachPoints(cfg.Fences)}
	rt.gateways.onLease = ev.lease
	rt.gateways.onAttach = ev.portEvents
	rt.onClose(rt.gateways.close)
	rt.onClose(fwd.Close) // closers run in reverse: the host sockets close before the gateways
	return rt, nil
}

// addFences adds every fence to the switch.
func (rt *instance) addFences() error {
	for _, f := range rt.cfg.Fences {
		if err := rt.sw.AddFence(f.FenceConfig); err != nil {
			return fmt.Errorf("fence %s: %w", f.Name, err)
		}
	}
	return nil
}

// attachOptions are the attach options of fence f.
func (rt *instance) attachOptions(f Fence) attach.Options {
	return attach.Options{
		MaxPorts:     rt.cfg.Ports.PerListener,
		FrameTimeout: rt.cfg.Ports.FrameTimeout,
		PeerIdle:     rt.cfg.Ports.DatagramIdle,
		Logger:       rt.log.With("fence", f.Name, "component", "attach"),
	}
}

// listen opens every fence's listen addresses.
func (rt *instance) listen() error {
	for _, f := range rt.cfg.Fences {
		for _, a := range f.Listen {
			if err := rt.listenOne(f, a); err != nil {
				return fmt.Errorf("fence %s: listen %s: %w", f.Name, a, err)
			}
		}
	}
	return nil
}

// registerConfiguredSelf registers, before anything binds, the IP
// addresses of the configuration that corral binds with a fixed port or
// dials (self.go): fence listeners and dial targets of the tcp and udp
// schemes, port forwards, the uplink, metrics.
func (rt *instance) registerConfiguredSelf() error {
	reg := func(proto, hostport string) {
		if _, port, err := net.SplitHostPort(hostport); err != nil || port == "0" {
			return
		}
		if _, err := rt.self.addString(rt.ctx, proto, hostport); err != nil {
			// Only a host name that does not resolve: nothing can be
			// dialed there either.
			rt.log.Warn("gateways: cannot resolve an address to keep guests from", "addr", hostport, "err", err)
		}
	}
	for _, f := range rt.cfg.Fences {
		for _, a := range append(slices.Clone(f.Listen), f.Dial...) {
			if p := ipProto(a.Scheme); p != "" {
				reg(p, a.Target)
			}
		}
		// Forwards register themselves (forward.Config.Reserve, before
		// they bind); a fixed SOCKS address is registered here, before
		// the gateway binds it.
		if f.Gateway != nil {
			rt.self.add("tcp", f.Gateway.Socks)
		}
	}
	if rt.cfg.HasUplink {
		rt.self.add("udp", rt.cfg.Uplink.UDPListen)
	}
	if rt.cfg.Metrics != "" {
		reg("tcp", rt.cfg.Metrics)
	}
	return nil
}

// ipProto is the IP protocol of an attachment scheme, "" for those
// without an IP address (unix-family sockets, vsock, stdio): NAT cannot
// reach them.
func ipProto(s attach.Scheme) string {
	switch s {
	case attach.TCP:
		return "tcp"
	case attach.UDP:
		return "udp"
	}
	return ""
}

// registerListener registers a bound listener's address (self.go).
func (rt *instance) registerListener(a attach.Addr) {
	if p := ipProto(a.Scheme); p != "" {
		if ap, err := netip.ParseAddrPort(a.Target); err == nil {
			rt.self.add(p, ap)
		}
	}
}

// dial starts dialing every fence's dial addresses (re-dialed until
// shutdown).
func (rt *instance) dial() error {
	for _, f := range rt.cfg.Fences {
		rt.dialFence(f)
	}
	return nil
}

// startGateways starts the gateway of every fence that has one.
func (rt *instance) startGateways() error {
	for _, f := range rt.cfg.Fences {
		if f.Gateway != nil {
			if err := startGateway(rt, f); err != nil {
				return fmt.Errorf("fence %s: gateway: %w", f.Name, err)
			}
		}
	}
	return nil
}

// attachUplink starts the uplink, when configured, as the switch's trunk.
func (rt *instance) attachUplink() error {
	if !rt.cfg.HasUplink {
		return nil
	}
	if err := startUplink(rt); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	return nil
}

// serveAdmin serves the admin API on its socket, when configured.
func (rt *instance) serveAdmin() error {
	if rt.cfg.Admin.Scheme == "" {
		return nil
	}
	ac := admin.Config{
		Switch:   rt.sw,
		Gateways: newAdminGateways(rt.gateways, rt.forwards, rt.cfg.Fences),
		Version:  version(),
		Logger:   rt.log.With("component", "admin"),

		Attachments: rt.points,
		Listeners:   rt.listenerStatus,
		Events:      rt.ev.bus,
		Reload:      rt.reloadFromAdmin,
	}
	if rt.uplink != nil {
		ac.Uplink = rt.uplink
	}
	if rt.gossip != nil {
		ac.Gossip = gossipAdmin{rt.gossip}
	}
	srv, err := admin.New(ac)
	if err != nil {
		return err
	}
	ln, err := rt.adminListener() // systemd.go
	if err != nil {
		return err
	}
	rt.admin = srv
	rt.group.Go(func() error { return srv.Serve(ln) })
	rt.log.Info("admin listening", "addr", rt.cfg.Admin.String())
	return nil
}

// wait runs until ctx is done or a part fails on its own, then shuts
// down. A failure is returned unless corral was asked to stop.
func (rt *instance) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		rt.log.Info("shutting down", "reason", context.Cause(ctx))
	case <-rt.ctx.Done():
	}
	rt.shutdown()
	werr := rt.group.Wait()
	if ctx.Err() == nil && werr != nil {
		return werr // something failed on its own
	}
	if werr != nil && !errors.Is(werr, context.Canceled) {
		rt.log.Warn("shutdown", "err", werr)
	}
	rt.log.Info("corral stopped")
	return nil
}

// shutdown stops everything, in reverse order of the steps: the
// listeners, the admin server (its captures end at once), the closers
// (metrics, uplink, gateways), the switch. Only the first call does it.
func (rt *instance) shutdown() {
	rt.shutdownOnce.Do(func() {
		rt.cancel()
		rt.rl.mu.Lock() // a reload finishes first
		defer rt.rl.mu.Unlock()
		for _, ln := range rt.listeners {
			if err := ln.Close(); err != nil {
				rt.log.Warn("close listener", "addr", ln.Addr().String(), "err", err)
			}
		}
		if rt.admin != nil {
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := rt.admin.Shutdown(sctx); err != nil {
				rt.log.Warn("admin shutdown", "err", err)
			}
			scancel()
		}
		for i := len(rt.closers) - 1; i >= 0; i-- {
			if err := rt.closers[i](); err != nil {
				rt.log.Warn("shutdown", "err", err)
			}
		}
		if err := rt.sw.Close(); err != nil {
			rt.log.Warn("close switch", "err", err)
		}
	})
}
