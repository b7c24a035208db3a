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

// BenchmarkVerifiedRead measures sequential 1 MiB reads of an in-memory
// image through Reader.ReadAt (the source's copy included); BenchmarkTreeCheck
// the check alone (hashing the blocks of 1 MiB and comparing them with the
// tree). warm: the hash blocks are cached; cold: a new Reader for each pass
// over the image, so every hash block is read and verified once per pass;
// nocache: the cache emptied before every read (the worst case). workers=1
// hashes on one goroutine, workers=0 on all CPUs.
func BenchmarkVerifiedRead(b *testing.B) { benchVerified(b, false) }

func BenchmarkTreeCheck(b *testing.B) { benchVerified(b, true) }

func benchVerified(b *testing.B, checkOnly bool) {
	data := benchImage()
	d, h, _, root := newTree(b, data, FormatOptions{})
	for _, mode := range []string{"warm", "cold", "nocache"} {
		for _, w := range []int{1, 0} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode, w), func(b *testing.B) {
				defer func(old int) { hashWorkers = old }(hashWorkers)
				hashWorkers = w
				open := func() *Reader {
					r, err := Open(d, h, 0, root, nil)
					if err != nil {
						b.Fatal(err)
					}
					return r
				}
				r := open()
				if mode != "warm" {
					r = nil
				}
				buf := make([]byte, 1<<20)
				b.SetBytes(int64(len(buf)))
				off := int64(0)
				c0 := cpuTime()
				for b.Loop() {
					switch {
					case r == nil || (mode == "cold" && off == 0):
						r = open()
					case mode == "nocache":
						r.cache = newBlockCache(r.g, 16<<20)
					}
					var err error
					if checkOnly {
						_, err = r.verifyBlocks(data[off:off+int64(len(buf))], uint64(off/4096))
					} else {
						_, err = r.ReadAt(buf, off)
					}
					if err != nil {
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
