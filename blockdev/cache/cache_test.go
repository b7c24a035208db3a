package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/cache"
)

const chunk = 64 << 10

// slowSource is an in-memory source that counts its reads per chunk, can
// delay them, block them on a gate, or fail them.
type slowSource struct {
	data  []byte
	delay time.Duration
	// gate, when set for a chunk, blocks reads of it until closed.
	gate func(idx int64) chan struct{}
	// fail, when it returns true, fails the read.
	fail func(idx int64, n int) bool

	mu          sync.Mutex
	calls       map[int64]int
	inflight    int
	maxInflight int
	started     atomic.Int64
	returned    atomic.Int64
}

func newSource(size int, seed uint64) *slowSource {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		v := r.Uint64()
		for j := i; j < min(i+8, size); j++ {
			b[j] = byte(v >> (8 * (j - i)))
		}
	}
	return &slowSource{data: b, calls: map[int64]int{}}
}

func (s *slowSource) Size() int64 { return int64(len(s.data)) }

func (s *slowSource) ReadAt(p []byte, off int64) (int, error) {
	return s.read(context.Background(), p, off)
}

func (s *slowSource) read(ctx context.Context, p []byte, off int64) (int, error) {
	idx := off / chunk
	s.started.Add(1)
	defer s.returned.Add(1)
	s.mu.Lock()
	s.calls[idx]++
	n := s.calls[idx]
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	if s.gate != nil {
		if g := s.gate(idx); g != nil {
			select {
			case <-g:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if s.fail != nil && s.fail(idx, n) {
		return 0, errors.New("injected failure")
	}
	return blockdev.Bytes(s.data).ReadAt(p, off)
}

func (s *slowSource) callsOf(idx int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[idx]
}

func (s *slowSource) totalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := 0
	for _, n := range s.calls {
		t += n
	}
	return t
}

// ctxSource is slowSource with cancellable reads.
type ctxSource struct{ *slowSource }

func (s ctxSource) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return s.read(ctx, p, off)
}

var quiet = slog.New(slog.DiscardHandler)

func newCache(t *testing.T, src blockdev.Source, o cache.Options) *cache.Cache {
	o.Logger = quiet
	c := cache.New(src, o)
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond; the deadline is generous, for a loaded machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestReadsMatchSource(t *testing.T) {
	src := newSource(4<<20+12345, 1)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 1 << 20, Readahead: 4})
	if c.Size() != src.Size() {
		t.Fatalf("size %d", c.Size())
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			pos := int64(r.IntN(len(src.data)))
			for range 150 {
				var off int64
				if g%2 == 0 {
					off = pos // sequential readers
				} else {
					off = int64(r.IntN(len(src.data)))
				}
				l := 1 + r.IntN(200<<10)
				if off+int64(l) > src.Size() {
					off, pos = 0, 0
				}
				buf := make([]byte, l)
				n, err := c.ReadAt(buf, off)
				if err != nil || n != l || !bytes.Equal(buf, src.data[off:off+int64(l)]) {
					t.Errorf("ReadAt(%d, %d): %d, %v, equal %v", l, off, n, err, bytes.Equal(buf[:n], src.data[off:off+int64(n)]))
					return
				}
				pos = off + int64(l)
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.Evictions == 0 || st.Hits == 0 || st.Misses == 0 || st.PeakBytes > 1<<20 {
		t.Fatalf("stats %+v", st)
	}
	// io.ReaderAt at the end.
	buf := make([]byte, 100)
	if n, err := c.ReadAt(buf, src.Size()-10); n != 10 || err != io.EOF || !bytes.Equal(buf[:10], src.data[len(src.data)-10:]) {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if n, err := c.ReadAt(buf, src.Size()); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	if _, err := c.ReadAt(buf, -1); err == nil {
		t.Fatal("negative offset accepted")
	}
	if n, err := c.ReadAt(nil, 5); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// Many readers missing one chunk at once cause one fetch.
func TestSingleflight(t *testing.T) {
	src := newSource(1<<20, 2)
	release := make(chan struct{})
	src.gate = func(idx int64) chan struct{} { return release }
	c := newCache(t, src, cache.Options{ChunkSize: chunk, Readahead: -1})
	const readers = 32
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		wg.Go(func() {
			off := int64(3*chunk + i*1000)
			buf := make([]byte, 1000)
			if _, err := c.ReadAt(buf, off); err != nil || !bytes.Equal(buf, src.data[off:off+1000]) {
				errs <- errors.New("wrong data")
			}
		})
	}
	// Hold the one fetch until every reader is waiting on it.
	eventually(t, "all readers waiting", func() bool {
		st := c.Stats()
		return st.Waits+st.Misses == readers
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := src.totalCalls(); n != 1 {
		t.Fatalf("%d source reads, want 1", n)
	}
	if st := c.Stats(); st.Misses != 1 || st.Waits != readers-1 || st.Fetches != 1 || st.BytesFetched != chunk {
		t.Fatalf("stats %+v", st)
	}
	// Now a hit.
	buf := make([]byte, 10)
	c.ReadAt(buf, 3*chunk)
	if st := c.Stats(); st.Hits != 1 || src.totalCalls() != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Memory stays within MaxBytes however hard the cache is pushed.
func TestMemoryBound(t *testing.T) {
	src := newSource(200*chunk, 3)
	src.delay = 200 * time.Microsecond
	const maxBytes = 8 * chunk
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: maxBytes, Readahead: 4, Workers: 4})
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 4))
			for i := range 80 {
				off := int64(r.IntN(len(src.data) - 3*chunk))
				if g%3 == 0 {
					off = int64(i) * chunk / 2 // sequential: readahead on
				}
				l := 1 + r.IntN(3*chunk) // up to four chunks per read
				buf := make([]byte, l)
				if n, err := c.ReadAt(buf, off); err != nil || n != l || !bytes.Equal(buf, src.data[off:off+int64(l)]) {
					t.Errorf("ReadAt(%d, %d): %d, %v", l, off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.PeakBytes > maxBytes || st.MaxBytes != maxBytes || st.Evictions == 0 {
		t.Fatalf("stats %+v", st)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.maxInflight*chunk > maxBytes {
		t.Fatalf("%d fetches in flight at once: more than the memory bound", src.maxInflight)
	}
}

// A sequential reader gets the following chunks fetched before it asks.
func TestReadaheadSequential(t *testing.T) {
	src := newSource(64*chunk, 5)
	src.delay = time.Millisecond
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 4, Workers: 2})
	buf := make([]byte, 16<<10)
	read := func(off int64) {
		t.Helper()
		if n, err := c.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
	}
	// Chunks 0 and 1 in 16 KiB reads, then stop.
	for off := int64(0); off < 2*chunk; off += int64(len(buf)) {
		read(off)
	}
	// Two chunks read in order: a window of four chunks ahead.
	eventually(t, "readahead of chunks 2..5", func() bool {
		return src.callsOf(2) == 1 && src.callsOf(3) == 1 && src.callsOf(4) == 1 && src.callsOf(5) == 1
	})
	if st := c.Stats(); st.Prefetches != 4 || st.Misses != 2 || src.callsOf(6) != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The rest of the file: every chunk is fetched exactly once, and most
	// by readahead.
	for off := int64(2 * chunk); off < src.Size(); off += int64(len(buf)) {
		read(off)
	}
	for idx := int64(0); idx < 64; idx++ {
		if n := src.callsOf(idx); n != 1 {
			t.Fatalf("chunk %d fetched %d times", idx, n)
		}
	}
	st := c.Stats()
	if st.Prefetches == 0 || st.PrefetchHits == 0 || st.Fetches != 64 {
		t.Fatalf("stats %+v", st)
	}
}

// Scattered reads never trigger readahead.
func TestNoReadaheadRandom(t *testing.T) {
	const n = 101 // prime: i*37 mod n visits every chunk, never next to the last 16
	src := newSource(n*chunk, 6)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 256 * chunk, Readahead: 8})
	buf := make([]byte, 4096)
	for i := range n {
		off := int64(i*37%n)*chunk + chunk/2
		if _, err := c.ReadAt(buf, off); err != nil || !bytes.Equal(buf, src.data[off:off+4096]) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	st := c.Stats()
	if st.Prefetches != 0 || st.Misses != n || src.totalCalls() != n {
		t.Fatalf("random reads caused readahead: stats %+v, %d source reads", st, src.totalCalls())
	}
}

// A caller's read is not queued behind readahead that is stuck.
func TestDemandBeforeReadahead(t *testing.T) {
	src := newSource(100*chunk, 7)
	stuck := make(chan struct{})
	defer close(stuck)
	src.gate = func(idx int64) chan struct{} {
		if idx >= 2 && idx < 50 {
			return stuck
		}
		return nil
	}
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 4, Workers: 1})
	buf := make([]byte, chunk)
	for off := int64(0); off < 2*chunk; off += chunk / 2 {
		if _, err := c.ReadAt(buf[:chunk/2], off); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "readahead started", func() bool { return src.callsOf(2) == 1 })
	// The only worker is stuck; a read elsewhere still goes through.
	if n, err := c.ReadAt(buf, 70*chunk); err != nil || n != chunk || !bytes.Equal(buf, src.data[70*chunk:71*chunk]) {
		t.Fatalf("demand read: %d, %v", n, err)
	}
}

// A failed fetch fails its readers and is tried again by the next read.
func TestFetchErrorThenRetry(t *testing.T) {
	src := newSource(16*chunk, 8)
	release := make(chan struct{})
	src.gate = func(idx int64) chan struct{} {
		if idx == 5 && src.callsOf(5) == 1 {
			return release
		}
		return nil
	}
	src.fail = func(idx int64, n int) bool { return idx == 5 && n == 1 }
	c := newCache(t, src, cache.Options{ChunkSize: chunk, Readahead: -1})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Go(func() {
			if _, err := c.ReadAt(make([]byte, 100), 5*chunk+10); err != nil {
				failed.Add(1)
			}
		})
	}
	eventually(t, "readers waiting", func() bool { st := c.Stats(); return st.Waits+st.Misses == 4 })
	close(release)
	wg.Wait()
	if failed.Load() != 4 {
		t.Fatalf("%d of 4 readers failed", failed.Load())
	}
	buf := make([]byte, 100)
	if _, err := c.ReadAt(buf, 5*chunk+10); err != nil || !bytes.Equal(buf, src.data[5*chunk+10:5*chunk+110]) {
		t.Fatalf("read after a failure: %v", err)
	}
	if st := c.Stats(); st.FetchErrors != 1 || src.callsOf(5) != 2 || st.ResidentBytes != chunk {
		t.Fatalf("stats %+v, %d calls", st, src.callsOf(5))
	}
}

// Close with reads in flight against a source that hangs returns at once,
// and every reader gets ErrClosed: a FUSE read must never block an unmount.
func TestCloseWithReadsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cancellable bool
	}{{"uncancellable", false}, {"cancellable", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(64*chunk, 9)
			hang := make(chan struct{})
			t.Cleanup(func() { close(hang) })
			s.gate = func(int64) chan struct{} { return hang }
			var src blockdev.Source = s
			if tc.cancellable {
				src = ctxSource{s}
			}
			// 4 slots: most readers wait for memory, some for fetches, some
			// join a fetch; sequential reads also queue readahead.
			c := cache.New(src, cache.Options{ChunkSize: chunk, MaxBytes: 4 * chunk, Readahead: 2, Logger: quiet})
			const readers = 12
			done := make(chan error, readers)
			for i := range readers {
				go func() {
					off := int64(i%6) * chunk
					_, err := c.ReadAt(make([]byte, 2*chunk), off)
					done <- err
				}()
			}
			eventually(t, "fetches blocked in the source", func() bool { return s.started.Load() >= 4 })
			closed := make(chan struct{})
			go func() {
				c.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("Close hung")
			}
			for range readers {
				select {
				case err := <-done:
					if !errors.Is(err, cache.ErrClosed) {
						t.Fatalf("reader got %v, want ErrClosed", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("a reader is still blocked after Close")
				}
			}
			if tc.cancellable {
				// The source's reads were cancelled, not left hanging.
				eventually(t, "source reads cancelled", func() bool { return s.returned.Load() == s.started.Load() })
			}
			if _, err := c.ReadAt(make([]byte, 1), 0); !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("read after Close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	src := newSource(100, 10)
	c := newCache(t, src, cache.Options{ChunkSize: 1000, MaxBytes: 1})
	st := c.Stats()
	// The chunk is rounded up to 4096 and the cache holds at least 4 chunks.
	if st.MaxBytes != 4*4096 {
		t.Fatalf("MaxBytes %d", st.MaxBytes)
	}
	buf := make([]byte, 100)
	if n, err := c.ReadAt(buf, 0); n != 100 || err != nil || !bytes.Equal(buf, src.data) {
		t.Fatalf("%d, %v", n, err)
	}
	d := newCache(t, src, cache.Options{})
	if st := d.Stats(); st.MaxBytes != cache.DefaultMaxBytes {
		t.Fatalf("default MaxBytes %d", st.MaxBytes)
	}
	empty := newCache(t, blockdev.Bytes(nil), cache.Options{})
	if n, err := empty.ReadAt(buf, 0); n != 0 || err != io.EOF {
		t.Fatalf("empty source: %d, %v", n, err)
	}
}

// Readahead left unread by a stream that stopped does not block the
// readahead of the next stream.
func TestStaleReadaheadReplaced(t *testing.T) {
	src := newSource(200*chunk, 11)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 8 * chunk, Readahead: 4, Workers: 2})
	buf := make([]byte, 16<<10)
	readSeq := func(from, to int64) {
		for off := from * chunk; off < to*chunk; off += int64(len(buf)) {
			if _, err := c.ReadAt(buf, off); err != nil || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
				t.Fatalf("ReadAt(%d): %v", off, err)
			}
		}
	}
	readSeq(0, 4) // stream A: readahead fills half the cache with chunks 4..7, then stops
	eventually(t, "readahead of chunks 4..7", func() bool {
		return src.callsOf(4) == 1 && src.callsOf(5) == 1 && src.callsOf(6) == 1 && src.callsOf(7) == 1
	})
	readSeq(100, 102) // stream B
	eventually(t, "readahead of stream B", func() bool {
		return src.callsOf(102) == 1 && src.callsOf(103) == 1
	})
	if st := c.Stats(); st.PeakBytes > 8*chunk {
		t.Fatalf("stats %+v", st)
	}
}

// Reads that arrive slightly out of order (the kernel's async readahead
// through FUSE) still count as one sequential stream.
func TestReadaheadReordered(t *testing.T) {
	src := newSource(64*chunk, 12)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 4})
	const piece = 16 << 10
	buf := make([]byte, piece)
	// Pairs swapped: 16K, 0, 48K, 32K, ...
	for off := int64(0); off < 2*chunk; off += 2 * piece {
		for _, o := range []int64{off + piece, off} {
			if _, err := c.ReadAt(buf, o); err != nil || !bytes.Equal(buf, src.data[o:o+piece]) {
				t.Fatalf("ReadAt(%d): %v", o, err)
			}
		}
	}
	eventually(t, "readahead of chunk 2", func() bool { return src.callsOf(2) == 1 })
	if st := c.Stats(); st.Prefetches == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkCacheHit is the cost of a 128 KiB read served from memory.
func BenchmarkCacheHit(b *testing.B) {
	src := newSource(16*chunk, 13)
	c := cache.New(src, cache.Options{ChunkSize: chunk, Logger: quiet})
	defer c.Close()
	buf := make([]byte, 128<<10)
	c.ReadAt(buf, 0)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := range b.N {
		c.ReadAt(buf, int64(i%8)*chunk/2)
	}
}

// BenchmarkCacheSequential reads a source with 2 ms per fetch from start to
// end in 128 KiB reads, through the cache (readahead on) and without it.
func BenchmarkCacheSequential(b *testing.B) {
	src := newSource(256*chunk, 14)
	src.delay = 2 * time.Millisecond
	read := func(b *testing.B, r io.ReaderAt) {
		buf := make([]byte, 128<<10)
		for off := int64(0); off < src.Size(); off += int64(len(buf)) {
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
	b.Run("cache", func(b *testing.B) {
		b.SetBytes(src.Size())
		for range b.N {
			c := cache.New(ctxSource{src}, cache.Options{ChunkSize: 1 << 20, Logger: quiet})
			read(b, c)
			c.Close()
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(src.Size())
		for range b.N {
			read(b, src)
		}
	})
}

// A sequential stream reuses the memory of chunks it has read past instead
// of growing the cache, and leaves alone chunks it never passed.
func TestDropBehind(t *testing.T) {
	src := newSource(256*chunk, 11)
	// A fixed window (no growth when the reader outruns the source).
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 128 * chunk, Readahead: 8, MaxReadahead: -1})
	buf := make([]byte, 16<<10)
	// A chunk read at random before the stream, far from it.
	if _, err := c.ReadAt(buf, 200*chunk); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 160*chunk; off += int64(len(buf)) {
		if n, err := c.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
	}
	st := c.Stats()
	// The readahead window (8), the chunk being read, the one of slack
	// behind it, the random chunk, and a few in flight.
	if st.PeakBytes > 24*chunk {
		t.Errorf("peak %d chunks for a 160-chunk stream through a 128-chunk cache: read-past chunks were not reused", st.PeakBytes/chunk)
	}
	before := src.callsOf(200)
	if _, err := c.ReadAt(buf, 200*chunk); err != nil {
		t.Fatal(err)
	}
	if got := src.callsOf(200); got != before {
		t.Errorf("chunk 200 (never passed by the stream) was fetched again")
	}
}

// Readahead stops at the end of the stretch reads say they belong to (a
// file's extent), and goes on when the reads move into the next stretch.
func TestReadaheadStopsAtRunEnd(t *testing.T) {
	src := newSource(128*chunk, 12)
	// Fetches that take a while, as real ones do: with instant ones the
	// reads can outrun the readahead workers' scheduling on a busy machine,
	// and no readahead is ever needed.
	src.delay = time.Millisecond
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 128 * chunk, Readahead: 16})
	buf := make([]byte, 16<<10)
	read := func(from, to, end int64) {
		for off := from; off < to; off += int64(len(buf)) {
			if n, err := c.ReadAtRun(buf, off, end); err != nil || n != len(buf) || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
				t.Fatalf("ReadAtRun(%d, end %d): %d, %v", off, end, n, err)
			}
		}
	}
	read(0, 40*chunk, 40*chunk)
	c.Close() // waits for the workers: nothing is in flight after
	for idx := int64(40); idx < 128; idx++ {
		if n := src.callsOf(idx); n != 0 {
			t.Fatalf("chunk %d, past the run's end at chunk 40, was fetched %d times", idx, n)
		}
	}
	if st := c.Stats(); st.Prefetches == 0 {
		t.Fatalf("no readahead at all within the run: %+v", st)
	}

	// The next stretch, right after: readahead resumes in it.
	c = newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 128 * chunk, Readahead: 16})
	read(0, 20*chunk, 20*chunk)
	read(20*chunk, 60*chunk, 100*chunk)
	// The readahead workers fetch chunk 70 (ahead of the reads, within the
	// second run) in their own time.
	eventually(t, "readahead of chunk 70, within the second run and ahead of the reads", func() bool { return src.callsOf(70) > 0 })
}

// A stream that read to the end of its stretch and jumps to the start of the
// next (a file's next extent) keeps its readahead window.
func TestReadaheadFollowsNextRun(t *testing.T) {
	src := newSource(128*chunk, 13)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 128 * chunk, Readahead: 16})
	buf := make([]byte, 16<<10)
	for off := int64(0); off < 20*chunk; off += int64(len(buf)) {
		if _, err := c.ReadAtRun(buf, off, 20*chunk); err != nil {
			t.Fatal(err)
		}
	}
	// One small read at the start of the next stretch.
	if _, err := c.ReadAtRun(buf, 40*chunk, 100*chunk); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readahead of chunk 50 after the stream moved to the next stretch", func() bool { return src.callsOf(50) > 0 })
}

// One large read (a streaming reader's first) starts readahead at once; the
// kernel's FUSE READs of a large read arrive in any order and are one stream
// that fetches each chunk once.
func TestReadaheadLargeReads(t *testing.T) {
	src := newSource(64*chunk, 14)
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 8})
	buf := make([]byte, chunk)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readahead of chunk 3 after one 1-chunk read", func() bool { return src.callsOf(3) == 1 })
	// Groups of four chunk-sized reads, each group out of order.
	for g := int64(1); g < 12; g++ {
		for _, i := range []int64{2, 0, 3, 1} {
			off := (4*g + i) * chunk
			if _, err := c.ReadAt(buf, off); err != nil || !bytes.Equal(buf, src.data[off:off+chunk]) {
				t.Fatalf("ReadAt(%d): %v", off, err)
			}
		}
	}
	for idx := int64(0); idx < 48; idx++ {
		if n := src.callsOf(idx); n != 1 {
			t.Errorf("chunk %d fetched %d times", idx, n)
		}
	}
}

// A stream that catches up with its readahead still in flight widens the
// window (more requests in flight), up to MaxReadahead; with growth off it
// does not.
func TestReadaheadGrows(t *testing.T) {
	for _, grow := range []bool{true, false} {
		src := newSource(64*chunk, 12)
		var gmu sync.Mutex
		gates := map[int64]chan struct{}{}
		src.gate = func(idx int64) chan struct{} {
			if idx < 2 {
				return nil
			}
			gmu.Lock()
			defer gmu.Unlock()
			if gates[idx] == nil {
				gates[idx] = make(chan struct{})
			}
			return gates[idx]
		}
		maxRA := 6
		if !grow {
			maxRA = -1
		}
		c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 4, MaxReadahead: maxRA})
		buf := make([]byte, chunk)
		// Two chunks in order: a full-grown window of 4, chunks 2..5 in flight.
		for off := int64(0); off < 2*chunk; off += chunk / 2 {
			if _, err := c.ReadAt(buf[:chunk/2], off); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "readahead of chunk 2 started", func() bool { return src.callsOf(2) == 1 })
		done := make(chan error, 1)
		go func() {
			_, err := c.ReadAt(buf, 2*chunk)
			done <- err
		}()
		eventually(t, "the read waits for chunk 2", func() bool { return c.Stats().Waits == 1 })
		st := c.Stats()
		wantGrown, wantRA := int64(1), int64(6)
		if !grow {
			wantGrown, wantRA = 0, 4
		}
		if st.ReadaheadGrown != wantGrown || st.Readahead != wantRA {
			t.Fatalf("grow %v: readahead grown %d times to %d chunks, want %d times to %d", grow, st.ReadaheadGrown, st.Readahead, wantGrown, wantRA)
		}
		gmu.Lock()
		for idx := int64(2); idx < 64; idx++ {
			if gates[idx] == nil {
				gates[idx] = make(chan struct{})
			}
			close(gates[idx])
		}
		gmu.Unlock()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The rest, in order: the window never passes MaxReadahead.
		for off := int64(3 * chunk); off < src.Size(); off += chunk {
			if n, err := c.ReadAt(buf, off); err != nil || n != chunk || !bytes.Equal(buf, src.data[off:off+chunk]) {
				t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
			}
		}
		if st := c.Stats(); st.Readahead > int64(max(4, maxRA)) {
			t.Fatalf("readahead window %d chunks, past the maximum %d", st.Readahead, maxRA)
		}
	}
}
