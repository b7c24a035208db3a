#!/bin/bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s).
# A failing input (written to testdata/fuzz/) fails the run. Go's fuzzing
# engine sometimes ends a run whose time is up with a bare "context deadline
# exceeded" while a worker is busy, without any failing input: that is the
# engine's deadline, not a finding, and is reported but not counted.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $($GO list ./...); do
	for t in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		echo "== $pkg $t ($FUZZTIME)"
		if $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			tail -n 1 "$log"
			continue
		fi
		if grep -q "context deadline exceeded" "$log" && ! grep -qE "Failing input written|panic:|--- FAIL: $t/" "$log"; then
			echo "   the fuzzing engine hit its own deadline (no failing input): not a finding"
			continue
		fi
		cat "$log"
		status=1
	done
done
exit $status
