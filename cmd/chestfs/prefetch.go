package main

import (
	"log/slog"
	"os"
	"time"
)

// noPrefetchEnv, when set, turns the metadata prefetch off (to measure
// what it costs; see BenchmarkBlobMountUp).
const noPrefetchEnv = "CHESTFS_NO_METADATA_PREFETCH"

// prefetchMetadata loads the filesystem's inode tables and directory
// blocks into the chunk cache before a blob is mounted (only then), in two rounds of
// parallel GETs (the tables, then the directory blocks found in them), so
// that a cold file's first byte after the mount is up costs one round trip
// (its data) instead of one per directory level and inode. Best effort: a
// failure only leaves the lookups to fetch what they need. It does nothing
// without a cache (a local file) or when the volume's place in the source
// is unknown.
func (o *opened) prefetchMetadata() {
	if o.cache == nil || o.fs == nil || o.blob == nil || os.Getenv(noPrefetchEnv) != "" {
		return
	}
	var base int64
	if o.encrypted() {
		v, ok := o.vol.(interface{ Offset() int64 })
		if !ok {
			return
		}
		base = v.Offset()
	}
	shift := func(rs [][2]int64) [][2]int64 {
		for i := range rs {
			rs[i][0] += base
		}
		return rs
	}
	t0 := time.Now()
	// The cache loads at most half of itself; the directory scan stops at
	// a quarter of it.
	limit := o.cache.Stats().MaxBytes / 4
	n1, err1 := o.cache.Prefetch(shift(o.fs.InodeTableRanges()))
	dirs, err2 := o.fs.DirectoryRanges(limit)
	n2, err3 := o.cache.Prefetch(shift(dirs))
	slog.Debug("metadata prefetched", "inode_table_chunks", n1, "directory_chunks", n2, "took", time.Since(t0),
		"errors", errorsOf(err1, err2, err3))
}

func errorsOf(errs ...error) []string {
	var out []string
	for _, e := range errs {
		if e != nil {
			out = append(out, e.Error())
		}
	}
	return out
}
