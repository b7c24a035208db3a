#!/usr/bin/env bash
# bench-blob.sh: sequential and random reads of a >= 256 MiB file through a
# real `chestfs mount` of a page blob served with 10 ms added to every
# request, against a reader built like the Azure sidecar's and against
# parallel ranged GETs of the same bytes, all in one run (cmd/chestfs
# BenchmarkBlobMount); also the round trips to a cold file's first byte
# once the mount is up, peak RSS against the cache bound, and the CPU of
# mount, server and readers apart. Needs root (FUSE, drop_caches).
#
# Usage: scripts/bench-blob.sh [ROUNDS]   (default 3 rounds of the
# readers per link setting, one ratio each, their median reported; a table
# of the settings at the end, CPU in ms per MiB read)
# Environment: BENCH_BLOB_SERVER=fast (default: azuritetest.ReadServer, a
# Go stand-in for Azure's front end serving the image from memory in a
# process of its own, never the bottleneck) or azurite (the emulator behind
# a latency proxy; needs `make setup-npm`; its Node CPU tends to set the
# pace). BENCH_BLOB_MIB (file size, default 256), BENCH_BLOB_LATENCY_MS
# (default 10), BENCH_BLOB_LINKS (a sweep of link settings, each measured
# in turn against the same image and server: "0 4000 2000 1000 0/400" is
# Mbit/s, aggregate over all connections (the VM's NIC) / per connection
# (one TCP stream's share of a WAN path), 0 unlimited; fast server only),
# else BENCH_BLOB_LINK_MBPS and BENCH_BLOB_CONN_MBPS (one setting, default
# unlimited), BENCH_BLOB_PAR_SINK=discard|file|both (where the parallel
# reference puts the bytes: dropped (default), or written to a file at
# their offsets as azcopy does, or both, each its own column),
# BENCH_BLOB_SIDECAR=0 (skip the sidecar-like reader), BENCH_BLOB_MOUNT_ARGS (extra mount flags, e.g. "--readahead
# 16"), BENCH_BLOB_BLOCK=1 (a block blob, azurite only), BENCH_BLOB_LOG=FILE
# (the mount's stderr; with BENCH_BLOB_MOUNT_ARGS=--debug the cache's
# figures), BENCH_BLOB_PERF=FILE (`perf record -g` of the mount process
# during its read), BENCH_BLOB_PAR_GET_MIB (the parallel reader's GET size,
# default 8 = the mount's --fetch-size), BENCH_BLOB_PAR_N (its GETs in
# flight, default 16). Run it under `flock /tmp/chestfs-bench.lock` when
# other benchmarks share the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_BLOB_ROUNDS=${1:-${BENCH_BLOB_ROUNDS:-3}}
echo "== $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench '^BenchmarkBlobMount$' -benchtime 1x -timeout 60m -v ./cmd/chestfs/ |
	grep -E 'blobbench_test|^Benchmark|^(ok|FAIL|PASS)' |
	sed -E 's/^ +blobbench_test.go:[0-9]+: //'
