package uplink

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports guards STYLE 1.1: from this repository, uplink (and its fake,
// uplinktest) imports only fence. The trunk contract uses builtin types, so
// *Uplink implements vswitch.Trunk without importing vswitch (the
// compile-time check is in uplink_test.go).
func TestImports(t *testing.T) {
	for _, dir := range []string{".", "uplinktest"} {
		importcheck.Check(t, dir,
			importcheck.RepoOnly("uplink imports only fence from this repository", "fence"),
			importcheck.NoGVisor, importcheck.NoCobraViper)
	}
}
