package cache_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/cache"
)

// vecSource reads runs of chunks with one request, like the blob source,
// and records each request's chunks.
type vecSource struct {
	*slowSource
	// cut, when set, makes a request of several chunks deliver only its
	// first cut bytes and fail.
	cut int

	vmu  sync.Mutex
	runs [][2]int64 // first chunk and chunk count of each vectored request
	got  map[int64]int
}

func newVecSource(size int, seed uint64) *vecSource {
	return &vecSource{slowSource: newSource(size, seed), got: map[int64]int{}}
}

func (s *vecSource) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	s.vmu.Lock()
	s.got[off/chunk]++
	s.vmu.Unlock()
	return s.read(ctx, p, off)
}

func (s *vecSource) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	s.vmu.Lock()
	s.runs = append(s.runs, [2]int64{off / chunk, int64(len(bufs))})
	s.vmu.Unlock()
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	want, failed := total, error(nil)
	if s.cut > 0 && len(bufs) > 1 && s.cut < total {
		want, failed = s.cut, errors.New("injected cut")
	}
	n := 0
	for _, b := range bufs {
		m := copy(b[:min(len(b), want-n)], s.data[off+int64(n):])
		n += m
		if n == want {
			break
		}
	}
	s.vmu.Lock()
	for i := int64(0); i < int64(n/chunk); i++ {
		s.got[off/chunk+i]++
	}
	s.vmu.Unlock()
	return n, failed
}

// A sequential stream is read ahead in requests of FetchBytes, each chunk
// once.
func TestReadaheadCoalesced(t *testing.T) {
	src := newVecSource(64*chunk, 8)
	src.delay = time.Millisecond
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 256 * chunk, Readahead: 64, FetchBytes: 4 * chunk})
	buf := make([]byte, 16<<10)
	for off := int64(0); off < src.Size(); off += int64(len(buf)) {
		if n, err := c.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
	}
	c.Close() // no readahead in flight from here on
	src.vmu.Lock()
	defer src.vmu.Unlock()
	for idx := int64(0); idx < 64; idx++ {
		if n := src.got[idx]; n != 1 {
			t.Errorf("chunk %d fetched %d times", idx, n)
		}
	}
	multi := 0
	for _, r := range src.runs {
		if r[1] > 4 {
			t.Errorf("a request of %d chunks from %d; FetchBytes allows 4", r[1], r[0])
		}
		if r[1] > 1 {
			multi++
		}
	}
	requests := len(src.runs) + int(c.Stats().Misses)
	if multi == 0 || requests > 32 {
		t.Errorf("%d requests for 64 chunks, %d of several chunks: readahead did not coalesce (runs %v)", requests, multi, src.runs)
	}
}

// A request cut short keeps the chunks it delivered whole and fails the
// rest, which a later read fetches again.
func TestCoalescedCut(t *testing.T) {
	src := newVecSource(64*chunk, 9)
	src.cut = chunk + chunk/2 // the first chunk and half the second
	// Slow reads, so that the reader cannot outrun the readahead workers
	// on a busy machine (the test needs some readahead to cut).
	src.delay = time.Millisecond
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 256 * chunk, Readahead: 64, FetchBytes: 4 * chunk})
	buf := make([]byte, 16<<10)
	for off := int64(0); off < src.Size(); off += int64(len(buf)) {
		if n, err := c.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, src.data[off:off+int64(len(buf))]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
	}
	st := c.Stats()
	c.Close()
	if st.FetchErrors == 0 {
		t.Fatalf("no fetch failed: stats %+v, runs %v", st, src.runs)
	}
	src.vmu.Lock()
	defer src.vmu.Unlock()
	for _, r := range src.runs {
		if r[1] < 2 {
			continue
		}
		// The whole first chunk is kept (fetched once, as the cache holds
		// all 64); the second, cut, was fetched again for the reads.
		if n := src.got[r[0]]; n != 1 {
			t.Errorf("chunk %d, delivered whole by a cut request, fetched %d times (runs %v)", r[0], n, src.runs)
		}
		if src.got[r[0]+1] == 0 {
			t.Errorf("chunk %d, cut, was never fetched whole", r[0]+1)
		}
	}
}

// progSource delivers a request's first chunk, says so, and holds the rest
// until release is closed.
type progSource struct {
	*vecSource
	release chan struct{}
}

func (s *progSource) ReadVecAtProgress(ctx context.Context, bufs [][]byte, off int64, filled func(int64)) (int, error) {
	s.vmu.Lock()
	s.runs = append(s.runs, [2]int64{off / chunk, int64(len(bufs))})
	s.vmu.Unlock()
	n := copy(bufs[0], s.data[off:])
	filled(int64(n))
	select {
	case <-s.release:
	case <-ctx.Done():
		return n, ctx.Err()
	}
	for _, b := range bufs[1:] {
		n += copy(b, s.data[off+int64(n):])
	}
	filled(int64(n))
	return n, nil
}

// A chunk of a request of several is handed out as soon as its bytes are
// in (ProgressVecReaderAt), while the rest of the request is still on its
// way.
func TestProgressChunks(t *testing.T) {
	src := &progSource{vecSource: newVecSource(16*chunk, 10), release: make(chan struct{})}
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 16 * chunk, NoReadahead: true,
		FetchBytes: 4 * chunk, IOTimeout: 20 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := c.Prefetch([][2]int64{{0, 4 * chunk}})
		done <- err
	}()
	eventually(t, "the request started", func() bool {
		src.vmu.Lock()
		defer src.vmu.Unlock()
		return len(src.runs) == 1
	})
	buf := make([]byte, chunk)
	// The request is held: only its first chunk can answer this read.
	if n, err := c.ReadAt(buf, 0); err != nil || n != chunk || !bytes.Equal(buf, src.data[:chunk]) {
		t.Fatalf("ReadAt(0) while the request is held: %d, %v", n, err)
	}
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadAt(buf, 3*chunk); err != nil || n != chunk || !bytes.Equal(buf, src.data[3*chunk:4*chunk]) {
		t.Fatalf("ReadAt(3 chunks): %d, %v", n, err)
	}
	src.vmu.Lock()
	defer src.vmu.Unlock()
	if len(src.runs) != 1 || src.runs[0] != [2]int64{0, 4} {
		t.Errorf("requests %v, want one of chunks 0..3", src.runs)
	}
	if st := c.Stats(); st.Fetches != 4 || st.FetchErrors != 0 {
		t.Errorf("stats %+v: want 4 chunks fetched, no errors", st)
	}
}
