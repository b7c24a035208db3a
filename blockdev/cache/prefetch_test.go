package cache_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/chestfs/chestfs/blockdev/cache"
)

// Prefetch loads the chunks of scattered ranges in one request per run of
// adjacent chunks, waits for them, skips what is loaded, stays within half
// the cache, and later reads of those bytes are hits.
func TestPrefetch(t *testing.T) {
	src := newVecSource(64*chunk, 5)
	c := cache.New(src, cache.Options{ChunkSize: chunk, MaxBytes: 32 * chunk, FetchBytes: 4 * chunk, NoReadahead: true})
	defer c.Close()
	// Chunks 1, 2-4 (two ranges touching), 10, and 20..22 (one range over three chunks).
	ranges := [][2]int64{{chunk + 100, 10}, {2 * chunk, 2 * chunk}, {4*chunk + 5, 1}, {10 * chunk, 1}, {20*chunk + 1, 2 * chunk}}
	n, err := c.Prefetch(ranges)
	if err != nil || n != 8 {
		t.Fatalf("Prefetch: %d chunks, %v; want 8", n, err)
	}
	src.vmu.Lock()
	runs := slices.Clone(src.runs)
	src.vmu.Unlock()
	slices.SortFunc(runs, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	// 1..4 is one run of 4 (FetchBytes), 20..22 one of 3, 10 a single read.
	if want := [][2]int64{{1, 4}, {20, 3}}; !slices.Equal(runs, want) {
		t.Fatalf("vector requests %v, want %v", runs, want)
	}
	if n, _ := c.Prefetch(ranges); n != 0 {
		t.Fatalf("second Prefetch loaded %d chunks, want 0", n)
	}
	before := c.Stats()
	p := make([]byte, 2*chunk)
	if _, err := c.ReadAt(p, 20*chunk+1); err != nil || !bytes.Equal(p, src.data[20*chunk+1:22*chunk+1]) {
		t.Fatalf("read after Prefetch: %v", err)
	}
	if st := c.Stats(); st.Misses != before.Misses || st.Hits != before.Hits+3 {
		t.Fatalf("read after Prefetch: misses %d->%d hits %d->%d, want only 3 hits", before.Misses, st.Misses, before.Hits, st.Hits)
	}
	// At most half the cache: 16 chunks of a 40-chunk range.
	if n, _ := c.Prefetch([][2]int64{{24 * chunk, 40 * chunk}}); n != 16 {
		t.Fatalf("a range larger than the cache: %d chunks loaded, want 16", n)
	}
}
