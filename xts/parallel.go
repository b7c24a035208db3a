package xts

import (
	"runtime"
	"sync/atomic"
	"time"
)

// MinParallelBytes is the smallest run Parallel splits across workers: below
// it the hand-off costs more than it saves. The assembly XTS paths are ~40
// times faster than the portable one, so for them the bar is
// MinParallelBytesFast.
const (
	MinParallelBytes     = 64 << 10
	MinParallelBytesFast = 256 << 10
)

// Smallest chunk handed to a worker, for portable and assembly ciphers: a
// chunk should take well over the few microseconds a wake-up costs.
const (
	minChunk     = 32 << 10
	minChunkFast = 64 << 10
)

// How long an idle helper keeps polling for the next run before it parks,
// and how long a caller polls for its helpers' chunks before it parks: waking
// a parked goroutine takes an OS thread wake-up (tens of microseconds on a
// VM), as long as a whole 1 MiB span takes with VAES. Polling yields the
// processor between polls, so other goroutines still run.
const (
	helperSpin = 50 * time.Microsecond
	callerSpin = 200 * time.Microsecond
)

// Parallel returns a SectorCipher that splits runs of at least
// MinParallelBytes (MinParallelBytesFast for an assembly *XTS) across up to
// workers goroutines, the caller's included; smaller runs stay on the calling
// goroutine. workers <= 0 means runtime.GOMAXPROCS(0).
//
// A run is cut into chunks of whole sectors that the caller and the helpers
// take one at a time. The caller never waits for a chunk no helper has
// started: when helpers are busy (other callers) or not scheduled in time,
// the caller does the work itself and loses only the hand-off. It does wait
// for chunks a helper has started. The helper goroutines are started once
// and stop when the returned cipher is garbage collected; after a run they
// stay awake for helperSpin so that back-to-back runs (sequential reads)
// find them running.
func Parallel(c SectorCipher, workers int) SectorCipher {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers <= 1 {
		return c
	}
	tasks := make(chan *parallelTask, workers-1)
	for range workers - 1 {
		go parallelWorker(tasks)
	}
	p := &parallelCipher{c: c, workers: workers, tasks: tasks, minSpan: MinParallelBytes, minChunk: minChunk}
	if x, ok := c.(*XTS); ok && !x.generic {
		p.minSpan, p.minChunk = MinParallelBytesFast, minChunkFast
	}
	runtime.AddCleanup(p, func(ch chan *parallelTask) { close(ch) }, tasks)
	return p
}

type parallelCipher struct {
	c                 SectorCipher
	workers           int
	tasks             chan *parallelTask
	minSpan, minChunk int
}

// parallelTask is one call's run, shared by the caller and the helpers.
// The caller takes chunks from the front and helpers from the back, so that
// with steady speeds each goroutine gets the same part of a buffer every
// time and finds it in its own core's cache.
type parallelTask struct {
	c          SectorCipher
	dst, src   []byte
	sectorSize int
	iv         uint64
	decrypt    bool
	chunk      int           // bytes per chunk, a multiple of sectorSize
	span       atomic.Uint64 // chunks not yet taken: [front, back) as front<<32 | back
	left       atomic.Int32  // chunks not yet finished
	done       chan struct{} // closed when left reaches 0
}

// take claims the next chunk from the front or the back of the run.
func (t *parallelTask) take(back bool) (int, bool) {
	for {
		old := t.span.Load()
		front, end := uint32(old>>32), uint32(old)
		if front >= end {
			return 0, false
		}
		next, i := old+1<<32, front
		if back {
			next, i = old-1, end-1
		}
		if t.span.CompareAndSwap(old, next) {
			return int(i), true
		}
	}
}

// work processes chunks until none is left.
func (t *parallelTask) work(back bool) {
	for {
		i, ok := t.take(back)
		if !ok {
			return
		}
		off := i * t.chunk
		end := min(off+t.chunk, len(t.src))
		iv := t.iv + uint64(off/512)
		if t.decrypt {
			t.c.DecryptSectors(t.dst[off:end], t.src[off:end], t.sectorSize, iv)
		} else {
			t.c.EncryptSectors(t.dst[off:end], t.src[off:end], t.sectorSize, iv)
		}
		if t.left.Add(-1) == 0 {
			close(t.done)
		}
	}
}

// wait returns once every chunk is finished, polling for callerSpin first.
func (t *parallelTask) wait() {
	if !spin(callerSpin, func() bool { return t.left.Load() == 0 }) {
		<-t.done
	}
}

func parallelWorker(tasks <-chan *parallelTask) {
	for {
		// len is a plain read of the channel's count: polling it takes no
		// lock. If another helper takes the run first, the receive parks.
		spin(helperSpin, func() bool { return len(tasks) > 0 })
		t, ok := <-tasks
		if !ok {
			return
		}
		t.work(true)
	}
}

// spin polls cond for up to d, yielding the processor every 64 polls, and
// reports whether cond became true.
func spin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for i := 1; !cond(); i++ {
		if i%64 == 0 {
			if time.Now().After(deadline) {
				return false
			}
			runtime.Gosched()
		}
	}
	return true
}

func (p *parallelCipher) EncryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	p.crypt(dst, src, sectorSize, firstIV, false)
}

func (p *parallelCipher) DecryptSectors(dst, src []byte, sectorSize int, firstIV uint64) {
	p.crypt(dst, src, sectorSize, firstIV, true)
}

func (p *parallelCipher) crypt(dst, src []byte, sectorSize int, iv uint64, decrypt bool) {
	checkArgs(dst, src, sectorSize)
	if len(src) < p.minSpan {
		if decrypt {
			p.c.DecryptSectors(dst, src, sectorSize, iv)
		} else {
			p.c.EncryptSectors(dst, src, sectorSize, iv)
		}
		return
	}
	// Chunks of at least minChunk, and about four per worker so that work
	// balances when one goroutine runs slower.
	chunk := max(p.minChunk, len(src)/(4*p.workers))
	chunk = (chunk + sectorSize - 1) / sectorSize * sectorSize
	chunks := (len(src) + chunk - 1) / chunk
	t := &parallelTask{c: p.c, dst: dst[:len(src)], src: src, sectorSize: sectorSize, iv: iv,
		decrypt: decrypt, chunk: chunk, done: make(chan struct{})}
	t.span.Store(uint64(chunks))
	t.left.Store(int32(chunks))
	for range min(p.workers-1, chunks-1) {
		select {
		case p.tasks <- t:
		default: // all helpers busy: the caller does more itself
		}
	}
	t.work(false)
	t.wait() // only for chunks a helper has started
}
