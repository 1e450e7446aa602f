package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

// `corral health`: the liveness probe (GET /v1/health) for scripts,
// systemd and container health checks. It exits 0 when a corral answers
// on the admin socket (which it serves only once everything configured
// runs), 1 when none does. It talks to the admin socket only: probing a
// fence's socket instead would do too, as a connection closed before its
// first byte is no port (attach/probe.go), but says less.

func (c *cli) newHealthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Exit 0 if a corral runs on the admin socket, 1 if not (a liveness probe)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Health, func(w io.Writer, h admin.HealthResponse) {
				fmt.Fprintf(w, "%s: corral %s up %s, %d fences, %d ports\n", h.Status, h.Version,
					(time.Duration(h.UptimeSeconds) * time.Second).String(), h.Fences, h.Ports)
			})
		},
	}
}
