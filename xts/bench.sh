#!/usr/bin/env bash
# bench.sh: chestfs AES-256-XTS against OpenSSL on this machine, in one run.
#
# Prints OpenSSL's `speed -evp aes-256-xts -bytes 4096` (per CPU second, its
# default, and per wall second with -elapsed, and -multi 2), the xts package's
# benchmarks (MB/s per wall second and cpuMB/s per CPU second), and the
# ratios. On a shared machine compare the CPU-second figures: wall time then
# mostly measures waiting for a core. Usage: xts/bench.sh [SECONDS] (default 3).
# On arm64 hardware it compares the armv8 path; under qemu-user the figures
# mean nothing (emulation), so run it on a real Arm machine.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/xts.test" .

# ossl ARGS...: OpenSSL's AES-256-XTS figure in MB/s (10^6 bytes).
ossl() {
	openssl speed "$@" -evp aes-256-xts -bytes 4096 -seconds "$secs" 2>/dev/null |
		awk '/^AES-256-XTS/ { v = $NF; sub("k$", "", v); printf "%.0f\n", v / 1000 }'
}

gobench() {
	"$tmp/xts.test" -test.run '^$' -test.bench "$1" -test.benchtime "${secs}s" -test.cpu "${2:-1}" |
		awk '/^Benchmark/ { mbs = ""; cpu = ""
			for (i = 2; i <= NF; i++) { if ($(i+1) == "MB/s") mbs = $i; if ($(i+1) == "cpuMB/s") cpu = $i }
			printf "%s %s %s\n", $1, mbs, cpu }'
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== OpenSSL $(openssl version | cut -d' ' -f2)"
ossl_cpu=$(ossl)
ossl_wall=$(ossl -elapsed)
ossl_multi=$(ossl -multi 2)
printf '%-44s %10s MB/s (per CPU second)\n' "openssl speed aes-256-xts 4096" "$ossl_cpu"
printf '%-44s %10s MB/s (per wall second)\n' "openssl speed -elapsed" "$ossl_wall"
printf '%-44s %10s MB/s (2 processes, total)\n' "openssl speed -multi 2" "$ossl_multi"

echo "== chestfs xts (wall MB/s, cpuMB/s)"
gobench 'DecryptSectors4K$|DecryptSectors512$|EncryptSectors4K$' >"$tmp/one"
gobench 'ParallelDecrypt1M' 2 >"$tmp/par"
cat "$tmp/one" "$tmp/par" | while read -r name mbs cpu; do
	printf '%-44s %10s MB/s  %10s cpuMB/s\n' "$name" "$mbs" "$cpu"
done

echo "== ratios"
best=$("$tmp/xts.test" -test.run 'TestImplSelection' -test.v 2>&1 | sed -n 's/.*default \([a-z0-9]*\).*/\1/p' | head -1)
awk -v best="$best" -v oc="$ossl_cpu" -v ow="$ossl_wall" -v om="$ossl_multi" '
	# The path this CPU uses, and the AES-NI path CPUs without VAES use.
	FILENAME ~ /one$/ && ($1 ~ ("/" best "$") || $1 ~ "/aesni$") { printf "%-44s %6.2fx OpenSSL per CPU second, %6.2fx per wall second\n", $1, $3 / oc, $2 / ow }
	FILENAME ~ /par$/ { w[$1] = $2 }
	END {
		for (k in w) if (k ~ /workers=1/) one = w[k]
		for (k in w) if (k ~ /workers=2/) two = w[k]
		if (one > 0) printf "%-44s %6.2fx one worker (wall), %6.2fx OpenSSL -multi 2\n", "1 MiB span on 2 workers", two / one, two / om
	}' "$tmp/one" "$tmp/par"

# The host's speed drifts (other tenants, clocks), so figures taken a minute
# apart do not compare: three rounds of OpenSSL, the 4 KiB decrypt and the
# 1 MiB span on 1 and 2 workers back to back, one ratio per round, and their
# medians.
echo "== back-to-back rounds (4 KiB decrypt, per CPU second)"
for round in 1 2 3; do
	o=$(ossl)
	gobench 'DecryptSectors4K$/(aesni|'"$best"')$' >"$tmp/r"
	awk -v o="$o" -v r="$round" '{ printf "round %d  openssl %6d MB/s  %-36s %6.0f cpuMB/s  %5.2fx\n", r, o, $1, $3, $3 / o }' "$tmp/r"
	gobench 'ParallelDecrypt1M/workers=[12]$' 2 >"$tmp/p"
	awk -v r="$round" '/workers=1/ { one = $2 } /workers=2/ { two = $2 }
		END { printf "round %d  1 MiB span  workers=1 %6.0f MB/s  %-28s %6.0f MB/s  %5.2fx\n", r, one, "Benchmark/2workers", two, two / one }' "$tmp/p"
done | tee "$tmp/rounds"
awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^Benchmark/) { split($i, p, "/"); k = p[2] } v[k] = v[k] " " $(NF) }
	END { for (k in v) { n = split(v[k], a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		printf "median %-20s %s %s\n", k, a[int((n + 1) / 2)], k == "2workers" ? "one worker" : "OpenSSL" } }' "$tmp/rounds"
