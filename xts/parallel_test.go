package xts

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync"
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

// TestParallelWorkersStop checks that the helper goroutines end once the
// cipher is unreachable.
func TestParallelWorkersStop(t *testing.T) {
	before := settledGoroutines()
	x, err := NewXTS(make([]byte, 64), false)
	if err != nil {
		t.Fatal(err)
	}
	p := Parallel(x, 5)
	buf := make([]byte, 1<<20)
	p.DecryptSectors(buf, buf, 4096, 0)
	if n := runtime.NumGoroutine(); n < before+4 {
		t.Fatalf("goroutines = %d, want >= %d", n, before+4)
	}
	p = nil
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("worker goroutines still running: %d > %d", runtime.NumGoroutine(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// settledGoroutines collects garbage until helpers of earlier tests' ciphers
// have stopped, then returns the goroutine count.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 200 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return m
		}
		n = m
	}
	return n
}
