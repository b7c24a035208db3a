package xts

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParallelMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	key := make([]byte, 64)
	fillRand(rng, key)
	x, err := NewXTS(key, false)
	if err != nil {
		t.Fatal(err)
	}
	cbc, err := New("aes-cbc-essiv:sha256", key[:32])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []SectorCipher{x, cbc} {
		for _, workers := range []int{2, 3, 8} {
			p := Parallel(c, workers)
			for _, size := range []int{0, 4096, 60 << 10, 64 << 10, 100 << 10, 1 << 20, 1<<20 + 3*4096} {
				for _, ss := range []int{512, 4096} {
					src := make([]byte, size)
					fillRand(rng, src)
					iv := rng.Uint64()
					want := make([]byte, size)
					c.EncryptSectors(want, src, ss, iv)
					got := make([]byte, size)
					p.EncryptSectors(got, src, ss, iv)
					if !bytes.Equal(got, want) {
						t.Fatalf("workers=%d size=%d sector=%d: encrypt differs at %d", workers, size, ss, firstDiff(got, want))
					}
					p.DecryptSectors(got, got, ss, iv)
					if !bytes.Equal(got, src) {
						t.Fatalf("workers=%d size=%d sector=%d: in-place round trip failed", workers, size, ss)
					}
				}
			}
		}
	}
}

func TestParallelConcurrentCallers(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 64)
	x, err := NewXTS(key, false)
	if err != nil {
		t.Fatal(err)
	}
	p := Parallel(x, 2)
	src := make([]byte, 256<<10)
	for i := range src {
		src[i] = byte(i)
	}
	want := make([]byte, len(src))
	x.DecryptSectors(want, src, 4096, 1000)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make([]byte, len(src))
			for range 20 {
				p.DecryptSectors(got, src, 4096, 1000)
				if !bytes.Equal(got, want) {
					errs <- "mismatch"
					return
				}
			}
			_ = g
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestParallelWorkersStop checks that the helpers' channel is closed (which
// ends their loops) once the cipher is unreachable.
func TestParallelWorkersStop(t *testing.T) {
	x, err := NewXTS(make([]byte, 64), false)
	if err != nil {
		t.Fatal(err)
	}
	p := Parallel(x, 5)
	buf := make([]byte, 1<<20)
	p.DecryptSectors(buf, buf, 4096, 0)
	tasks := p.(*parallelCipher).tasks
	p = nil
	deadline := time.Now().Add(20 * time.Second)
	for {
		runtime.GC()
		select {
		case _, ok := <-tasks:
			if !ok {
				return // closed
			}
			continue // a stale hand-off; drained
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("helpers' channel still open after the cipher became unreachable")
		}
	}
}

// TestParallelTakeCoversEachChunkOnce: chunks taken from both ends by racing
// goroutines are each handed out exactly once.
func TestParallelTakeCoversEachChunkOnce(t *testing.T) {
	for _, chunks := range []int{1, 2, 7, 64} {
		var task parallelTask
		task.span.Store(uint64(chunks))
		seen := make([]atomic.Int32, chunks)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for {
					i, ok := task.take(g%2 == 1)
					if !ok {
						return
					}
					seen[i].Add(1)
				}
			})
		}
		wg.Wait()
		for i := range seen {
			if n := seen[i].Load(); n != 1 {
				t.Fatalf("%d chunks: chunk %d taken %d times", chunks, i, n)
			}
		}
	}
}
