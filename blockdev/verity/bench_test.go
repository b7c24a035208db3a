//go:build unix

package verity

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's CPU time. openssl speed reports bytes per CPU
// second, so the benchmarks report cpu-MB/s beside the wall-clock MB/s:
// on a shared machine the two differ by the time other processes take.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the cpu-MB/s metric for n bytes processed since c0.
func reportCPU(b *testing.B, c0 time.Duration, n int64) {
	if d := cpuTime() - c0; d > 0 {
		b.ReportMetric(float64(n)/d.Seconds()/1e6, "cpu-MB/s")
	}
}

const benchSize = 64 << 20

var benchImage = sync.OnceValue(func() []byte {
	b := make([]byte, benchSize)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
})

// BenchmarkVerifiedRead measures sequential 1 MiB reads through the tree
// check of an in-memory image: warm (hash blocks cached) and cold (the
// hash block cache emptied before every read), hashing on one goroutine
// (workers=1) and on all (workers=0).
func BenchmarkVerifiedRead(b *testing.B) {
	data := benchImage()
	d, h, _, root := newTree(b, data, FormatOptions{})
	for _, cold := range []bool{false, true} {
		for _, w := range []int{1, 0} {
			name := fmt.Sprintf("warm/workers=%d", w)
			if cold {
				name = fmt.Sprintf("cold/workers=%d", w)
			}
			b.Run(name, func(b *testing.B) {
				defer func(old int) { hashWorkers = old }(hashWorkers)
				hashWorkers = w
				r, err := Open(d, h, 0, root, nil)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 1<<20)
				b.SetBytes(int64(len(buf)))
				off := int64(0)
				c0 := cpuTime()
				for b.Loop() {
					if cold {
						r.cache = newBlockCache(r.g, 16<<20)
					}
					if _, err := r.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					off = (off + int64(len(buf))) % benchSize
				}
				reportCPU(b, c0, int64(b.N)*int64(len(buf)))
			})
		}
	}
}

// BenchmarkSHA256 is crypto/sha256 alone over 4096-byte blocks, the floor
// of the tree check's cost.
func BenchmarkSHA256(b *testing.B) {
	block := benchImage()[:4096]
	b.SetBytes(int64(len(block)))
	c0 := cpuTime()
	for b.Loop() {
		sha256.Sum256(block)
	}
	reportCPU(b, c0, int64(b.N)*int64(len(block)))
}

func BenchmarkFormat(b *testing.B) {
	data := benchImage()
	d := &memFile{b: data}
	b.SetBytes(benchSize)
	c0 := cpuTime()
	for b.Loop() {
		if _, _, err := Format(d, &memFile{}, FormatOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0, int64(b.N)*benchSize)
}
