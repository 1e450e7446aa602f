// Package harness is the shared toolbox of corral's integration and
// end-to-end tests (package e2e): it builds the corral binary once per test
// binary, makes network namespaces and veth pairs, starts and stops
// processes (corral itself, corral plug, iperf3 …) with their output
// captured, waits for conditions with deadlines, builds the QEMU guest image
// (contrib/guest/build.sh) and boots TCG guests that run a shell script and
// report its exit status.
//
// Everything a helper creates is removed through t.Cleanup. Helpers that
// need root call [NeedRoot] first: not root is a failure when CI=true and a
// skip otherwise. Under -short (`make unit`: no namespaces, TAP, QEMU or
// root) NeedRoot skips, saying so ([SkipShort]); there are no other skips.
package harness
