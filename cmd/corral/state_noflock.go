//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import "os"

// tryLock fails: this OS has no flock.
func tryLock(*os.File) (bool, error) { return false, errStateLockUnsupported }
