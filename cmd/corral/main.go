package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2 // bad configuration or usage, before any socket exists
)

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// cli carries what every subcommand shares.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// execute runs corral with argv and returns the exit status.
func execute(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.newRootCmd()
	root.SetArgs(argv)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "corral:", err)
	var ue usageError
	if isConfigError(err) || errors.As(err, &ue) {
		return exitConfig
	}
	return exitFail
}

func (c *cli) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "corral",
		Short: "A user-mode Ethernet switch for VMs, with fences, uplinks and gateways",
		Long: `corral switches the Ethernet frames of VMs attached over unix, tcp, udp,
unixgram, unixpacket, vsock or stdio within fences (private networks), across
hosts over an uplink, with an optional gVisor gateway per fence.

Without a subcommand, corral runs the switch (same as "corral run").`,
		Args:          noArgs,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd)
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
	})
	addConfigFlags(root.PersistentFlags())
	root.PersistentFlags().String("admin", "", "admin socket of a running corral (default: admin.listen of --config, else the default address)")
	root.PersistentFlags().Bool("json", false, "print the admin API's answer as JSON")

	// Every subcommand, in one place.
	root.AddCommand(
		c.newRunCmd(),
		c.newPlugCmd(),
		c.newVersionCmd(),
		c.newKeygenCmd(),
		// Clients of the admin API (package admin).
		c.newStatusCmd(),
		c.newFencesCmd(),
		c.newPortsCmd(),
		c.newFDBCmd(),
		c.newPeersCmd(),
		c.newGatewaysCmd(),
		c.newForwardCmd(),
		c.newCaptureCmd(),
		c.newAttachLinesCmd(),
		c.newHealthCmd(),
		c.newEventsCmd(),
		c.newReloadCmd(),
	)
	return root
}
