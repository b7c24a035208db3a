// Package cache puts a bounded chunk cache in front of a slow
// blockdev.Source (an Azure blob): concurrent misses of one chunk share one
// fetch, sequential streams are read ahead in parallel, and no lock is held
// while the source is read.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/blockdev"
)

// Defaults for Options.
const (
	DefaultChunkSize  = 1 << 20
	DefaultMaxBytes   = 256 << 20
	DefaultReadahead  = 32
	DefaultFetchBytes = 8 << 20
	// sectorAlign: chunks are whole 4096-byte volume sectors.
	sectorAlign = 4096
	// minChunks is the smallest cache, whatever MaxBytes says.
	minChunks = 4
	nStreams  = 16
	// DefaultMaxWaiters: far more readers than an application runs in
	// parallel, few enough that their buffers (FUSE's, up to 1 MiB each)
	// stay bounded when they all hang on a dead source.
	DefaultMaxWaiters = 512
)

// Sentinel errors; test with errors.Is.
var (
	// ErrClosed is returned by reads on (or waiting in) a closed cache.
	ErrClosed = errors.New("cache: closed")
	// ErrTimeout: a read waited Options.IOTimeout for its data.
	ErrTimeout = errors.New("cache: no data within the I/O timeout")
	// ErrBusy: Options.MaxWaiters reads were already waiting for the source.
	ErrBusy = errors.New("cache: too many reads waiting for the source")
)

// ContextReaderAt is a source whose reads can be abandoned; the cache uses it
// (when the source has it) to cancel fetches in flight on Close.
type ContextReaderAt interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// VecReaderAt is a source that reads one run of bytes into several buffers
// with one request; the cache then reads ahead several chunks per request.
type VecReaderAt interface {
	ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error)
}

// ProgressVecReaderAt is a VecReaderAt that also says, while a request's
// body arrives, how many bytes from off are in bufs for good (filled is
// called from the reading goroutine with growing counts): the cache hands
// out each chunk of a large request as soon as it is in.
type ProgressVecReaderAt interface {
	ReadVecAtProgress(ctx context.Context, bufs [][]byte, off int64, filled func(n int64)) (int, error)
}

// Options configures New. Zero values mean the defaults.
type Options struct {
	// ChunkSize is the unit of fetching and caching, rounded up to a
	// multiple of 4096. Default 1 MiB.
	ChunkSize int
	// MaxBytes bounds the memory of chunks, loaded and in flight (at least
	// 4 chunks). Default 256 MiB.
	MaxBytes int64
	// Readahead is how many chunks a sequential stream is read ahead.
	// 0 means DefaultReadahead; at most half the cache.
	Readahead int
	// NoReadahead turns readahead off (so does a negative Readahead).
	NoReadahead bool
	// MaxReadahead is how far the window may grow past Readahead: each
	// time a stream catches up with its readahead still in flight, the
	// window doubles, so more requests are in flight, and a source whose
	// requests are each slow (a blob over a path that caps every TCP
	// stream) keeps up. 0 means a quarter of the cache; at most that;
	// negative: no growth.
	MaxReadahead int
	// Workers fetch readahead chunks in parallel. Default: Readahead.
	Workers int
	// FetchBytes is the most one readahead request reads (whole chunks,
	// at least one) when the source is a VecReaderAt: fewer requests cost
	// the service (and the bill) less, but fewer are in flight. Default
	// 8 MiB: with the default Readahead, four requests stay in flight.
	// Negative: one chunk per request.
	FetchBytes int
	// IOTimeout bounds how long one read waits for its chunks (a fetch in
	// flight, a free slot); then it fails with ErrTimeout while the fetch
	// goes on for later reads. 0 or negative: no bound of the cache's own
	// (the source's deadline, if any, still ends fetches).
	IOTimeout time.Duration
	// MaxWaiters caps the reads waiting for the source at once; more fail
	// at once with ErrBusy, so that readers piling up behind a dead source
	// cannot grow memory without bound. 0 means DefaultMaxWaiters;
	// negative: no cap.
	MaxWaiters int
	// Logger gets the statistics at Close (debug) and failed prefetches.
	Logger *slog.Logger
}

// Stats are the cache's counters.
type Stats struct {
	Hits          int64 // chunk lookups answered from memory
	Waits         int64 // lookups that joined a fetch already in flight
	Misses        int64 // lookups that started a fetch
	Fetches       int64 // source reads completed (demand and readahead)
	Prefetches    int64 // readahead fetches started
	PrefetchHits  int64 // readahead chunks later read
	FetchErrors   int64 // source reads that failed
	BytesFetched  int64
	Evictions     int64
	Retries       int64 // the source's own retries, when it counts them
	ResidentBytes int64 // chunk memory now (loaded and in flight)
	PeakBytes     int64 // its highest value
	MaxBytes      int64 // the bound
	Waiting       int64 // reads waiting for the source now
	PeakWaiting   int64 // its highest value
	Timeouts      int64 // reads that failed with ErrTimeout
	Busy          int64 // reads refused with ErrBusy
	// ReadaheadGrown counts the times readahead put more requests in
	// flight (see Options.MaxReadahead); Readahead is the window now and
	// FetchChunks the readahead request, in chunks.
	ReadaheadGrown int64
	Readahead      int64
	FetchChunks    int64
}

type entry struct {
	idx        int64
	buf        []byte
	done       chan struct{} // closed when the fetch ended
	err        error         // set before done is closed
	ready      bool
	refs       int           // readers using buf: not evictable
	prefetched bool          // fetched by readahead and not yet read
	behind     bool          // a sequential stream has read past it
	elem       *list.Element // in lru while ready
}

type stream struct {
	end    int64 // end of the furthest read
	seq    int64 // bytes read sequentially so far
	raNext int64 // first chunk not yet queued for readahead
	passed int64 // first chunk not yet marked behind
	limit  int64 // where the stretch the last read belongs to ends; 0: unknown
	full   bool  // its window reached c.ra (see growReadahead)
	tick   uint64
}

// Cache is a blockdev.Source over another, safe for concurrent use.
type Cache struct {
	src     blockdev.Source
	ctxSrc  ContextReaderAt
	vecSrc  VecReaderAt
	progSrc ProgressVecReaderAt
	runMax  int // chunks per request (FetchBytes)
	run     int // chunks per readahead request now (requestChunks)
	size    int64
	chunk   int64
	nChunks int64
	slots   int
	ra      int // the readahead window now (chunks): grows up to raMax
	raMax   int
	log     *slog.Logger
	timeout time.Duration
	maxWait int

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	closed chan struct{}

	mu        sync.Mutex
	isClosed  bool
	entries   map[int64]*entry
	lru       *list.List // ready entries, most recent first
	used      int        // entries holding a buffer
	free      [][]byte   // spare chunk buffers
	arena     *arena     // where new chunk buffers come from
	behind    int        // ready entries marked behind
	slotFreed chan struct{}
	pending   int // prefetched entries not yet read
	queue     []int64
	wake      chan struct{}
	streams   [nStreams]stream
	tick      uint64
	st        Stats
}

var (
	_ blockdev.Source    = (*Cache)(nil)
	_ blockdev.RunReader = (*Cache)(nil)
)

// New returns a cache over src. Close it to stop its workers; Close does not
// close src.
func New(src blockdev.Source, o Options) *Cache {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	o.ChunkSize = (o.ChunkSize + sectorAlign - 1) / sectorAlign * sectorAlign
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	switch {
	case o.NoReadahead:
		o.Readahead = 0
	case o.Readahead == 0:
		o.Readahead = DefaultReadahead
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxWaiters == 0 {
		o.MaxWaiters = DefaultMaxWaiters
	}
	c := &Cache{
		timeout:   o.IOTimeout,
		maxWait:   o.MaxWaiters,
		src:       src,
		size:      src.Size(),
		chunk:     int64(o.ChunkSize),
		slots:     int(max(o.MaxBytes/int64(o.ChunkSize), minChunks)),
		log:       o.Logger,
		closed:    make(chan struct{}),
		entries:   make(map[int64]*entry),
		lru:       list.New(),
		slotFreed: make(chan struct{}),
		wake:      make(chan struct{}, 1),
	}
	c.arena = newArena(c.slots, int(c.chunk))
	c.ctxSrc, _ = src.(ContextReaderAt)
	c.vecSrc, _ = src.(VecReaderAt)
	c.progSrc, _ = src.(ProgressVecReaderAt)
	if o.FetchBytes == 0 {
		o.FetchBytes = DefaultFetchBytes
	}
	c.runMax = 1
	if c.vecSrc != nil && o.FetchBytes > 0 {
		c.runMax = max(o.FetchBytes/o.ChunkSize, 1)
	}
	c.nChunks = (c.size + c.chunk - 1) / c.chunk
	c.ra = min(max(o.Readahead, 0), c.slots/2)
	c.raMax = c.ra
	if c.ra > 0 && o.MaxReadahead >= 0 {
		// A quarter of the cache at most: readahead may hold half of it,
		// and a window that fills that evicts its own unread chunks.
		c.raMax = max(c.ra, c.slots/4)
		if o.MaxReadahead > 0 {
			c.raMax = max(c.ra, min(o.MaxReadahead, c.slots/4))
		}
	}
	c.run = c.requestChunks(c.ra)
	c.st.MaxBytes = int64(c.slots) * c.chunk
	c.ctx, c.cancel = context.WithCancel(context.Background())
	workers := o.Workers
	if workers <= 0 {
		workers = c.ra
	}
	if c.ra > 0 {
		// Enough workers for the largest window, a request each.
		workers = max(workers, (c.raMax+c.requestChunks(c.raMax)-1)/c.requestChunks(c.raMax))
		for range max(workers, 1) {
			go c.worker()
		}
	}
	return c
}

// Size is the source's size.
func (c *Cache) Size() int64 { return c.size }

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	s := c.st
	s.Readahead, s.FetchChunks = int64(c.ra), int64(c.run)
	c.mu.Unlock()
	if r, ok := c.src.(interface{ Retries() int64 }); ok {
		s.Retries = r.Retries()
	}
	return s
}

// Close cancels fetches in flight, fails every waiting read with ErrClosed
// and drops the cached data. It does not wait for a source read that cannot
// be cancelled; that read's result is discarded.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.isClosed {
		c.mu.Unlock()
		return nil
	}
	c.isClosed = true
	close(c.closed)
	c.cancel()
	c.entries, c.free, c.queue = map[int64]*entry{}, nil, nil
	c.lru.Init()
	c.used, c.st.ResidentBytes = 0, 0
	c.mu.Unlock()
	s := c.Stats()
	c.log.Debug("cache: closed", "hits", s.Hits, "waits", s.Waits, "misses", s.Misses, "fetches", s.Fetches,
		"prefetches", s.Prefetches, "prefetch_hits", s.PrefetchHits, "fetch_errors", s.FetchErrors,
		"bytes_fetched", s.BytesFetched, "evictions", s.Evictions, "retries", s.Retries, "peak_bytes", s.PeakBytes,
		"readahead_chunks", s.Readahead, "fetch_chunks", s.FetchChunks, "readahead_grown", s.ReadaheadGrown)
	return nil
}

// ReadAt follows io.ReaderAt.
func (c *Cache) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtRun(p, off, 0)
}

// ReadAtRun is ReadAt for a read within a stretch of bytes ending at end (a
// file's extent; see blockdev.RunReader): a stream's readahead stops there.
func (c *Cache) ReadAtRun(p []byte, off, end int64) (int, error) {
	if off < 0 {
		return 0, blockdev.ErrOutOfRange
	}
	select {
	case <-c.closed:
		return 0, ErrClosed
	default:
	}
	if off >= c.size {
		if len(p) == 0 && off == c.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if rest := c.size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	first, last := off/c.chunk, (off+int64(len(p))-1)/c.chunk
	c.observe(off, int64(len(p)), end)
	if last > first {
		// A read over several chunks: fetch them side by side, not one by one.
		c.startAhead(first+1, last)
	}
	var expired <-chan time.Time
	if c.timeout > 0 {
		t := time.NewTimer(c.timeout)
		defer t.Stop()
		expired = t.C
	}
	n := 0
	for idx := first; idx <= last; idx++ {
		e, err := c.acquire(idx, expired)
		if errors.Is(err, syscall.EIO) {
			// Part of the chunk failed its integrity check (a verity
			// mismatch below the cache): read just these bytes around it,
			// so that one bad block fails only the reads that need it.
			m, err := c.readAround(p[n:min(int64(len(p)), (idx+1)*c.chunk-off)], off+int64(n))
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		inner := off + int64(n) - idx*c.chunk
		n += copy(p[n:], e.buf[inner:])
		c.release(e)
	}
	return n, eof
}

// readAround reads p at off straight from the source, uncached.
func (c *Cache) readAround(p []byte, off int64) (int, error) {
	if c.ctxSrc != nil {
		return c.ctxSrc.ReadAtContext(c.ctx, p, off)
	}
	return c.src.ReadAt(p, off)
}

func (c *Cache) chunkLen(idx int64) int64 {
	return min(c.chunk, c.size-idx*c.chunk)
}

// acquire returns the loaded chunk idx, pinned: release it after copying.
// It waits until expired fires at most.
func (c *Cache) acquire(idx int64, expired <-chan time.Time) (*entry, error) {
	c.mu.Lock()
	for {
		if c.isClosed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		e := c.entries[idx]
		if e != nil && e.ready {
			e.refs++
			c.usePrefetched(e)
			c.st.Hits++
			c.lru.MoveToFront(e.elem)
			c.mu.Unlock()
			return e, nil
		}
		// From here on the read waits for the source.
		if c.maxWait > 0 && c.st.Waiting >= int64(c.maxWait) {
			c.st.Busy++
			c.mu.Unlock()
			return nil, fmt.Errorf("%w (%d)", ErrBusy, c.maxWait)
		}
		if e != nil {
			e.refs++
			if e.prefetched {
				// The read caught up with readahead in flight.
				c.growReadahead()
			}
			c.usePrefetched(e)
			c.st.Waits++
			c.addWaiting(1)
			c.mu.Unlock()
			return c.wait(e, expired)
		}
		if buf, ok := c.takeSlot(); ok {
			c.st.Misses++
			e = c.newEntry(idx, buf)
			e.refs = 1
			c.addWaiting(1)
			c.mu.Unlock()
			// The fetch runs apart from the reader, so that Close can
			// release the reader even when the source cannot be interrupted.
			go c.fetch(e)
			return c.wait(e, expired)
		}
		// Every slot is pinned or in flight: wait for one to free up.
		ch := c.slotFreed
		c.addWaiting(1)
		c.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-c.closed:
			err = ErrClosed
		case <-expired:
			err = c.timedOut()
		}
		c.mu.Lock()
		c.addWaiting(-1)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
}

// addWaiting counts reads waiting for the source. c.mu held.
func (c *Cache) addWaiting(d int64) {
	c.st.Waiting += d
	c.st.PeakWaiting = max(c.st.PeakWaiting, c.st.Waiting)
}

// timedOut counts and returns a read's timeout. Takes c.mu.
func (c *Cache) timedOut() error {
	c.mu.Lock()
	c.st.Timeouts++
	c.mu.Unlock()
	return fmt.Errorf("%w (%v)", ErrTimeout, c.timeout)
}

// wait blocks until e's fetch ends, the cache closes or expired fires. e is
// pinned, and counted as waiting.
func (c *Cache) wait(e *entry, expired <-chan time.Time) (*entry, error) {
	var err error
	select {
	case <-e.done:
		err = e.err
	case <-c.closed:
		err = ErrClosed
	case <-expired:
		err = c.timedOut()
	}
	c.mu.Lock()
	c.addWaiting(-1)
	c.mu.Unlock()
	if err != nil {
		if err != ErrClosed {
			c.release(e)
		}
		return nil, err
	}
	return e, nil
}

func (c *Cache) release(e *entry) {
	c.mu.Lock()
	e.refs--
	if e.refs == 0 && e.ready {
		c.signalSlot() // it is evictable now
	}
	c.mu.Unlock()
}

// usePrefetched counts the first read of a readahead chunk. c.mu held.
func (c *Cache) usePrefetched(e *entry) {
	if e.prefetched {
		e.prefetched = false
		c.pending--
		c.st.PrefetchHits++
	}
}

// newEntry registers a fetch of idx into buf. c.mu held.
func (c *Cache) newEntry(idx int64, buf []byte) *entry {
	e := &entry{idx: idx, buf: buf[:c.chunkLen(idx)], done: make(chan struct{})}
	c.entries[idx] = e
	return e
}

// takeSlot returns a buffer for one more chunk: a free slot, else the least
// recently used chunk that nobody reads. c.mu held.
func (c *Cache) takeSlot() ([]byte, bool) {
	// Chunks a sequential stream has read past go first, before the cache
	// grows: the kernel's page cache keeps what a stream read, and memory
	// reused costs no page faults (on a VM a fresh page can cost more than
	// fetching its bytes).
	if c.behind > 0 {
		if b, ok := c.evict(func(e *entry) bool { return e.behind }); ok {
			return b, true
		}
	}
	if c.used < c.slots {
		c.used++
		c.st.ResidentBytes = int64(c.used) * c.chunk
		c.st.PeakBytes = max(c.st.PeakBytes, c.st.ResidentBytes)
		if n := len(c.free); n > 0 {
			b := c.free[n-1]
			c.free = c.free[:n-1]
			return b, true
		}
		return c.arena.slot(c.used - 1), true
	}
	return c.evict(func(*entry) bool { return true })
}

// evict frees the least recently used chunk that nobody reads and that
// evictable accepts, and returns its buffer. c.mu held.
func (c *Cache) evict(evictable func(*entry) bool) ([]byte, bool) {
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*entry)
		if e.refs > 0 || !evictable(e) {
			continue
		}
		c.lru.Remove(el)
		delete(c.entries, e.idx)
		if e.prefetched {
			e.prefetched = false
			c.pending--
		}
		if e.behind {
			e.behind = false
			c.behind--
		}
		c.st.Evictions++
		b := e.buf[:cap(e.buf)]
		e.buf = nil
		return b, true
	}
	return nil, false
}

// dropSlot returns a failed fetch's buffer. c.mu held.
func (c *Cache) dropSlot(b []byte) {
	c.used--
	c.st.ResidentBytes = int64(c.used) * c.chunk
	c.free = append(c.free, b[:cap(b)])
	c.signalSlot()
}

func (c *Cache) signalSlot() {
	close(c.slotFreed)
	c.slotFreed = make(chan struct{})
}

// fetch reads e's chunk from the source, without holding c.mu.
func (c *Cache) fetch(e *entry) {
	off := e.idx * c.chunk
	var n int
	var err error
	if c.ctxSrc != nil {
		n, err = c.ctxSrc.ReadAtContext(c.ctx, e.buf, off)
	} else {
		n, err = c.src.ReadAt(e.buf, off)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finish(e, n, err)
}

// fetchRun reads consecutive chunks with one request of the source (a
// VecReaderAt), without holding c.mu.
func (c *Cache) fetchRun(run []*entry) {
	if len(run) == 1 {
		c.fetch(run[0])
		return
	}
	bufs := make([][]byte, len(run))
	for i, e := range run {
		bufs[i] = e.buf
	}
	var n int
	var err error
	done := 0 // run[:done] are finished
	if c.progSrc != nil {
		// Each chunk is handed out as soon as its bytes are in: a reader
		// waiting for the first chunk of a large request need not wait for
		// the whole request.
		var at int64 // bytes of run[:done]
		n, err = c.progSrc.ReadVecAtProgress(c.ctx, bufs, run[0].idx*c.chunk, func(filled int64) {
			k := done
			for k < len(run) && at+int64(len(run[k].buf)) <= filled {
				at += int64(len(run[k].buf))
				k++
			}
			if k == done {
				return
			}
			c.mu.Lock()
			for ; done < k; done++ {
				c.finish(run[done], len(run[done].buf), nil)
			}
			c.mu.Unlock()
		})
	} else {
		n, err = c.vecSrc.ReadVecAtContext(c.ctx, bufs, run[0].idx*c.chunk)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Every chunk wholly read is good, whatever happened after it.
	for i, e := range run {
		m := min(n, len(e.buf))
		n -= m
		if i >= done {
			c.finish(e, m, err)
		}
	}
}

// finish records the end of e's fetch: n bytes read, err the source's
// error. c.mu held.
func (c *Cache) finish(e *entry, n int, err error) {
	off := e.idx * c.chunk
	if n == len(e.buf) {
		err = nil // io.EOF with a full last chunk is fine
	} else if err == nil {
		err = io.ErrUnexpectedEOF
	}
	defer close(e.done)
	if c.isClosed {
		e.err = ErrClosed
		return
	}
	if err != nil {
		e.err = fmt.Errorf("cache: chunk %d [%d,+%d): %w", e.idx, off, len(e.buf), err)
		c.st.FetchErrors++
		// Forget the chunk, so that a later read tries again.
		delete(c.entries, e.idx)
		if e.prefetched {
			e.prefetched = false
			c.pending--
		}
		c.dropSlot(e.buf)
		e.buf = nil
		return
	}
	c.st.Fetches++
	c.st.BytesFetched += int64(n)
	e.ready = true
	e.elem = c.lru.PushFront(e)
	if e.refs == 0 {
		c.signalSlot()
	}
}
