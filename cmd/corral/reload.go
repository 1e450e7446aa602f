package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
)

func (rt *instance) reloadFromAdmin(ctx context.Context) (admin.ReloadResponse, error) {
	return admin.ReloadResponse{}, errors.New("not yet")
}

func (c *cli) newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Apply the running switch's configuration file again (like SIGHUP)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return callAdmin(c, cmd, (*admin.Client).Reload, func(w io.Writer, r admin.ReloadResponse) {})
		},
	}
}
