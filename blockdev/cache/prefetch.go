package cache

import "sync"

// prefetchParallel bounds the requests Prefetch keeps in flight.
const prefetchParallel = 16

// Prefetch loads the chunks covering ranges ([off, off+n) byte ranges of
// the source) and waits until they are in memory or failed: a mount reads
// the filesystem's metadata this way before it is up, in parallel requests
// (runs of adjacent chunks read with one request when the source can), so
// that lookups later find it in memory. It loads at most half the cache
// (the chunks further on are left out) and evicts nothing that readers
// pinned. It returns the chunks loaded and the first error; a failed chunk
// is simply fetched again by the read that needs it.
func (c *Cache) Prefetch(ranges [][2]int64) (int, error) {
	var runs [][]*entry
	c.mu.Lock()
	budget := c.slots / 2
	for _, r := range ranges {
		if r[1] <= 0 || r[0] < 0 || r[0] >= c.size {
			continue
		}
		first, end := r[0]/c.chunk, (min(r[0]+r[1], c.size)-1)/c.chunk
		for idx := first; idx <= end && budget > 0 && !c.isClosed; idx++ {
			// Loaded, in flight, or taken by an earlier range (ranges
			// sharing a chunk, in any order).
			if _, ok := c.entries[idx]; ok {
				continue
			}
			buf, ok := c.takeSlot()
			if !ok {
				break
			}
			budget--
			e := c.newEntry(idx, buf)
			if k := len(runs) - 1; k >= 0 && len(runs[k]) < c.runMax && runs[k][len(runs[k])-1].idx == idx-1 {
				runs[k] = append(runs[k], e)
			} else {
				runs = append(runs, []*entry{e})
			}
		}
	}
	c.mu.Unlock()

	sem := make(chan struct{}, prefetchParallel)
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.fetchRun(run)
		}()
	}
	wg.Wait()
	n := 0
	var first error
	for _, run := range runs {
		for _, e := range run {
			if e.err != nil {
				if first == nil {
					first = e.err
				}
				continue
			}
			n++
		}
	}
	return n, first
}
