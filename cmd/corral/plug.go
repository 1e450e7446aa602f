package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/attach"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/tap"
)

func (c *cli) newPlugCmd() *cobra.Command {
	var (
		tapName string
		netns   string
		mtu     int
		stdio   bool
		offload bool
		once    bool
	)
	cmd := &cobra.Command{
		Use:   "plug ADDRESS (--tap NAME [--netns NS] [--mtu N] [--offload=false] | --stdio) [--once]",
		Short: "Connect a TAP device or stdio to a switch address",
		Long: `Connect a local TAP device (created inside network namespace NS when
--netns is given) or stdin/stdout (4-byte big-endian length framing, for
ssh cables) to a switch address such as unix:///run/user/1000/corral/default.sock
or tcp://127.0.0.1:7000, until the local side ends or a signal arrives. When
the switch goes away (restarted, stopped) plug logs it, keeps the TAP, and
dials again with backoff (100 ms doubling to 5 s), dropping frames
meanwhile; --once exits with status 1 instead. A switch unreachable at
start is an error.`,
		Example: `  corral plug unix://$XDG_RUNTIME_DIR/corral/default.sock --tap tap0 --netns lab1
  ssh host1 corral plug unix:///run/user/1000/corral/default.sock --stdio`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("plug takes exactly one ADDRESS, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if (tapName == "") == !stdio {
				return usageError{errors.New("plug: give exactly one of --tap NAME and --stdio")}
			}
			if stdio && (netns != "" || mtu != 0 || cmd.Flags().Changed("offload")) {
				return usageError{errors.New("plug: --netns, --mtu and --offload go with --tap, not --stdio")}
			}
			if mtu < 0 || mtu > vswitch.MaxFrameSize-14 {
				return usageError{fmt.Errorf("plug: --mtu %d out of range", mtu)}
			}
			tc := tap.Config{Name: tapName, NetNS: netns, MTU: mtu, Offload: offload && !stdio}
			if !stdio {
				if err := tc.Validate(); err != nil {
					return usageError{fmt.Errorf("plug: %w", err)}
				}
			}
			addr, err := parseAttachAddr("ADDRESS", os.ExpandEnv(args[0]))
			if err != nil {
				return usageError{err}
			}
			if addr.Scheme == attach.Stdio {
				return usageError{errors.New("plug: ADDRESS must be a switch address, not stdio")}
			}
			log := newLogger(c.stderr, flagLogConfig(cmd))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return c.plug(ctx, log, addr, tc, stdio, once)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tapName, "tap", "", "TAP device to create and connect")
	f.StringVar(&netns, "netns", "", "network namespace to create the TAP device in (ip netns name)")
	f.IntVar(&mtu, "mtu", 0, "MTU of the TAP device (0: the kernel's default)")
	f.BoolVar(&offload, "offload", true, "use TAP offloads (IFF_VNET_HDR, TSO/checksum): TCP super-frames are cut to MTU-sized frames on the way in and coalesced on the way out; --offload=false reads and writes one frame per syscall")
	f.BoolVar(&stdio, "stdio", false, "connect stdin/stdout (4-byte length framing) instead of a TAP")
	f.BoolVar(&once, "once", false, "exit (status 1) when the switch goes away instead of re-dialing it with backoff")
	return cmd
}

func (c *cli) plug(ctx context.Context, log *slog.Logger, addr attach.Addr, tc tap.Config, stdio, once bool) error {
	opts := attach.Options{Logger: log.With("component", "attach")}
	// Dial first: an unreachable switch must not leave a TAP behind.
	remote, err := attach.DialOnce(ctx, addr, opts)
	if err != nil {
		return fmt.Errorf("plug: cannot reach %s: %w", addr, err)
	}
	var local vswitch.Port
	if stdio && c.stdin == os.Stdin && c.stdout == os.Stdout {
		if local, err = attach.NewStdioPort(opts); err != nil {
			remote.Close()
			return fmt.Errorf("plug: %w", err)
		}
	} else if stdio {
		local = attach.NewStreamPort(stdioConn{r: c.stdin, w: c.stdout}, opts)
	} else {
		dev, err := tap.Open(tc)
		if err != nil {
			remote.Close()
			return fmt.Errorf("plug: tap %s: %w", tc.Name, err)
		}
		local = dev
	}
	log.Info("plugged", "addr", addr.String(), "local", localName(tc.Name, tc.NetNS, stdio), "offload", tc.Offload)
	return runPlug(ctx, log, addr, opts, local, remote, once)
}

// runPlug moves frames between local (a TAP or stdio, kept for the whole
// run) and the switch at addr (remote, already dialed). When the switch
// goes away it logs and dials again with backoff like a dial: port
// (attach.MinBackoff doubling to attach.MaxBackoff; back to the minimum
// after a connection that lived more than a second), dropping what local
// sends meanwhile; with once it returns an error instead. It returns nil
// when ctx is done or local ends cleanly (stdin closed), and closes local
// and the current remote.
func runPlug(ctx context.Context, log *slog.Logger, addr attach.Addr, opts attach.Options, local, remote vswitch.Port, once bool) error {
	var cur atomic.Pointer[plugConn]
	localErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // local → the current remote, for the whole run
		defer wg.Done()
		err := plugPump(local, func(out [][]byte) error {
			if pc := cur.Load(); pc != nil {
				if _, err := pc.remote.Write(out, vswitch.Headroom); err != nil {
					pc.kill(fmt.Errorf("write: %w", err))
				}
			}
			return nil
		})
		select {
		case localErr <- err:
		default: // the other direction reported local's failure first
		}
	}()
	finish := func(pc *plugConn, err error) error {
		local.Close()
		if pc != nil {
			pc.remote.Close()
			pc.wg.Wait()
		}
		wg.Wait()
		if ctx.Err() != nil {
			log.Info("unplugged", "reason", context.Cause(ctx))
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("plug: %w", err)
		}
		return nil
	}
	backoff := attach.MinBackoff
	for n := 1; ; n++ {
		pc := &plugConn{remote: remote, dead: make(chan struct{})}
		start := time.Now()
		pc.wg.Add(1)
		go func() { // the switch → local
			defer pc.wg.Done()
			err := plugPump(remote, func(out [][]byte) error {
				_, err := local.Write(out, vswitch.Headroom)
				if err != nil {
					select {
					case localErr <- fmt.Errorf("local write: %w", err):
					default:
					}
				}
				return err
			})
			pc.kill(err)
		}()
		cur.Store(pc)
		select {
		case <-ctx.Done():
			return finish(pc, nil)
		case err := <-localErr:
			return finish(pc, err)
		case <-pc.dead:
		}
		cur.Store(nil)
		remote.Close()
		pc.wg.Wait()
		lived := time.Since(start)
		if once {
			finish(nil, nil)
			return fmt.Errorf("plug: the switch at %s went away after %v (%v); --once: not re-dialing", addr, lived.Round(time.Millisecond), pc.err)
		}
		log.Warn("switch went away, re-dialing", "addr", addr.String(), "err", pc.err, "lived", lived.Round(time.Millisecond))
		if lived > time.Second {
			backoff = attach.MinBackoff
		}
		for failing := false; ; {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return finish(nil, nil)
			case err := <-localErr:
				t.Stop()
				return finish(nil, err)
			case <-t.C:
			}
			backoff = min(backoff*2, attach.MaxBackoff)
			var err error
			if remote, err = attach.DialOnce(ctx, addr, opts); err == nil {
				break
			}
			if !failing {
				log.Info("dial failed, retrying", "addr", addr.String(), "err", err, "backoff", backoff)
				failing = true
			} else {
				log.Debug("dial failed, retrying", "addr", addr.String(), "err", err, "backoff", backoff)
			}
		}
		log.Info("plugged again", "addr", addr.String(), "connection", n+1)
	}
}

// plugConn is one connection of runPlug to the switch.
type plugConn struct {
	remote vswitch.Port
	wg     sync.WaitGroup // its reader
	once   sync.Once
	dead   chan struct{} // closed when it fails
	err    error         // why, set before dead closes
}

func (pc *plugConn) kill(err error) {
	pc.once.Do(func() { pc.err = err; close(pc.dead) })
}

// plugPump pumps src into write (attach.Pump) in batches of at most 64
// frames.
func plugPump(src vswitch.Port, write func(out [][]byte) error) error {
	return attach.Pump(src, max(min(src.BatchSize(), 64), 1), write)
}

func localName(tapName, netns string, stdio bool) string {
	switch {
	case stdio:
		return "stdio"
	case netns != "":
		return "tap " + tapName + " in netns " + netns
	}
	return "tap " + tapName
}

// flagLogConfig reads --log-level/--log-format (or CORRAL_LOG_LEVEL and
// CORRAL_LOG_FORMAT) for commands that do not load a configuration file.
// An invalid value falls back to the default.
func flagLogConfig(cmd *cobra.Command) LogConfig {
	lc := LogConfig{Format: "text"}
	get := func(flag, env string) string {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			return f.Value.String()
		}
		return os.Getenv(env)
	}
	if l := get("log-level", "CORRAL_LOG_LEVEL"); l != "" {
		_ = lc.Level.UnmarshalText([]byte(l))
	}
	if strings.EqualFold(get("log-format", "CORRAL_LOG_FORMAT"), "json") {
		lc.Format = "json"
	}
	return lc
}

// stdioConn is stdin and stdout as one io.ReadWriteCloser.
type stdioConn struct {
	r io.Reader
	w io.Writer
}

func (s stdioConn) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s stdioConn) Write(p []byte) (int, error) { return s.w.Write(p) }

// Close closes stdin and stdout when they are closable (os.Stdin/Stdout),
// which ends a Read blocked on stdin.
func (s stdioConn) Close() error {
	var errs []error
	if c, ok := s.r.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	if c, ok := s.w.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
