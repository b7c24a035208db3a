package cache

// Readahead. Each read is matched to one of a few recent streams by its
// offset: a read that starts from a chunk before to a few chunks past where a
// stream ended continues it (the kernel sends a large read as several FUSE
// READs that arrive in any order). Once a stream has read 256 KiB in order
// (streamStart; a chunk, if less), or with one read of half a chunk or
// more, the chunks after it are queued for the workers: the whole
// window (Readahead chunks) at once for reads that say which stretch they
// belong to (a file's extent), else a window that doubles as the stream
// goes on; topped up a request's worth at a time when the source reads
// several chunks per request (the window split into getsInFlight requests,
// at most Options.FetchBytes each), and never past the end of the stretch
// the reads say they belong to (a file's extent; a stream that reached it follows the next read to the
// next extent). A small read that matches no stream starts a new one, so
// random reads never trigger readahead. Reads by callers (demand) never wait
// behind readahead: they start their own fetch, and the queue is bounded and
// dropped when full or when the cache is short of memory. Chunks a stream
// has read past are the first to give up their memory.

// observe records a read of n bytes at off, within a stretch ending at end
// (0: unknown), and queues readahead. Takes c.mu.
func (c *Cache) observe(off, n, end int64) {
	if c.ra <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return
	}
	c.tick++
	var s *stream
	for i := range c.streams {
		t := &c.streams[i]
		// Reads near a stream's end continue it: the kernel sends one
		// large read as several FUSE READs that arrive in any order.
		if t.tick != 0 && off >= t.end-c.chunk && off <= t.end+streamReach*c.chunk {
			s = t
			break
		}
	}
	if s == nil && end > 0 {
		// A stream that just read to the end of its stretch (a file's
		// extent) and the next read starts elsewhere: most likely the
		// file's next extent, so the stream goes on there with its window
		// rather than starting small.
		for i := range c.streams {
			t := &c.streams[i]
			if t.tick+2 >= c.tick && t.limit > 0 && t.end >= t.limit {
				t.end, t.passed, t.raNext = off, off/c.chunk, off/c.chunk
				s = t
				break
			}
		}
	}
	if s == nil {
		// Replace the least recently used stream.
		s = &c.streams[0]
		for i := range c.streams {
			if c.streams[i].tick < s.tick {
				s = &c.streams[i]
			}
		}
		*s = stream{end: off + n, passed: off / c.chunk, limit: end, tick: c.tick}
		if n < c.chunk/2 {
			return
		}
		// A read of half a chunk or more starts streaming at once: random
		// readers ask for less (4 KiB, or the kernel's 128 KiB readahead).
		s.seq = c.chunk
	} else {
		s.tick = c.tick
		s.limit = end
		if e := off + n; e > s.end {
			if off <= s.end+c.chunk {
				s.seq += e - s.end
			} else {
				// A read that lands chunks ahead counts only its own
				// bytes: by itself it is no evidence of streaming.
				s.seq += n
			}
			s.end = e
		}
	}
	if s.seq < min(c.chunk, streamStart) {
		return
	}
	cur := (s.end - 1) / c.chunk
	c.markBehind(s, cur-behindSlack)
	window := c.window(s)
	from := max(cur+1, s.raNext)
	last := c.nChunks - 1
	if s.limit > 0 {
		// Not past the end of the file's extent the stream is reading.
		last = min(last, (s.limit-1)/c.chunk)
	}
	to := min(cur+window, last)
	// Top the window up a whole request at a time (c.run chunks), so
	// that the workers read ahead in few large requests, not one chunk
	// per read.
	if to-from+1 < min(int64(c.run), window) && to < last {
		return
	}
	for idx := from; idx <= to; idx++ {
		c.enqueue(idx)
	}
	if to >= from {
		s.raNext = to + 1
	}
}

// streamStart: a stream that read this much in order (or a chunk, if
// less) is read ahead. The kernel's own readahead of a file read from its
// start sends 32 KiB, 128 KiB, 256 KiB...: its third read confirms the
// stream; random reads never continue one another.
const streamStart = 256 << 10

// window is how many chunks s reads ahead. c.mu held.
func (c *Cache) window(s *stream) int64 {
	// The whole window at once, as parallel downloaders start all their
	// GETs at t=0: a window that doubled per chunk read cost a streaming
	// reader several round trips of a nearly idle link, a fifth of a
	// 256 MiB read at 500 MB/s. What it may cost, a stream that stops
	// early, is bounded by the end of the extent it reads (s.limit).
	// Readers that catch up with the window may widen it (growReadahead).
	if s.limit <= 0 {
		// Reads that say nothing of their stretch (a filesystem's
		// metadata): the window doubles with the stream's length, 4
		// chunks once a whole chunk was read in order, then 8, ...
		w := min(int64(c.ra), int64(1)<<min(s.seq/c.chunk+1, 30))
		s.full = w == int64(c.ra)
		return w
	}
	s.full = true
	return int64(c.ra)
}

// growReadahead puts more readahead requests in flight: a read had to
// wait for a readahead chunk still in flight, and the window is full
// grown. When each request is slow (a path that caps each TCP stream),
// more of them go faster together; when the link is full, a wider window
// only costs memory, within the cache's bound. c.mu held.
func (c *Cache) growReadahead() {
	if c.ra >= c.raMax {
		return
	}
	full := false
	for i := range c.streams {
		full = full || c.streams[i].full
	}
	if !full {
		// A stream still ramping up: its window is not the limit yet.
		return
	}
	// Doubled: each step is a reader stalled, and a slow path shows
	// itself only after a request's time (8 MiB at 50 MB/s: 170 ms).
	c.ra = min(2*c.ra, c.raMax)
	c.run = c.requestChunks(c.ra)
	c.st.ReadaheadGrown++
	c.log.Debug("cache: more readahead in flight", "window_chunks", c.ra, "request_chunks", c.run)
	for i := range c.streams {
		c.streams[i].full = false
	}
}

// getsInFlight is how many requests a full window keeps in flight, as
// parallel downloaders (azcopy) do: a path that caps each TCP stream (a
// WAN's share per connection) gives each request only so much, and the
// reference of 16 parallel GETs reaches its aggregate.
const getsInFlight = 16

// requestChunks is the size of a readahead request (chunks) for a window
// of ra chunks: the window split into getsInFlight requests, at most
// FetchBytes, at least a quarter of that (a small window is not split into
// a flood of one-chunk GETs). Requests are handed out chunk by chunk as
// their bytes arrive (ProgressVecReaderAt), so their size sets how many
// are in flight, not how long a reader waits.
func (c *Cache) requestChunks(ra int) int {
	return min(max(ra/getsInFlight, c.runMax/4, 1), c.runMax)
}

// behindSlack: chunks this close behind a stream's furthest read are not yet
// read past. The kernel sends a large read as several FUSE READs at once,
// which arrive in any order.
const behindSlack = 8

// streamReach: a read starting up to this many chunks past a stream's end
// still continues it.
const streamReach = 4

// markBehind marks the loaded chunks of s before chunk upto as read past.
// c.mu held.
func (c *Cache) markBehind(s *stream, upto int64) {
	from := max(s.passed, upto-int64(c.slots))
	if from >= upto {
		return
	}
	for idx := from; idx < upto; idx++ {
		if e, ok := c.entries[idx]; ok && e.ready && !e.behind && !e.prefetched {
			e.behind = true
			c.behind++
		}
	}
	// Readahead still queued for chunks the stream has passed is stale:
	// the stream read them already.
	q := c.queue[:0]
	for _, idx := range c.queue {
		if idx < from || idx >= upto {
			q = append(q, idx)
		}
	}
	c.queue = q
	s.passed = max(s.passed, upto)
}

// enqueue adds idx to the readahead queue, dropping the oldest entry when
// the queue is full. c.mu held.
func (c *Cache) enqueue(idx int64) {
	if _, ok := c.entries[idx]; ok {
		return
	}
	for _, q := range c.queue {
		if q == idx {
			return
		}
	}
	if len(c.queue) >= 4*c.ra {
		c.queue = c.queue[1:]
	}
	c.queue = append(c.queue, idx)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// worker fetches queued readahead chunks until Close.
func (c *Cache) worker() {
	for {
		select {
		case <-c.wake:
		case <-c.closed:
			return
		}
		for {
			run := c.nextPrefetch()
			if run == nil {
				break
			}
			c.fetchRun(run)
		}
	}
}

// nextPrefetch takes the next queued chunk that is still missing and for
// which there is room, with up to c.run-1 chunks right after it that are
// queued too (one request for them all); nil when the queue is empty. Takes
// c.mu.
func (c *Cache) nextPrefetch() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var run []*entry
	for len(c.queue) > 0 && !c.isClosed {
		idx := c.queue[0]
		if run != nil && (idx != run[len(run)-1].idx+1 || len(run) >= c.run) {
			break
		}
		c.queue = c.queue[1:]
		if _, ok := c.entries[idx]; ok {
			if run != nil {
				break
			}
			continue
		}
		e := c.newPrefetch(idx)
		if e == nil {
			if run != nil {
				break
			}
			continue
		}
		run = append(run, e)
	}
	if len(c.queue) > 0 {
		// More work: wake another worker too.
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return run
}

// newPrefetch registers a readahead fetch of idx, or returns nil when there
// is no room for it. c.mu held.
func (c *Cache) newPrefetch(idx int64) *entry {
	// Readahead may hold at most half the cache, so that it cannot push
	// out what readers are using; past that, new readahead replaces the
	// oldest unread readahead (a stream that stopped).
	var buf []byte
	ok := false
	if c.pending >= c.slots/2 {
		buf, ok = c.evictStalePrefetch()
	} else {
		buf, ok = c.takeSlot()
	}
	if !ok {
		return nil
	}
	e := c.newEntry(idx, buf)
	e.prefetched = true
	c.pending++
	c.st.Prefetches++
	return e
}

// evictStalePrefetch frees the least recently used loaded readahead chunk
// that nobody has read. c.mu held.
func (c *Cache) evictStalePrefetch() ([]byte, bool) {
	return c.evict(func(e *entry) bool { return e.prefetched })
}

// startAhead starts fetches of the chunks from..to that a multi-chunk read
// will need next, as far as there are free slots (it never waits: the read
// itself waits for its chunks in order). Takes c.mu.
func (c *Cache) startAhead(from, to int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	started := 0
	for idx := from; idx <= to && !c.isClosed && started < c.slots/2; idx++ {
		if _, ok := c.entries[idx]; ok {
			continue
		}
		buf, ok := c.takeSlot()
		if !ok {
			return
		}
		e := c.newEntry(idx, buf)
		started++
		go c.fetch(e)
	}
}
