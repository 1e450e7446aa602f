package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/corralnet/corral/attach"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/admin"
	"github.com/corralnet/corral/uplink"
)

func (c *cli) newRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the switch (the default command)",
		Long: `Run the switch on the embedded default configuration, or on --config FILE
merged over it. CORRAL_* environment variables (CORRAL_LOG_LEVEL for
log.level) and flags override the file. A configuration error exits with
status 2 before any socket exists. SIGINT and SIGTERM close every port,
remove the socket files and exit 0.`,
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
	cfg, err := loadConfig(cmd.Flags())
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills at once.
	go func() { <-ctx.Done(); stop() }()
	return runSwitch(ctx, cfg, log)
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

// instance is a running switch with everything attached to it. Hooks of
// other files (runHooks) receive it before corral is ready.
type instance struct {
	cfg   *Config
	log   *slog.Logger
	sw    *vswitch.Switch
	admin *admin.Server // nil without an admin socket
	// gateways of the fences (never nil); uplink is nil without an uplink.
	gateways *gatewaySet
	uplink   *uplink.Uplink
	group    *errgroup.Group
	ctx      context.Context // cancelled at shutdown
	// closers run in reverse order at shutdown, after the listeners and
	// before the switch closes.
	closers []func() error
}

// runHooks are called in order, after the switch, listeners and gateways
// exist and before the admin socket serves (so they may add admin routes).
// An error stops corral.
var runHooks []func(rt *instance) error

// onClose registers f to run at shutdown.
func (rt *instance) onClose(f func() error) { rt.closers = append(rt.closers, f) }

// runSwitch runs the switch described by cfg until ctx is done.
func runSwitch(ctx context.Context, cfg *Config, log *slog.Logger) (err error) {
	if d := tempRuntimeDir(); d != "" {
		if err := ensurePrivateDir(d); err != nil {
			return err
		}
	}
	swc := cfg.Switch
	swc.Logger = log.With("component", "switch")
	sw, err := vswitch.New(swc)
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(gctx)
	rt := &instance{cfg: cfg, log: log, sw: sw, group: g, ctx: gctx, gateways: newGatewaySet(sw, log, cfg.Fences)}
	rt.onClose(rt.gateways.close)

	var listeners []attach.Listener
	shutdown := func() {
		cancel()
		for _, ln := range listeners {
			if err := ln.Close(); err != nil {
				log.Warn("close listener", "addr", ln.Addr().String(), "err", err)
			}
		}
		if rt.admin != nil {
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := rt.admin.Shutdown(sctx); err != nil {
				log.Warn("admin shutdown", "err", err)
			}
			scancel()
		}
		for i := len(rt.closers) - 1; i >= 0; i-- {
			if err := rt.closers[i](); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}
		if err := sw.Close(); err != nil {
			log.Warn("close switch", "err", err)
		}
	}
	defer func() {
		if err != nil {
			shutdown()
			_ = g.Wait()
		}
	}()

	for _, f := range cfg.Fences {
		if err := sw.AddFence(f.FenceConfig); err != nil {
			return fmt.Errorf("fence %s: %w", f.Name, err)
		}
	}
	for _, f := range cfg.Fences {
		flog := log.With("fence", f.Name)
		opts := attach.Options{Logger: flog.With("component", "attach")}
		onPort := portAttacher(sw, f)
		for _, a := range f.Listen {
			ln, err := attach.Listen(gctx, a, opts, onPort)
			if err != nil {
				return fmt.Errorf("fence %s: listen %s: %w", f.Name, a, err)
			}
			listeners = append(listeners, ln)
			flog.Info("listening", "addr", ln.Addr().String())
		}
		for _, a := range f.Dial {
			g.Go(func() error {
				err := attach.Dial(gctx, a, opts, onPort)
				if err != nil && gctx.Err() == nil {
					return fmt.Errorf("fence %s: dial %s: %w", f.Name, a, err)
				}
				return nil
			})
		}
		if f.Gateway != nil {
			if err := startGateway(rt, f); err != nil {
				return fmt.Errorf("fence %s: gateway: %w", f.Name, err)
			}
		}
	}

	if cfg.HasUplink {
		if err := startUplink(rt); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}

	if cfg.Admin.Scheme != "" {
		srv, err := admin.New(admin.Config{Switch: sw, Version: version(), Logger: log.With("component", "admin")})
		if err != nil {
			return err
		}
		rt.admin = srv
	}
	if cfg.Metrics != "" {
		if err := startMetrics(rt); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	for _, h := range runHooks {
		if err := h(rt); err != nil {
			return err
		}
	}
	if rt.admin != nil {
		ln, err := admin.Listen(cfg.Admin.Target, 0)
		if err != nil {
			rt.admin = nil
			return err
		}
		srv := rt.admin
		g.Go(func() error { return srv.Serve(ln) })
		log.Info("admin listening", "addr", cfg.Admin.String())
	}

	log.Info("corral ready", "fences", len(cfg.Fences), "version", version())
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx))
	case <-gctx.Done():
	}
	shutdown()
	werr := g.Wait()
	if ctx.Err() == nil && werr != nil {
		return werr // something failed on its own
	}
	if werr != nil && !errors.Is(werr, context.Canceled) {
		log.Warn("shutdown", "err", werr)
	}
	log.Info("corral stopped")
	return nil
}

// portAttacher returns the OnPort of fence f: it attaches every new port
// to the switch in f.
func portAttacher(sw *vswitch.Switch, f Fence) attach.OnPort {
	return func(p vswitch.Port, name string) (<-chan struct{}, error) {
		h, err := sw.Attach(p, vswitch.PortConfig{Name: name, Fence: f.ID, MaxMACs: f.PortMaxMACs})
		if err != nil {
			return nil, err
		}
		return h.Done(), nil
	}
}
