//go:build race

package uplink

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
