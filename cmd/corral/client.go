package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
)

// The clients of the admin API: status, fences, ports and fdb here; peers,
// gateways, forward and capture in their files. Each calls one method of
// admin.Client and prints the answer as a table, or as JSON with --json.

// defaultAdminAddr is admin.listen of the embedded default configuration.
const defaultAdminAddr = "unix://$XDG_RUNTIME_DIR/corral/admin.sock"

func (c *cli) newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show a running switch's fences, ports and counters",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Status, func(w io.Writer, st admin.StatusResponse) {
				fmt.Fprintf(w, "corral %s, up %s, %d fences, %d ports\n\n",
					st.Version, time.Since(st.Started).Round(time.Second), len(st.Fences), len(st.Ports))
				printFences(w, st.Fences)
				fmt.Fprintln(w)
				printPorts(w, st.Ports)
				if len(st.Listeners) > 0 {
					fmt.Fprintln(w)
					printListeners(w, st.Listeners)
				}
				if t := st.Trunk; t != nil {
					fmt.Fprintf(w, "\ntrunk: rx %d frames %d bytes, tx %d frames %d bytes, queued %d/%d%s\n",
						t.RxFrames, t.RxBytes, t.TxFrames, t.TxBytes, t.Queued, t.QueueLen, fmtDrops(t.Drops))
				}
			})
		},
	}
}

func (c *cli) newFencesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fences",
		Short: "List a running switch's fences",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Fences, printFences)
		},
	}
}

func (c *cli) newPortsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ports",
		Short: "List a running switch's ports",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Ports, printPorts)
		},
	}
}

func (c *cli) newFDBCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fdb [FENCE]",
		Short: "Show the bridge table of one fence (ID or name) or of all",
		Args:  optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, withFence((*admin.Client).FDB, args), printFDB)
		},
	}
}

// withFence binds the optional FENCE argument of a command to a client
// method that takes a fence ("": all).
func withFence[T any](m func(*admin.Client, context.Context, string) (T, error), args []string) func(*admin.Client, context.Context) (T, error) {
	fence := ""
	if len(args) == 1 {
		fence = args[0]
	}
	return func(ac *admin.Client, ctx context.Context) (T, error) { return m(ac, ctx, fence) }
}

// optionalFence accepts at most one argument, a FENCE.
func optionalFence(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		return usageError{fmt.Errorf("%s takes at most one FENCE, got %d", name, len(args))}
	}
	return nil
}

// callAdmin calls method on the admin socket and prints its answer: as
// JSON with --json, else as a table by human.
func callAdmin[T any](c *cli, cmd *cobra.Command, method func(*admin.Client, context.Context) (T, error), human func(io.Writer, T)) error {
	ac, err := c.adminClient(cmd)
	if err != nil {
		return err
	}
	v, err := method(ac, cmd.Context())
	if err != nil {
		return err
	}
	return c.print(cmd, v, func(w io.Writer) { human(w, v) })
}

// print writes an answer: with --json as the API writes it, else through
// human into a table writer.
func (c *cli) print(cmd *cobra.Command, v any, human func(w io.Writer)) error {
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		return admin.EncodeJSON(c.stdout, v)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// adminClient resolves the admin address: --admin, else admin.listen of
// --config, else the default address.
func (c *cli) adminClient(cmd *cobra.Command) (*admin.Client, error) {
	s, _ := cmd.Flags().GetString("admin")
	var a attach.Addr
	switch {
	case s != "":
		if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
			s = "unix://" + s // a plain path
		}
		var err error
		if a, err = parseAttachAddr("--admin", s); err != nil {
			return nil, usageError{err}
		}
	case os.Getenv("CORRAL_CONFIG") != "" || cmd.Flags().Lookup("config") != nil && cmd.Flags().Lookup("config").Value.String() != "":
		cfg, err := loadConfig(cmd.Flags())
		if err != nil {
			return nil, err
		}
		if cfg.Admin.Scheme == "" {
			return nil, usageError{fmt.Errorf("the configuration has no admin.listen; give --admin")}
		}
		a = cfg.Admin
	default:
		var err error
		if a, err = parseAttachAddr("--admin", defaultAdminAddr); err != nil {
			return nil, err
		}
	}
	if a.Scheme != attach.Unix {
		return nil, usageError{fmt.Errorf("--admin %s: the admin API listens on unix:// only", a)}
	}
	return admin.NewClient(a.Target), nil
}

func printFences(w io.Writer, fs []admin.FenceStatus) {
	fmt.Fprintln(w, "FENCE\tID\tPORTS\tPORTS REFUSED\tMACS\tFRAMES IN\tFRAMES OUT\tBYTES IN\tBYTES OUT\tFLOODS\tDROPS")
	for _, f := range fs {
		fmt.Fprintf(w, "%s\t%d\t%d/%d\t%d\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n", f.Name, f.ID, f.Ports, f.MaxPorts, f.PortsRefused,
			f.MACs, f.MaxMACs, f.FramesIn, f.FramesOut, f.BytesIn, f.BytesOut, f.Floods, dropsOrDash(f.Drops))
	}
}

// printListeners prints the listeners' ports and limit counters.
func printListeners(w io.Writer, ls []admin.ListenerStatus) {
	fmt.Fprintln(w, "LISTENER\tFENCE\tPORTS\tREFUSED\tFRAME TIMEOUTS\tEXPIRED")
	for _, l := range ls {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\n", l.Addr, l.Fence, l.Ports, l.Refused, l.FrameTimeouts, l.Expired)
	}
}

func printPorts(w io.Writer, ps []admin.PortStatus) {
	fmt.Fprintln(w, "PORT\tID\tFENCE\tMACS\tRX FRAMES\tRX BYTES\tTX FRAMES\tTX BYTES\tQUEUED\tDROPS")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d/%d\t%d\t%d\t%d\t%d\t%d/%d\t%s\n", p.Name, p.ID, p.Fence, p.MACs, p.MaxMACs,
			p.RxFrames, p.RxBytes, p.TxFrames, p.TxBytes, p.Queued, p.QueueLen, dropsOrDash(p.Drops))
	}
}

func printFDB(w io.Writer, fdbs []admin.FenceFDB) {
	fmt.Fprintln(w, "FENCE\tMAC\tPORT\tHOST\tAGE")
	for _, f := range fdbs {
		for _, e := range f.Entries {
			where := e.PortName
			if where == "" && e.Port != 0 {
				where = fmt.Sprint(e.Port)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.0fs\n", f.Name, e.MAC, orDash(where), orDash(e.Host), e.Age)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dropsOrDash(d map[string]uint64) string {
	return orDash(strings.TrimPrefix(fmtDrops(d), ", drops "))
}

// fmtDrops formats drop counters as ", drops reason=n …" ("" when none).
func fmtDrops(d map[string]uint64) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(", drops ")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, d[k])
	}
	return b.String()
}
