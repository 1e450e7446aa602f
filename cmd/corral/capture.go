package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/switch/admin"
)

// The capture route and command (DESIGN.md section 7): GET /v1/capture
// streams a pcap of one fence or port (admin.CaptureHandler) and
// `corral capture` writes it to a file or stdout.

func init() {
	runHooks = append(runHooks, func(rt *instance) error {
		if rt.admin != nil {
			// rt.ctx is cancelled at shutdown before the admin server
			// waits for its requests, so captures end at once.
			rt.admin.Handle("GET /v1/capture", admin.CaptureHandler(rt.sw, rt.ctx.Done()))
		}
		return nil
	})
	registerCommand(func(c *cli) *cobra.Command { return c.newCaptureCmd() })
}

// captureOpts are the flags of corral capture.
type captureOpts struct {
	fence, port string
	count       uint64
	seconds     float64
	snaplen     int
	write       string
}

// query is the request path for o, or a usage error.
func (o captureOpts) query() (string, error) {
	if (o.fence == "") == (o.port == "") {
		return "", usageError{errors.New("capture needs exactly one of --fence and --port")}
	}
	if o.seconds < 0 || o.snaplen < 0 {
		return "", usageError{errors.New("--seconds and --snaplen must not be negative")}
	}
	if o.write == "" {
		return "", usageError{errors.New("-w needs a file name, or - for stdout")}
	}
	v := url.Values{}
	if o.fence != "" {
		v.Set("fence", o.fence)
	} else {
		v.Set("port", o.port)
	}
	if o.count > 0 {
		v.Set("count", strconv.FormatUint(o.count, 10))
	}
	if o.seconds > 0 {
		v.Set("seconds", strconv.FormatFloat(o.seconds, 'f', -1, 64))
	}
	if o.snaplen > 0 {
		v.Set("snaplen", strconv.Itoa(o.snaplen))
	}
	return "/v1/capture?" + v.Encode(), nil
}

func (c *cli) newCaptureCmd() *cobra.Command {
	var o captureOpts
	cmd := &cobra.Command{
		Use:   "capture (--fence FENCE | --port PORT) [-c COUNT] [--seconds S] [-s SNAPLEN] [-w FILE|-]",
		Short: "Write a pcap of the frames of one fence or port (readable by tcpdump and Wireshark)",
		Long: `capture asks a running corral for the Ethernet frames of one fence (every
frame entering it, from its ports and the uplink) or of one port (frames it
sends and frames delivered to it) and writes them as a pcap file (link type
Ethernet) to FILE, or to stdout with -w - (the default):

  corral capture --fence default -w - | tcpdump -nn -e -r -

It stops after COUNT frames, after S seconds, when corral stops, or on
Ctrl-C. corral drops (and counts) frames when the capture cannot keep up;
the switch itself is never slowed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.capture(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.fence, "fence", "", "fence to capture (name or ID)")
	f.StringVar(&o.port, "port", "", "port to capture (ID or name, see corral ports)")
	f.Uint64VarP(&o.count, "count", "c", 0, "stop after this many frames (0: no limit)")
	f.Float64Var(&o.seconds, "seconds", 0, "stop after this many seconds (0: no limit)")
	f.IntVarP(&o.snaplen, "snaplen", "s", 0, "bytes kept per frame (0: whole frames)")
	f.StringVarP(&o.write, "write", "w", "-", "pcap file to write, - for stdout")
	return cmd
}

func (c *cli) capture(cmd *cobra.Command, o captureOpts) error {
	path, err := o.query()
	if err != nil {
		return err
	}
	ac, err := c.adminClient(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://corral"+path, nil)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: ac.hc.Transport} // no timeout: the stream lasts
	resp, err := hc.Do(req)
	if err != nil {
		if _, serr := os.Stat(ac.addr.Target); serr != nil {
			return fmt.Errorf("no corral running at %s (%v)", ac.addr, serr)
		}
		return fmt.Errorf("admin %s: %w", ac.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e admin.ErrorResponse
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin: %s", e.Error)
		}
		return fmt.Errorf("admin %s: %s", path, resp.Status)
	}

	out := c.stdout
	name := "stdout"
	if o.write != "-" {
		f, err := os.Create(o.write)
		if err != nil {
			return err
		}
		defer f.Close()
		out, name = f, o.write
	}
	what := "fence " + o.fence
	if o.port != "" {
		what = "port " + o.port
	}
	fmt.Fprintf(c.stderr, "capturing %s to %s, link-type EN10MB (Ethernet)\n", what, name)

	buf := make([]byte, 64<<10)
	var copyErr error
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				copyErr = fmt.Errorf("write %s: %w", name, werr)
				break
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && ctx.Err() == nil {
				copyErr = fmt.Errorf("capture stream: %w", rerr)
			}
			break
		}
	}
	if f, ok := out.(*os.File); ok && o.write != "-" {
		if err := f.Close(); err != nil && copyErr == nil {
			copyErr = fmt.Errorf("write %s: %w", name, err)
		}
	}
	if copyErr != nil {
		return copyErr
	}
	if fr := resp.Trailer.Get(admin.TrailerFrames); fr != "" {
		fmt.Fprintf(c.stderr, "%s frames captured, %s dropped by corral\n", fr, resp.Trailer.Get(admin.TrailerDropped))
	} else if ctx.Err() != nil {
		fmt.Fprintln(c.stderr, "capture interrupted")
	}
	return nil
}
