package cache_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/procstat"

	"github.com/chestfs/chestfs/blockdev/cache"
)

// A read waits IOTimeout at most for a dead source, then fails with
// ErrTimeout; the fetch goes on, and once the source answers the same read
// succeeds.
func TestIOTimeout(t *testing.T) {
	src := newSource(16*chunk, 31)
	gate := make(chan struct{})
	src.gate = func(int64) chan struct{} { return gate }
	const timeout = 200 * time.Millisecond
	c := newCache(t, ctxSource{src}, cache.Options{ChunkSize: chunk, MaxBytes: 4 * chunk, NoReadahead: true, IOTimeout: timeout})
	buf := make([]byte, 3*chunk) // three chunks: one deadline for the whole read
	start := time.Now()
	_, err := c.ReadAt(buf, chunk/2)
	waited := time.Since(start)
	if !errors.Is(err, cache.ErrTimeout) {
		t.Fatalf("read from a dead source: %v, want ErrTimeout", err)
	}
	// A lower bound only is exact; the upper one is generous for a busy box.
	if waited < timeout || waited > 3*timeout+time.Second {
		t.Fatalf("read waited %v, timeout %v", waited, timeout)
	}
	t.Logf("dead source: ErrTimeout after %v (IOTimeout %v)", waited.Round(time.Millisecond), timeout)

	// Every slot is in flight now: a read of another chunk waits for a
	// slot, also bounded.
	_, err = c.ReadAt(buf[:10], 10*chunk)
	if !errors.Is(err, cache.ErrTimeout) {
		t.Fatalf("read waiting for a slot: %v, want ErrTimeout", err)
	}
	st := c.Stats()
	if st.Timeouts != 2 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
	close(gate)
	n, err := c.ReadAt(buf, chunk/2)
	if err != nil || n != len(buf) || !bytes.Equal(buf, src.data[chunk/2:chunk/2+len(buf)]) {
		t.Fatalf("read after the source came back: %d, %v", n, err)
	}
}

// MaxWaiters: readers beyond the cap fail at once with ErrBusy instead of
// piling up; those already waiting are served when the source answers.
func TestMaxWaiters(t *testing.T) {
	src := newSource(64*chunk, 32)
	gate := make(chan struct{})
	src.gate = func(int64) chan struct{} { return gate }
	c := newCache(t, ctxSource{src}, cache.Options{ChunkSize: chunk, MaxBytes: 8 * chunk, NoReadahead: true, MaxWaiters: 5})
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		wg.Go(func() {
			b := make([]byte, 100)
			_, err := c.ReadAt(b, int64(i)*chunk)
			if err == nil && !bytes.Equal(b, src.data[int64(i)*chunk:int64(i)*chunk+100]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		})
	}
	eventually(t, "5 waiting readers", func() bool { return c.Stats().Waiting == 5 })
	start := time.Now()
	if _, err := c.ReadAt(make([]byte, 1), 40*chunk); !errors.Is(err, cache.ErrBusy) {
		t.Fatalf("sixth reader: %v, want ErrBusy", err)
	}
	t.Logf("sixth reader refused after %v", time.Since(start))
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Busy != 1 || st.PeakWaiting != 5 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// rssBytes is this process's resident set (VmRSS).
func rssBytes(t *testing.T) int64 {
	t.Helper()
	n, err := procstat.Bytes("self", "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// 64 readers, each with a 1 MiB buffer (FUSE's largest read), blocked on a
// dead source: the process grows by less than the cache bound + 64 MiB.
func TestMemoryWithReadersBlocked(t *testing.T) {
	const readers = 64
	src := newSource(256*chunk, 33)
	gate := make(chan struct{})
	src.gate = func(int64) chan struct{} { return gate }
	before := rssBytes(t)
	c := newCache(t, ctxSource{src}, cache.Options{ChunkSize: chunk, MaxBytes: 256 * chunk})
	bound := c.Stats().MaxBytes
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			b := make([]byte, 1<<20)
			for j := range b { // resident, as a FUSE buffer would be
				b[j] = byte(j)
			}
			off := int64(i) * 3 * chunk
			n, err := c.ReadAt(b, off)
			if err != nil || !bytes.Equal(b[:n], src.data[off:off+int64(n)]) {
				t.Errorf("reader %d: %d, %v", i, n, err)
			}
		})
	}
	eventually(t, "readers blocked", func() bool { return c.Stats().Waiting >= readers })
	peak := int64(0)
	for range 5 {
		peak = max(peak, rssBytes(t))
		time.Sleep(20 * time.Millisecond)
	}
	st := c.Stats()
	grown := peak - before
	t.Logf("%d readers blocked (%d waiting, peak %d): RSS grew %.1f MiB; cache bound %.1f MiB",
		readers, st.Waiting, st.PeakWaiting, float64(grown)/(1<<20), float64(bound)/(1<<20))
	if grown > bound+64<<20 {
		t.Errorf("RSS grew by %d bytes, more than the cache bound %d + 64 MiB", grown, bound)
	}
	close(gate)
	wg.Wait()
}
