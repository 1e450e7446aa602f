package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	cmd := &cobra.Command{
		Use:   "fdb [FENCE]",
		Short: "Show the bridge table of one fence (ID or name) or of all",
		Long: "Show the bridge table of one fence (ID or name) or of all, by fence ID and MAC.\n" +
			"The admin API answers in pages (GET /v1/fdb?fence=&limit=&after=); fdb follows\n" +
			"them, printing each page as it arrives, so a table of any size is listed in\n" +
			"bounded memory on both sides.",
		Args: optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			limit, _ := cmd.Flags().GetInt("limit")
			if limit < 1 || limit > admin.MaxFDBLimit {
				return usageError{fmt.Errorf("--limit %d: want 1 … %d", limit, admin.MaxFDBLimit)}
			}
			fence := ""
			if len(args) == 1 {
				fence = args[0]
			}
			ac, err := c.adminClient(cmd)
			if err != nil {
				return err
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return streamFDBJSON(c.stdout, func(fn func(admin.FDBPage) error) error {
					return ac.FDBPages(cmd.Context(), fence, limit, fn)
				})
			}
			header := true
			return ac.FDBPages(cmd.Context(), fence, limit, func(p admin.FDBPage) error {
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				printFDB(tw, p.Fences, header)
				header = false
				return tw.Flush()
			})
		},
	}
	cmd.Flags().Int("limit", admin.DefaultFDBLimit, fmt.Sprintf("entries per page asked of the admin API (1 … %d); every page is shown", admin.MaxFDBLimit))
	return cmd
}

// streamFDBJSON writes the pages that each calls fn with as one JSON
// array of admin.FenceFDB, one element per fence (the pages of a fence
// joined), as each page arrives: the listing is never held whole.
func streamFDBJSON(w io.Writer, each func(fn func(admin.FDBPage) error) error) error {
	bw := bufio.NewWriter(w)
	var cur uint32
	nf, ne := 0, 0 // fences begun, entries of the current one
	closeFence := func() {
		if ne > 0 {
			bw.WriteString("\n    ]\n  }")
		} else {
			bw.WriteString("]\n  }")
		}
	}
	err := each(func(p admin.FDBPage) error {
		for _, f := range p.Fences {
			if nf == 0 || f.Fence != cur {
				if nf > 0 {
					closeFence()
					bw.WriteByte(',')
				} else {
					bw.WriteByte('[')
				}
				name, _ := json.Marshal(f.Name)
				fmt.Fprintf(bw, "\n  {\n    \"fence\": %d,\n    \"name\": %s,\n    \"entries\": [", f.Fence, name)
				cur, ne = f.Fence, 0
				nf++
			}
			for _, e := range f.Entries {
				b, err := json.MarshalIndent(e, "      ", "  ")
				if err != nil {
					return err
				}
				if ne > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString("\n      ")
				bw.Write(b)
				ne++
			}
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	if nf == 0 {
		bw.WriteString("[]\n")
	} else {
		closeFence()
		bw.WriteString("\n]\n")
	}
	return bw.Flush()
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
		fmt.Fprintf(w, "%s\t%d\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d/%d\t%s\n", p.Name, p.ID, fenceLabel(p.FenceName, p.Fence), p.MACs, p.MaxMACs,
			p.RxFrames, p.RxBytes, p.TxFrames, p.TxBytes, p.Queued, p.QueueLen, dropsOrDash(p.Drops))
	}
}

// printFDB prints the entries of fdbs, the header first when header.
func printFDB(w io.Writer, fdbs []admin.FenceFDB, header bool) {
	if header {
		fmt.Fprintln(w, "FENCE\tMAC\tPORT\tHOST\tAGE")
	}
	for _, f := range fdbs {
		for _, e := range f.Entries {
			where := e.PortName
			if where == "" && e.Port != 0 {
				where = fmt.Sprint(e.Port)
			}
			host := e.Host
			if e.HostName != "" {
				host = e.HostName + " (" + e.Host + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.0fs\n", fenceLabel(f.Name, f.Fence), e.MAC, orDash(where), orDash(host), e.Age)
		}
	}
}

// fenceLabel names a fence in tables: "name (ID)", the ID alone when the
// name is unknown.
func fenceLabel(name string, id uint32) string {
	if name == "" {
		return fmt.Sprint(id)
	}
	return fmt.Sprintf("%s (%d)", name, id)
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
