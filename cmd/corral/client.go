package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/attach"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/switch/admin"
)

// defaultAdminAddr is admin.listen of the embedded default configuration.
const defaultAdminAddr = "unix://$XDG_RUNTIME_DIR/corral/admin.sock"

func (c *cli) newClientCmds() []*cobra.Command {
	return []*cobra.Command{
		{
			Use:   "status",
			Short: "Show a running switch's fences, ports and counters",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				var st admin.StatusResponse
				return c.query(cmd, "/v1/status", &st, func(w io.Writer) {
					fmt.Fprintf(w, "corral %s, up %s, %d fences, %d ports\n\n",
						st.Version, time.Since(st.Started).Round(time.Second), len(st.Fences), len(st.Ports))
					printFences(w, st.Fences)
					fmt.Fprintln(w)
					printPorts(w, st.Ports)
					if t := st.Trunk; t != nil {
						fmt.Fprintf(w, "\ntrunk: rx %d frames %d bytes, tx %d frames %d bytes, queued %d/%d%s\n",
							t.RxFrames, t.RxBytes, t.TxFrames, t.TxBytes, t.Queued, t.QueueLen, fmtDrops(t.Drops))
					}
				})
			},
		},
		{
			Use:   "fences",
			Short: "List a running switch's fences",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				var fs []vswitch.FenceStatus
				return c.query(cmd, "/v1/fences", &fs, func(w io.Writer) { printFences(w, fs) })
			},
		},
		{
			Use:   "ports",
			Short: "List a running switch's ports",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				var ps []vswitch.PortStatus
				return c.query(cmd, "/v1/ports", &ps, func(w io.Writer) { printPorts(w, ps) })
			},
		},
		{
			Use:   "fdb [FENCE]",
			Short: "Show the bridge table of one fence (ID or name) or of all",
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) > 1 {
					return usageError{fmt.Errorf("fdb takes at most one FENCE, got %d", len(args))}
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				path := "/v1/fdb"
				if len(args) == 1 {
					path += "?fence=" + url.QueryEscape(args[0])
				}
				var fdbs []admin.FenceFDB
				return c.query(cmd, path, &fdbs, func(w io.Writer) { printFDB(w, fdbs) })
			},
		},
	}
}

// query GETs path from the admin socket; with --json it copies the body to
// stdout, otherwise it decodes it into v and calls human.
func (c *cli) query(cmd *cobra.Command, path string, v any, human func(w io.Writer)) error {
	ac, err := c.adminClient(cmd)
	if err != nil {
		return err
	}
	body, err := ac.get(cmd.Context(), path)
	if err != nil {
		return err
	}
	return c.print(cmd, path, body, v, human)
}

// send sends body to path with method; with --json it copies the answer
// to stdout, otherwise it decodes it into v and calls human.
func (c *cli) send(cmd *cobra.Command, method, path string, body, v any, human func(w io.Writer)) error {
	ac, err := c.adminClient(cmd)
	if err != nil {
		return err
	}
	out, err := ac.do(cmd.Context(), method, path, body)
	if err != nil {
		return err
	}
	return c.print(cmd, path, out, v, human)
}

// print writes an answer: raw with --json, else decoded into v by human.
func (c *cli) print(cmd *cobra.Command, path string, body []byte, v any, human func(w io.Writer)) error {
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		_, err := c.stdout.Write(body)
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("admin %s: %w", path, err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// adminClient talks to a running corral's admin socket.
type adminClient struct {
	addr attach.Addr
	hc   *http.Client
}

// adminClient resolves the admin address: --admin, else admin.listen of
// --config, else the default address.
func (c *cli) adminClient(cmd *cobra.Command) (*adminClient, error) {
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
	return &adminClient{addr: a, hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.Target)
		}},
	}}, nil
}

// get returns the body of a 200 answer; other answers are errors carrying
// the server's message.
func (ac *adminClient) get(ctx context.Context, path string) ([]byte, error) {
	return ac.do(ctx, http.MethodGet, path, nil)
}

// do sends a request with v (nil: none) as its JSON body and returns the
// body of a 2xx answer; other answers are errors carrying the server's
// message.
func (ac *adminClient) do(ctx context.Context, method, path string, v any) ([]byte, error) {
	var rd io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://corral"+path, rd)
	if err != nil {
		return nil, err
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ac.hc.Do(req)
	if err != nil {
		if _, serr := os.Stat(ac.addr.Target); serr != nil {
			return nil, fmt.Errorf("no corral running at %s (%v)", ac.addr, serr)
		}
		return nil, fmt.Errorf("admin %s: %w", ac.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", ac.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var e admin.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("admin: %s", e.Error)
		}
		return nil, fmt.Errorf("admin %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

func printFences(w io.Writer, fs []vswitch.FenceStatus) {
	fmt.Fprintln(w, "FENCE\tID\tPORTS\tMACS\tFRAMES IN\tFRAMES OUT\tBYTES IN\tBYTES OUT\tFLOODS\tDROPS")
	for _, f := range fs {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n", f.Name, f.ID, f.Ports, f.MACs, f.MaxMACs,
			f.FramesIn, f.FramesOut, f.BytesIn, f.BytesOut, f.Floods, dropsOrDash(f.Drops))
	}
}

func printPorts(w io.Writer, ps []vswitch.PortStatus) {
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
