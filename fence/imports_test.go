package fence

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImportsOnlyStdlib guards STYLE 1.1: package fence imports only the
// standard library.
func TestImportsOnlyStdlib(t *testing.T) {
	if n := importcheck.Check(t, ".", importcheck.StdlibOnly("fence may import only the standard library")); n < 5 {
		t.Fatalf("checked only %d files", n)
	}
}
