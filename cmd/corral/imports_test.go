package main

import (
	"testing"

	"github.com/corralnet/corral/internal/importcheck"
)

// TestImports guards STYLE 1.1: cmd/corral is the only package that
// imports cobra and viper (every other package's import test refuses
// them), and it reaches gVisor only through package stack.
func TestImports(t *testing.T) {
	importcheck.Check(t, ".", importcheck.NoGVisor)
}
