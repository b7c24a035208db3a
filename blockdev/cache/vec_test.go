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
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 8, FetchBytes: 4 * chunk})
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
	c := newCache(t, src, cache.Options{ChunkSize: chunk, MaxBytes: 64 * chunk, Readahead: 8, FetchBytes: 4 * chunk})
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
