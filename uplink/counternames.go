package uplink

// CounterNames returns the names of every counter in Status.Counters, in
// a fixed order (for exporters that map each to a metric).
func CounterNames() []string {
	out := make([]string, 0, len(counterNames)+len(parseErrs))
	out = append(out, counterNames[:]...)
	for _, p := range parseErrs {
		out = append(out, "drop_"+p.name)
	}
	return out
}
