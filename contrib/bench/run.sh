#!/usr/bin/env bash
# contrib/bench/run.sh — what `make bench` runs.
#
# Installs the peers the benchmarks compare against (gvproxy from the Go
# module proxy at a pinned version into .cache/bin; vde2, iperf3,
# slirp4netns and passt from Debian when missing), builds corral, the load
# generator and the e2e test binary once, runs the benchmarks of
# e2e/bench_*_linux_test.go in BENCH_ROUNDS interleaved rounds (every
# target once per round, so drift hits all of them alike) and prints the
# medians as Markdown tables, to stdout and to bench-results.md.
#
# Environment:
#   BENCH_ROUNDS  rounds (default 3)
#   BENCH_SETS    which benchmarks, in order (default "Switch Uplink Gateway Storm")
#   BENCH_SUB     sub-benchmark filter, e.g. 'corral|gvproxy' (default: all)
#   GVPROXY_VERSION  gvproxy version to try first (default v0.8.9)
#   CORRAL_BIN    a prebuilt corral binary (default: built from ./cmd/corral)
#   BENCH_GOSSIP  member counts of the gossip scale simulation, run once
#                 after the rounds (default "50 100"; 200 runs on 2 idle
#                 cores in about 70 s; beyond, one process starves its
#                 members even with the simulation's time dilation —
#                 "300 1000" on a bigger machine; gossip/sim_test.go)
#   BENCH_GOSSIP_WINDOW  its steady-state window (default 30s)
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-3}
SETS=${BENCH_SETS:-Switch Uplink Gateway Storm}
SUB=${BENCH_SUB:-}
CACHE=$ROOT/.cache
BIN=$CACHE/bin
OUT=$ROOT/bench-results.md
RAW=$CACHE/bench/raw-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$BIN" "$CACHE/bench"

say() { echo "bench: $*" >&2; }

# --- peers -------------------------------------------------------------
need_apt=()
command -v vde_switch >/dev/null || need_apt+=(vde2)
command -v vde_plug >/dev/null || need_apt+=(vdeplug)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v slirp4netns >/dev/null || need_apt+=(slirp4netns)
command -v pasta >/dev/null || need_apt+=(passt)
if ((${#need_apt[@]})); then
	say "installing with apt-get: ${need_apt[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		say "not root: install ${need_apt[*]} yourself"; exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null; } ||
		{ say "apt-get install ${need_apt[*]} failed"; exit 1; }
fi

# gvproxy: the pinned version first, then older v0.8.x releases if it does
# not build with this toolchain.
GVPROXY=$BIN/gvproxy
if [ ! -x "$GVPROXY" ]; then
	for v in "${GVPROXY_VERSION:-v0.8.9}" v0.8.8 v0.8.7 v0.8.6; do
		say "installing gvproxy $v (go install github.com/containers/gvisor-tap-vsock/cmd/gvproxy@$v)"
		if GOBIN=$BIN go install "github.com/containers/gvisor-tap-vsock/cmd/gvproxy@$v"; then
			break
		fi
	done
	[ -x "$GVPROXY" ] || { say "no gvproxy v0.8.x builds"; exit 1; }
fi
GVPROXY_VERSION=$(go version -m "$GVPROXY" 2>/dev/null | awk '$1 == "mod" { print $3 }')

# --- corral, loadgen, test binary --------------------------------------
say "building corral, loadgen and the e2e test binary"
fail=0
if [ -n "${CORRAL_BIN:-}" ]; then
	say "using CORRAL_BIN=$CORRAL_BIN"
	export CORRAL_BIN
elif go build -o "$BIN/corral" ./cmd/corral; then
	export CORRAL_BIN=$BIN/corral
else
	say "corral does not build: its rows will fail"
	fail=1
fi
go build -o "$BIN/corral-loadgen" ./contrib/bench/loadgen || exit 1
export CORRAL_BENCH_LOADGEN=$BIN/corral-loadgen
export CORRAL_BENCH_GVPROXY=$GVPROXY
# Only the benchmark files (with the harness): a test file of another area
# that does not compile must not stop the benchmarks.
go test -c -o "$BIN/bench.test" ./e2e/bench_linux_test.go ./e2e/bench_*_linux_test.go || exit 1

# --- rounds --------------------------------------------------------------
: >"$RAW"
for r in $(seq 1 "$ROUNDS"); do
	for set in $SETS; do
		say "round $r of $ROUNDS: Benchmark$set"
		(cd e2e && "$BIN/bench.test" -test.run '^$' -test.bench "^Benchmark$set\$${SUB:+/$SUB}" \
			-test.benchtime 1x -test.timeout 30m 2>&1) |
			tee -a "$RAW" | grep --line-buffered -E '^(Benchmark|--- FAIL|FAIL|ok|panic)' >&2
		[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
	done
done

# --- gossip scale (issue 10): memberlist members in one process ----------
GOSSIP_RAW=$CACHE/bench/gossip-$(date -u +%Y%m%dT%H%M%SZ).txt
sizes=${BENCH_GOSSIP:-50 100}
say "gossip scale simulation: members $sizes"
go test -run '^$' -bench '^BenchmarkScale$' -benchtime 1x -timeout 60m ./gossip/ \
	-args -sim.sizes "$(echo "$sizes" | tr ' ' ',')" -sim.window "${BENCH_GOSSIP_WINDOW:-30s}" -sim.timeout 5m 2>&1 | tee "$GOSSIP_RAW" |
	grep --line-buffered -E '^(Benchmark|--- FAIL|FAIL|ok|panic)|members:' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
say "raw results: $RAW $GOSSIP_RAW"

# --- tables ------------------------------------------------------------
{
	echo "## corral benchmarks"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'),"
	echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(go version | cut -d' ' -f3),"
	echo "median of $ROUNDS interleaved rounds; load generator, switch and receiver share the cores."
	echo "Command: \`make bench\` (contrib/bench/run.sh). Peers: gvproxy $GVPROXY_VERSION,"
	echo "vde_switch $(dpkg-query -W -f='${Version}' vde2 2>/dev/null || echo '?') with vde_plug $(dpkg-query -W -f='${Version}' vdeplug 2>/dev/null || echo '?')."
	echo
	awk -f contrib/bench/table.awk "$RAW"
	echo
	echo "### Gossip scale (gossip.BenchmarkScale: memberlist members on an in-memory network, LAN profile)"
	echo
	echo '```'
	grep -E '^Benchmark|members:' "$GOSSIP_RAW" | sed 's/^ *//'
	echo '```'
} | tee "$OUT"
exit $fail
