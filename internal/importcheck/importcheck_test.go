package importcheck

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestImports(t *testing.T) {
	got, files, err := Imports("testdata/pkg")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pkg.go", "pkg_darwin.go", "pkg_linux.go"}; !slices.Equal(files, want) {
		t.Errorf("files: got %q, want %q", files, want)
	}
	var paths []string
	for p := range got {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	// Linux and darwin files count; windows, tools-tagged and test files
	// do not.
	want := []string{
		"example.com/darwinonly",
		"fmt",
		"github.com/corralnet/corral/fence",
		"github.com/corralnet/corral/switch",
		"github.com/corralnet/corralx/other",
		"github.com/spf13/cobra",
		"golang.org/x/sys/unix",
		"gvisor.dev/gvisor/pkg/tcpip",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("Imports:\n got %q\nwant %q", paths, want)
	}
	if at := got["golang.org/x/sys/unix"]; len(at) != 1 || !strings.HasSuffix(at[0], "pkg_linux.go:3") {
		t.Errorf("x/sys/unix imported at %q, want [.../pkg_linux.go:3]", at)
	}
	if _, _, err := Imports("testdata/empty"); err == nil {
		t.Error("Imports of a directory without Go files: got nil error")
	}
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		path string
		want bool
	}{
		{NoGVisor, "gvisor.dev/gvisor/pkg/tcpip", true},
		{NoGVisor, "gvisor.dev", true},
		{NoGVisor, "gvisor.dev.example/x", false},
		{NoGVisor, "net", false},
		{NoCobraViper, "github.com/spf13/cobra", true},
		{NoCobraViper, "github.com/spf13/viper", true},
		{NoCobraViper, "github.com/spf13/pflag", true},
		{NoCobraViper, "github.com/spf13x/cobra", false},
		{NoCobraViper, "github.com/go-viper/mapstructure/v2", false},
		{StdlibOnly(""), "net/netip", false},
		{StdlibOnly(""), "golang.org/x/sys/unix", true},
		{StdlibOnly(""), "github.com/corralnet/corral/fence", true},
		{RepoOnly("", "fence"), "github.com/corralnet/corral/fence", false},
		{RepoOnly("", "fence"), "github.com/corralnet/corral/switch", true},
		{RepoOnly("", "fence"), "github.com/corralnet/corral/fence/sub", true},
		{RepoOnly("", "fence"), "github.com/corralnet/corral", true},
		{RepoOnly("", "fence"), "github.com/corralnet/corralx/other", false},
		{RepoOnly("", "fence"), "golang.org/x/net/ipv4", false},
		{RepoOnly(""), "github.com/corralnet/corral/fence", true},
	} {
		if got := tc.rule.Refuses(tc.path); got != tc.want {
			t.Errorf("rule %q refuses %s = %v, want %v", tc.rule.Why, tc.path, got, tc.want)
		}
	}
}

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckFails shows that Check fails on a refused import and on a
// directory it cannot check, so that the import tests built on it can fail.
func TestCheckFails(t *testing.T) {
	r := &recorder{TB: t}
	n := Check(r, "testdata/pkg", NoGVisor, NoCobraViper, RepoOnly("only fence", "fence"))
	if n != 3 {
		t.Errorf("Check checked %d files, want 3", n)
	}
	want := []string{
		"imports github.com/corralnet/corral/switch: only fence",
		"imports github.com/spf13/cobra: " + NoCobraViper.Why,
		"imports gvisor.dev/gvisor/pkg/tcpip: " + NoGVisor.Why,
	}
	if len(r.errs) != len(want) {
		t.Fatalf("Check reported %q, want %d errors", r.errs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(r.errs[i], "pkg.go:") || !strings.HasSuffix(r.errs[i], w) {
			t.Errorf("error %d: got %q, want pkg.go:… %s", i, r.errs[i], w)
		}
	}
	for _, dir := range []string{"testdata/empty", "testdata/missing"} {
		r := &recorder{TB: t}
		if n := Check(r, dir, NoGVisor); n != 0 || len(r.errs) != 1 {
			t.Errorf("Check(%s) = %d with errors %q; want 0 and one error", dir, n, r.errs)
		}
	}
}

// TestModule checks every package of the module, so that a new package is
// held to the rules without a test of its own: only stack imports gVisor,
// only cmd/corral imports cobra and viper. (Each package's own import test
// states its stricter rules.)
func TestModule(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	checked := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if _, _, err := Imports(path); err != nil {
			return nil // no Go files here
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		var rules []Rule
		if rel != "stack" {
			rules = append(rules, NoGVisor)
		}
		if rel != "cmd/corral" {
			rules = append(rules, NoCobraViper)
		}
		Check(t, path, rules...)
		checked[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"fence", "switch", "uplink", "stack", "stack/dhcp", "attach", "tap", "cmd/corral", "internal/importcheck"} {
		if !checked[pkg] {
			t.Errorf("package %s was not checked (checked %d packages)", pkg, len(checked))
		}
	}
}
