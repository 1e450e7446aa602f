package tap

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports guards STYLE 1.1: tap imports no gVisor (only stack does)
// and no cobra or viper (only cmd/corral does).
func TestImports(t *testing.T) {
	importcheck.Check(t, ".", importcheck.NoGVisor, importcheck.NoCobraViper)
}
