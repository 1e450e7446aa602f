package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain points $XDG_STATE_HOME at a directory of this test binary, so
// that no test keeps instance state (state.go) in the user's home.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corral-cmd-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
