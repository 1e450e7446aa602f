package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

// `corral forward add|ls|rm`: port forwards of a running switch's gateways
// (GET/POST/DELETE /v1/forwards, issue 4 item 6).

func (c *cli) newForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Add, list and remove port forwards of a running switch's gateways",
		Args:  noArgs, // an unknown subcommand is a usage error
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add FENCE PROTO LISTEN TARGET",
		Short: "Forward host address LISTEN (IP:port) into fence FENCE's TARGET (IP:port)",
		Example: `  corral forward add default tcp 127.0.0.1:2222 10.0.2.15:22
  corral forward add lab2 udp 127.0.0.1:5353 10.0.2.15:53`,
		Args: exactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := admin.Forward{Fence: args[0], Proto: args[1], Listen: args[2], Target: args[3]}
			if _, err := admin.ParseForward(f, true); err != nil {
				return usageError{err}
			}
			add := func(ac *admin.Client, ctx context.Context) (admin.Forward, error) { return ac.AddForward(ctx, f) }
			return callAdmin(c, cmd, add, func(w io.Writer, added admin.Forward) {
				fmt.Fprintf(w, "fence %s: forwarding %s %s -> %s\n", added.Fence, added.Proto, added.Listen, added.Target)
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ls [FENCE]",
		Short: "List the port forwards of one fence or of every fence with a gateway",
		Args:  optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, withFence((*admin.Client).Forwards, args), printForwards)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "rm FENCE PROTO LISTEN",
		Aliases: []string{"remove", "del"},
		Short:   "Remove fence FENCE's forward of host address LISTEN",
		Example: "  corral forward rm default tcp 127.0.0.1:2222",
		Args:    exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := admin.Forward{Fence: args[0], Proto: args[1], Listen: args[2]}
			if _, err := admin.ParseForward(f, false); err != nil {
				return usageError{err}
			}
			rm := func(ac *admin.Client, ctx context.Context) (admin.Forward, error) { return ac.RemoveForward(ctx, f) }
			return callAdmin(c, cmd, rm, func(w io.Writer, removed admin.Forward) {
				fmt.Fprintf(w, "fence %s: removed %s %s\n", removed.Fence, removed.Proto, removed.Listen)
			})
		},
	})
	return cmd
}

// exactArgs is cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d arguments, got %d (usage: %s)", cmd.CommandPath(), n, len(args), cmd.UseLine())}
		}
		return nil
	}
}

func printForwards(w io.Writer, ffs []admin.FenceForwards) {
	fmt.Fprintln(w, "FENCE\tPROTO\tLISTEN\tTARGET")
	for _, ff := range ffs {
		for _, f := range ff.Forwards {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", ff.Name, f.Proto, f.Listen, f.Target)
		}
	}
}
