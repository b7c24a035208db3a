package blobsrc_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
)

// The cache over a blob behind a faulty network: readers see the right
// bytes, the blob's retries show in the cache's statistics.
func TestCacheOverFaultyBlob(t *testing.T) {
	data := imageData(9, 4<<20)
	b, p := faultyBlob(t, data, blobsrc.Options{Retries: 20, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, TryTimeout: 20 * time.Second})
	c := cache.New(b, cache.Options{ChunkSize: 256 << 10, MaxBytes: 2 << 20, Readahead: 4, Logger: slog.New(slog.DiscardHandler)})
	defer c.Close()
	// 12 faults, fewer than the retries: even a request that met them all succeeds.
	plan := []fault{}
	for range 4 {
		plan = append(plan, busy, pass, truncate, pass, drop, pass, pass)
	}
	p.set(time.Millisecond, pass, plan...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			off := int64(0)
			for range 40 {
				l := 1 + r.IntN(200<<10)
				if g%2 == 1 {
					off = int64(r.IntN(len(data) - l))
				}
				if off+int64(l) > int64(len(data)) {
					off = 0
				}
				buf := make([]byte, l)
				if n, err := c.ReadAt(buf, off); err != nil || n != l || !bytes.Equal(buf, data[off:off+int64(l)]) {
					t.Errorf("ReadAt(%d, %d): %d, %v", l, off, n, err)
					return
				}
				off += int64(l)
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.Retries == 0 || st.FetchErrors != 0 || st.Fetches == 0 || st.Prefetches == 0 {
		t.Fatalf("cache stats %+v, blob stats %+v", st, b.Stats())
	}
	if st.Retries != b.Stats().Retries {
		t.Fatalf("cache reports %d retries, blob %d", st.Retries, b.Stats().Retries)
	}
}

// Closing the cache while its fetches hang on the network releases the
// readers and aborts the requests.
func TestCacheCloseDuringStall(t *testing.T) {
	data := imageData(10, 2<<20)
	b, p := faultyBlob(t, data, blobsrc.Options{TryTimeout: time.Minute})
	c := cache.New(b, cache.Options{ChunkSize: 256 << 10, Logger: slog.New(slog.DiscardHandler)})
	p.set(0, stall)
	before := p.reads.Load()
	done := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := c.ReadAt(make([]byte, 4096), int64(i)*(512<<10))
			done <- err
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); p.reads.Load()-before < 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("reads never reached the proxy")
		}
	}
	c.Close()
	for range 4 {
		select {
		case err := <-done:
			if !errors.Is(err, cache.ErrClosed) {
				t.Fatalf("reader got %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("reader blocked after Close")
		}
	}
	// The blob itself is still usable once the network answers.
	p.set(0, pass)
	buf := make([]byte, 100)
	if n, err := b.ReadAt(buf, 1000); (err != nil && err != io.EOF) || n != 100 || !bytes.Equal(buf, data[1000:1100]) {
		t.Fatalf("read after the cache closed: %d, %v", n, err)
	}
}
