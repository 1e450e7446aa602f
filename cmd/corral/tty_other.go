//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import "os"

// isTerminal reports false: no terminal detection on this OS.
func isTerminal(*os.File) bool { return false }
