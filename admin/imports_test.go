package admin

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports guards the direction of dependencies (STYLE 1.1): the admin
// server reaches its sources through interfaces, so neither it nor what it
// imports brings in gVisor (package stack) or the CLI's cobra and viper.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps listed only %d packages", len(deps))
	}
	for _, d := range deps {
		for _, banned := range []string{"gvisor.dev/", "github.com/spf13/", "github.com/corralnet/corral/stack", "github.com/corralnet/corral/cmd"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("admin depends on %s", d)
			}
		}
	}
}
