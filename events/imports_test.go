package events

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImportsOnlyStdlib: the bus is a leaf; the switch, the uplink and the
// stack do not import it (their callbacks are wired in cmd).
func TestImportsOnlyStdlib(t *testing.T) {
	if n := importcheck.Check(t, ".", importcheck.StdlibOnly("events may import only the standard library")); n < 1 {
		t.Fatalf("checked only %d files", n)
	}
}
