package xts

import (
	"runtime"
	"sync"
	"sync/atomic"
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
// and stop when the returned cipher is garbage collected.
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
type parallelTask struct {
	c          SectorCipher
	dst, src   []byte
	sectorSize int
	iv         uint64
	decrypt    bool
	chunk      int          // bytes per chunk, a multiple of sectorSize
	chunks     int32        // number of chunks
	next       atomic.Int32 // next chunk to take
	wg         sync.WaitGroup
}

// work processes chunks until none is left.
func (t *parallelTask) work() {
	for {
		i := t.next.Add(1) - 1
		if i >= t.chunks {
			return
		}
		off := int(i) * t.chunk
		end := min(off+t.chunk, len(t.src))
		iv := t.iv + uint64(off/512)
		if t.decrypt {
			t.c.DecryptSectors(t.dst[off:end], t.src[off:end], t.sectorSize, iv)
		} else {
			t.c.EncryptSectors(t.dst[off:end], t.src[off:end], t.sectorSize, iv)
		}
		t.wg.Done()
	}
}

func parallelWorker(tasks <-chan *parallelTask) {
	for t := range tasks {
		t.work()
	}
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
	t := &parallelTask{c: p.c, dst: dst[:len(src)], src: src, sectorSize: sectorSize, iv: iv,
		decrypt: decrypt, chunk: chunk, chunks: int32((len(src) + chunk - 1) / chunk)}
	t.wg.Add(int(t.chunks))
	for range min(p.workers-1, int(t.chunks)-1) {
		select {
		case p.tasks <- t:
		default: // all helpers busy: the caller does more itself
		}
	}
	t.work()
	t.wg.Wait() // only for chunks a helper has started
}
