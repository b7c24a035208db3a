#!/usr/bin/env bash
# bench-blob.sh: sequential and random reads of a >= 256 MiB file through a
# real `chestfs mount` of a page blob in Azurite behind a proxy adding 10 ms
# to every request, against a reader built like the Azure sidecar's and
# against parallel ranged GETs of the same bytes, all in one run
# (cmd/chestfs BenchmarkBlobMount). Needs root (FUSE, drop_caches) and
# Azurite (`make setup-npm`).
#
# Usage: scripts/bench-blob.sh [ROUNDS]   (default 3 rounds of the three
# readers, one ratio each, their median reported)
# Environment: BENCH_BLOB_MIB (file size, default 256), BENCH_BLOB_LATENCY_MS
# (default 10), BENCH_BLOB_MOUNT_ARGS (extra mount flags, e.g. "--readahead 16"),
# BENCH_BLOB_BLOCK=1 (a block blob), BENCH_BLOB_LOG=FILE (the mount's stderr;
# with BENCH_BLOB_MOUNT_ARGS=--debug the cache's figures), BENCH_BLOB_PERF=FILE
# (`perf record -g` of the mount process during its read).
# BENCH_BLOB_PAR_GET_MIB (the parallel reader's GET size, default 8 = the
# mount's --fetch-size). The "CPU seconds" line says who used the machine.
# Azurite runs with glibc malloc tunables (azuritetest) and the blob is read
# once untimed first: without them the emulator's allocator, not the
# readers, set the pace (10+ ms of node CPU per MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_BLOB_ROUNDS=${1:-${BENCH_BLOB_ROUNDS:-3}}
echo "== $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench '^BenchmarkBlobMount$' -benchtime 1x -timeout 60m -v ./cmd/chestfs/ |
	grep -E 'blobbench_test|^Benchmark|^(ok|FAIL|PASS)' |
	sed -E 's/^ +blobbench_test.go:[0-9]+: //'
