//go:build race

package stack

// raceEnabled: the race detector slows the stacks about tenfold.
const raceEnabled = true
