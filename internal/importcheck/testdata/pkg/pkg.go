// Package pkg is a test input of importcheck: its files import what the
// rules refuse. It is never built.
package pkg

import (
	"fmt"

	_ "github.com/corralnet/corral/fence"
	_ "github.com/corralnet/corral/switch"
	_ "github.com/corralnet/corralx/other"
	_ "github.com/spf13/cobra"
	_ "gvisor.dev/gvisor/pkg/tcpip"
)

var _ = fmt.Sprint
