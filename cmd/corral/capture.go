package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

// `corral capture` (DESIGN.md section 7) writes the pcap stream of GET
// /v1/capture to a file or stdout.

// captureOpts are the flags of corral capture.
type captureOpts struct {
	fence, port string
	uplink      bool
	count       uint64
	seconds     float64
	snaplen     int
	write       string
}

// request is the API request for o, or a usage error.
func (o captureOpts) request() (admin.CaptureRequest, error) {
	n := 0
	for _, set := range []bool{o.fence != "", o.port != "", o.uplink} {
		if set {
			n++
		}
	}
	if n != 1 {
		return admin.CaptureRequest{}, usageError{errors.New("capture needs exactly one of --fence, --port and --uplink")}
	}
	if o.seconds < 0 || o.snaplen < 0 {
		return admin.CaptureRequest{}, usageError{errors.New("--seconds and --snaplen must not be negative")}
	}
	if o.write == "" {
		return admin.CaptureRequest{}, usageError{errors.New("-w needs a file name, or - for stdout")}
	}
	return admin.CaptureRequest{Fence: o.fence, Port: o.port, Uplink: o.uplink, Count: o.count, Seconds: o.seconds, Snaplen: o.snaplen}, nil
}

func (c *cli) newCaptureCmd() *cobra.Command {
	var o captureOpts
	cmd := &cobra.Command{
		Use:   "capture (--fence FENCE | --port PORT | --uplink) [-c COUNT] [--seconds S] [-s SNAPLEN] [-w FILE|-]",
		Short: "Write a pcap of the frames of one fence or port, or of the uplink (readable by tcpdump and Wireshark)",
		Long: `capture asks a running corral for the Ethernet frames of one fence (every
frame entering it, from its ports and the uplink) or of one port (frames it
sends and frames delivered to it) and writes them as a pcap file (link type
Ethernet) to FILE, or to stdout with -w - (the default):

  corral capture --fence default -w - | tcpdump -nn -e -r -

--uplink captures the uplink's outer frames instead: every frame received
from and sent to other hosts (hellos too), encapsulated, and sealed as they
are on the wire when the uplink is sealed. contrib/wireshark/corral.lua
decodes them:

  corral capture --uplink -c 100 -w uplink.pcap
  tshark -X lua_script:contrib/wireshark/corral.lua -r uplink.pcap

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
	f.BoolVar(&o.uplink, "uplink", false, "capture the uplink's outer frames (sealed as on the wire)")
	f.Uint64VarP(&o.count, "count", "c", 0, "stop after this many frames (0: no limit)")
	f.Float64Var(&o.seconds, "seconds", 0, "stop after this many seconds (0: no limit)")
	f.IntVarP(&o.snaplen, "snaplen", "s", 0, "bytes kept per frame (0: whole frames)")
	f.StringVarP(&o.write, "write", "w", "-", "pcap file to write, - for stdout")
	return cmd
}

func (c *cli) capture(cmd *cobra.Command, o captureOpts) error {
	req, err := o.request()
	if err != nil {
		return err
	}
	ac, err := c.adminClient(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stream, err := ac.Capture(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()

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
	switch {
	case o.port != "":
		what = "port " + o.port
	case o.uplink:
		what = "the uplink"
	}
	fmt.Fprintf(c.stderr, "capturing %s to %s, link-type EN10MB (Ethernet)\n", what, name)

	buf := make([]byte, 64<<10)
	var copyErr error
	for {
		n, rerr := stream.Read(buf)
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
	if frames, dropped, ok := stream.Summary(); ok {
		fmt.Fprintf(c.stderr, "%d frames captured, %d dropped by corral\n", frames, dropped)
	} else if ctx.Err() != nil {
		fmt.Fprintln(c.stderr, "capture interrupted")
	}
	return nil
}
