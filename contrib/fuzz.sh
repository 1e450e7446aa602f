#!/usr/bin/env bash
# Run every Fuzz* target of the repository for a while (make fuzz FUZZTIME=20s).
# Usage: contrib/fuzz.sh [FUZZTIME]   (default 20s; any -fuzztime value)
# Targets are found per package with `go test -list '^Fuzz'`; only packages
# whose _test.go files define a func Fuzz* are listed, to spare the CPU.
# New crashers land in <pkg>/testdata/fuzz/<Target>/: commit them.
# Exits non-zero if any target fails.
set -euo pipefail

fuzztime=${1:-20s}
cd "$(dirname "$0")/.."
go=${GO:-go}

failed=()
ran=0
while read -r dir pkg; do
	grep -qs '^func Fuzz' "$dir"/*_test.go || continue
	if ! list=$("$go" test -list '^Fuzz' "$pkg" </dev/null); then
		echo "$list" >&2
		failed+=("$pkg (go test -list)")
		continue
	fi
	targets=$(grep '^Fuzz' <<<"$list" || true)
	for t in $targets; do
		echo "== $pkg $t ($fuzztime)"
		ran=$((ran + 1))
		if ! "$go" test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg" </dev/null; then
			failed+=("$pkg $t")
		fi
	done
done < <("$go" list -e -f '{{.Dir}} {{.ImportPath}}' ./...)

echo "== fuzzed $ran targets"
if ((${#failed[@]})); then
	printf 'FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
if ((ran == 0)); then
	echo "no fuzz targets found" >&2
	exit 1
fi
