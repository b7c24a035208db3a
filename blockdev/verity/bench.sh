#!/bin/sh
# Compares the verified read path's tree check (go test -bench) with
# `openssl speed -evp sha256` in one run. openssl speed counts bytes per CPU
# second of its own process, so the Go benchmarks' cpu-MB/s (also per CPU
# second) are the figures compared; wall-clock MB/s are printed beside them,
# as they differ from the CPU figures on a machine shared with other work.
# Target: verified reads >= 0.8x openssl's sha256 (one core each: workers=1;
# wall-clock throughput for workers=0). The nocache rows are the worst case
# (hash blocks re-read and re-verified for every read), not the target's.
set -eu
cd "$(dirname "$0")"
seconds=${SECONDS_PER_SIZE:-3}
benchtime=${BENCHTIME:-2s}

speed() { # bytes -> MB/s (openssl prints 1000s of bytes per second)
	openssl speed -evp sha256 -bytes "$1" -seconds "$seconds" 2>/dev/null |
		awk '$1 == "sha256" { v = $2; sub(/k$/, "", v); printf "%.0f", v / 1000 }'
}
o4096=$(speed 4096)
o8192=$(speed 8192)
echo "openssl $(openssl version | awk '{print $2}') speed -evp sha256: 4096 bytes ${o4096} MB/s, 8192 bytes ${o8192} MB/s (per CPU second)"

out=$(go test -run '^$' -bench 'VerifiedRead|TreeCheck|SHA256' -benchtime "$benchtime" .)
echo "$out" | grep '^Benchmark'
echo
echo "$out" | awk -v o4=$o4096 -v o8=$o8192 '
/^Benchmark/ {
	for (i = 1; i <= NF; i++) {
		if ($i == "MB/s") wall = $(i-1)
		if ($i == "cpu-MB/s") cpu = $(i-1)
	}
	# One core against one core: the cpu figures. The workers=0 rows hash
	# on all cores, which costs some CPU per byte and buys throughput: they
	# are judged by the wall-clock ratio.
	r = cpu / o4
	if ($1 ~ /workers=0/) r = wall / o4
	printf "%-40s %5.0f cpu-MB/s %.2fx openssl@4096 %.2fx @8192 | wall %5.0f MB/s %.2fx | %s\n", $1, cpu, cpu / o4, cpu / o8, wall, wall / o4, (r >= 0.8 ? "ok" : "BELOW 0.8x")
}'
