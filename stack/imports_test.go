package stack

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports guards STYLE 1.1 and 1.6: stack is the only package that
// imports gVisor; its services (dhcp, dns) take net.PacketConn and
// net.Listener and import no gVisor, so they are tested on plain sockets.
// None imports cobra or viper (only cmd/corral does).
func TestImports(t *testing.T) {
	importcheck.Check(t, ".", importcheck.NoCobraViper)
	for _, dir := range []string{"dhcp", "dns", "dns/dnstest", "socks"} {
		importcheck.Check(t, dir, importcheck.NoGVisor, importcheck.NoCobraViper)
	}
}
