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

// commands registered by other files of this package (peers, forward,
// capture …) from init: each builds one subcommand of root.
var extraCommands []func(c *cli) *cobra.Command

// registerCommand adds a subcommand to corral. Call it from an init
// function of the file that implements the command.
func registerCommand(f func(c *cli) *cobra.Command) { extraCommands = append(extraCommands, f) }

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
	root.PersistentFlags().Bool("json", false, "print the admin API's raw JSON")

	root.AddCommand(c.newRunCmd(), c.newPlugCmd(), c.newVersionCmd())
	root.AddCommand(c.newClientCmds()...)
	for _, f := range extraCommands {
		root.AddCommand(f(c))
	}
	return root
}
