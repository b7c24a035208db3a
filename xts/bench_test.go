package xts

import (
	"fmt"
	"runtime"
	"testing"
)

func benchSectors(b *testing.B, c SectorCipher, sectorSize, span int, decrypt bool) {
	buf := make([]byte, span)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(span))
	b.ReportAllocs()
	// Keep the goroutine on one thread so the thread's CPU clock is ours;
	// for Parallel count the whole process and leave the caller unlocked,
	// as real callers are (a locked goroutine cannot yield cheaply).
	cpu := processCPU
	if _, parallel := c.(*parallelCipher); !parallel {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu = threadCPU
	}
	iv := uint64(0)
	var n int64
	start := cpu()
	for b.Loop() {
		if decrypt {
			c.DecryptSectors(buf, buf, sectorSize, iv)
		} else {
			c.EncryptSectors(buf, buf, sectorSize, iv)
		}
		iv += uint64(span / 512)
		n++
	}
	if used := cpu() - start; used > 0 && start > 0 {
		// MB per CPU second: for Parallel, the CPU of all the process's threads.
		b.ReportMetric(float64(n)*float64(span)*1e3/float64(used), "cpuMB/s")
	}
}

// benchImpls runs f once per code path (sub-benchmarks generic/aesni/vaes).
func benchImpls(b *testing.B, f func(b *testing.B, x *XTS)) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, name := range implNames() {
		b.Run(name, func(b *testing.B) {
			x, err := NewXTS(key, false)
			if err != nil {
				b.Fatal(err)
			}
			x.setImpl(name)
			f(b, x)
		})
	}
}

// BenchmarkDecryptSectors4K: one goroutine, AES-256-XTS, 1 MiB of 4096-byte sectors per op.
func BenchmarkDecryptSectors4K(b *testing.B) {
	benchImpls(b, func(b *testing.B, x *XTS) { benchSectors(b, x, 4096, 1<<20, true) })
}

// BenchmarkDecryptSectors512: one goroutine, 1 MiB of 512-byte sectors per op.
func BenchmarkDecryptSectors512(b *testing.B) {
	benchImpls(b, func(b *testing.B, x *XTS) { benchSectors(b, x, 512, 1<<20, true) })
}

// BenchmarkEncryptSectors4K: one goroutine, 1 MiB of 4096-byte sectors per op.
func BenchmarkEncryptSectors4K(b *testing.B) {
	benchImpls(b, func(b *testing.B, x *XTS) { benchSectors(b, x, 4096, 1<<20, false) })
}

// BenchmarkDecryptSector4KSingle: one 4096-byte sector per call (the cost of small reads).
func BenchmarkDecryptSector4KSingle(b *testing.B) {
	benchImpls(b, func(b *testing.B, x *XTS) { benchSectors(b, x, 4096, 4096, true) })
}

// BenchmarkParallelDecrypt1M: a 1 MiB span of 4096-byte sectors split across
// 1, 2 and 4 workers by Parallel, on the best code path.
func BenchmarkParallelDecrypt1M(b *testing.B) {
	key := make([]byte, 64)
	x, err := NewXTS(key, false)
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			benchSectors(b, Parallel(x, w), 4096, 1<<20, true)
		})
	}
}

// BenchmarkCBCESSIVDecrypt4K: aes-cbc-essiv:sha256 (LUKS1's usual cipher), 1 MiB of 4096-byte sectors.
func BenchmarkCBCESSIVDecrypt4K(b *testing.B) {
	c, err := New("aes-cbc-essiv:sha256", make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	benchSectors(b, c, 4096, 1<<20, true)
}

// BenchmarkParallelSpan: Parallel on 2 workers versus the calling goroutine
// alone, for spans around the split threshold.
func BenchmarkParallelSpan(b *testing.B) {
	x, err := NewXTS(make([]byte, 64), false)
	if err != nil {
		b.Fatal(err)
	}
	for _, span := range []int{64 << 10, 128 << 10, 256 << 10} {
		for _, w := range []int{1, 2} {
			b.Run(fmt.Sprintf("span=%dK/workers=%d", span>>10, w), func(b *testing.B) {
				benchSectors(b, Parallel(x, w), 4096, span, true)
			})
		}
	}
}
