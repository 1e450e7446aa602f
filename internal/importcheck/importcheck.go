// Package importcheck reads which packages a directory's Go files import,
// for the tests that keep corral's dependencies pointing one way (STYLE.md
// 1.1): uplink imports only fence from this repository, vswitch nothing
// from it and no gVisor, only package stack imports gVisor, only
// cmd/corral imports cobra and viper. Only _test.go files use it.
//
// The imports of a package are those of its non-test files on any system
// corral builds for ([GOOS]), as go/build selects them: a Linux-only file
// counts, a file excluded by a build tag no build sets (tools, ignore)
// does not.
package importcheck

import (
	"errors"
	"fmt"
	"go/build"
	"slices"
	"strings"
	"testing"
)

// Module is the path of corral's module.
const Module = "github.com/corralnet/corral"

// GOOS are the systems corral builds for.
var GOOS = []string{"linux", "darwin"}

// Imports returns the packages that the non-test Go files in dir import on
// any of [GOOS], each with the "file:line" places that import it, and the
// names of those files. A directory without Go files for any of them is an
// error.
func Imports(dir string) (imports map[string][]string, files []string, err error) {
	imports = map[string][]string{}
	for _, goos := range GOOS {
		ctx := build.Default
		ctx.GOOS = goos
		ctx.GOARCH = "amd64"
		pkg, err := ctx.ImportDir(dir, build.ImportComment)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("importcheck: %s (GOOS=%s): %w", dir, goos, err)
		}
		for _, f := range pkg.GoFiles {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
		for path, places := range pkg.ImportPos {
			for _, p := range places {
				at := fmt.Sprintf("%s:%d", p.Filename, p.Line)
				if !slices.Contains(imports[path], at) {
					imports[path] = append(imports[path], at)
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("importcheck: %s: no Go files for %v", dir, GOOS)
	}
	slices.Sort(files)
	return imports, files, nil
}

// A Rule refuses some imports.
type Rule struct {
	// Refuses reports whether importing path breaks the rule.
	Refuses func(path string) bool
	// Why states the rule, for the failure message.
	Why string
}

// NoGVisor refuses gvisor.dev/...: only package stack imports gVisor.
var NoGVisor = Rule{
	Refuses: func(path string) bool { return under(path, "gvisor.dev") },
	Why:     "only package stack imports gVisor (gvisor.dev/...)",
}

// NoCobraViper refuses github.com/spf13/... (cobra, viper, pflag): only
// cmd/corral reads flags and configuration files.
var NoCobraViper = Rule{
	Refuses: func(path string) bool { return under(path, "github.com/spf13") },
	Why:     "only cmd/corral imports cobra and viper (github.com/spf13/...)",
}

// StdlibOnly refuses every package outside the standard library (whose
// paths have no dot in their first element).
func StdlibOnly(why string) Rule {
	return Rule{
		Refuses: func(path string) bool {
			first, _, _ := strings.Cut(path, "/")
			return strings.Contains(first, ".")
		},
		Why: why,
	}
}

// RepoOnly refuses every package of this module except the ones named by
// their path inside it ("fence", "switch").
func RepoOnly(why string, allowed ...string) Rule {
	return Rule{
		Refuses: func(path string) bool {
			rel, ok := strings.CutPrefix(path, Module)
			if !ok || rel != "" && rel[0] != '/' {
				return false // not this module
			}
			return !slices.Contains(allowed, strings.TrimPrefix(rel, "/"))
		},
		Why: why,
	}
}

// under reports whether path is root or a package below it.
func under(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}

// Check reports, through t.Errorf, every import of the package in dir that
// one of rules refuses, and an error when dir cannot be read or has no Go
// files. It returns the number of files it checked, so that a caller can
// tell its package from a wrong directory.
func Check(t testing.TB, dir string, rules ...Rule) int {
	t.Helper()
	imports, files, err := Imports(dir)
	if err != nil {
		t.Errorf("%v", err)
		return 0
	}
	paths := make([]string, 0, len(imports))
	for path := range imports {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	for _, path := range paths {
		for _, r := range rules {
			if r.Refuses(path) {
				t.Errorf("%s imports %s: %s", imports[path][0], path, r.Why)
			}
		}
	}
	return len(files)
}
