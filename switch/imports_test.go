package vswitch_test

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports guards STYLE 1.1: vswitch imports no package of this
// repository and no gVisor, so the switch core builds and is tested on its
// own; its fake, porttest, imports only vswitch.
func TestImports(t *testing.T) {
	importcheck.Check(t, ".",
		importcheck.RepoOnly("vswitch imports no package of this repository"),
		importcheck.NoGVisor, importcheck.NoCobraViper)
	importcheck.Check(t, "porttest",
		importcheck.RepoOnly("porttest imports only vswitch from this repository", "switch"),
		importcheck.NoGVisor, importcheck.NoCobraViper)
}
