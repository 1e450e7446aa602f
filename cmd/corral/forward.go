package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

// `corral forward add|ls|rm`: port forwards of a running switch's gateways
// (GET/POST/DELETE /v1/forwards, issue 4 item 6), with --sni and --host
// to share a listen address between fences (issue 8 item 8).

func (c *cli) newForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Add, list and remove port forwards of a running switch's gateways",
		Args:  noArgs, // an unknown subcommand is a usage error
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var addName, rmName forwardName
	add := &cobra.Command{
		Use:   "add FENCE PROTO LISTEN TARGET [--sni NAME | --host NAME]",
		Short: "Forward host address LISTEN (IP:port) into fence FENCE's TARGET (IP:port)",
		Long: `Forward host address LISTEN (IP:port) into fence FENCE's TARGET (IP:port).

With --sni or --host (TCP only), the forward takes only the connections
that name it: TLS connections whose ClientHello carries server name NAME,
HTTP requests whose Host is NAME. Forwards of several fences share one
LISTEN address with distinct names; a forward without a name there takes
the connections that name none of them. TARGET must be inside the fence's
subnets.`,
		Example: `  corral forward add default tcp 127.0.0.1:2222 10.0.2.15:22
  corral forward add lab2 udp 127.0.0.1:5353 10.0.2.15:53
  corral forward add lab-a tcp 127.0.0.1:8443 10.0.2.15:443 --sni lab-a.test
  corral forward add lab-b tcp 127.0.0.1:8443 10.0.2.15:443 --sni lab-b.test
  corral forward add lab-b tcp 127.0.0.1:8080 10.0.2.15:80 --host lab-b.test`,
		Args: exactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := admin.Forward{Fence: args[0], Proto: args[1], Listen: args[2], Target: args[3], SNI: addName.sni, Host: addName.host}
			if _, err := admin.ParseForward(f, true); err != nil {
				return usageError{err}
			}
			add := func(ac *admin.Client, ctx context.Context) (admin.Forward, error) { return ac.AddForward(ctx, f) }
			return callAdmin(c, cmd, add, func(w io.Writer, added admin.Forward) {
				fmt.Fprintf(w, "fence %s: forwarding %s -> %s\n", added.Fence, forwardRoute(added), added.Target)
			})
		},
	}
	addName.flags(add)
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use:   "ls [FENCE]",
		Short: "List the port forwards of one fence or of every fence with a gateway",
		Args:  optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, withFence((*admin.Client).Forwards, args), printForwards)
		},
	})
	rm := &cobra.Command{
		Use:     "rm FENCE PROTO LISTEN [--sni NAME | --host NAME]",
		Aliases: []string{"remove", "del"},
		Short:   "Remove fence FENCE's forward of host address LISTEN (with that --sni or --host)",
		Example: `  corral forward rm default tcp 127.0.0.1:2222
  corral forward rm lab-a tcp 127.0.0.1:8443 --sni lab-a.test`,
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := admin.Forward{Fence: args[0], Proto: args[1], Listen: args[2], SNI: rmName.sni, Host: rmName.host}
			if _, err := admin.ParseForward(f, false); err != nil {
				return usageError{err}
			}
			rm := func(ac *admin.Client, ctx context.Context) (admin.Forward, error) { return ac.RemoveForward(ctx, f) }
			return callAdmin(c, cmd, rm, func(w io.Writer, removed admin.Forward) {
				fmt.Fprintf(w, "fence %s: removed %s\n", removed.Fence, forwardRoute(removed))
			})
		},
	}
	rmName.flags(rm)
	cmd.AddCommand(rm)
	return cmd
}

// forwardName holds the --sni and --host flags of a forward command.
type forwardName struct{ sni, host string }

func (n *forwardName) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&n.sni, "sni", "", "take only TLS connections whose ClientHello names this server (TCP)")
	cmd.Flags().StringVar(&n.host, "host", "", "take only HTTP requests whose Host is this name (TCP)")
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

// forwardRoute formats a forward's route: "tcp 127.0.0.1:8443", with
// " sni NAME" or " host NAME".
func forwardRoute(f admin.Forward) string {
	s := f.Proto + " " + f.Listen
	switch {
	case f.SNI != "":
		s += " sni " + f.SNI
	case f.Host != "":
		s += " host " + f.Host
	}
	return s
}

func printForwards(w io.Writer, ffs []admin.FenceForwards) {
	fmt.Fprintln(w, "FENCE\tPROTO\tLISTEN\tNAME\tTARGET")
	for _, ff := range ffs {
		for _, f := range ff.Forwards {
			name := "-"
			switch {
			case f.SNI != "":
				name = "sni " + f.SNI
			case f.Host != "":
				name = "host " + f.Host
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", ff.Name, f.Proto, f.Listen, name, f.Target)
		}
	}
}
