package cache

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// newArena reserves slots*chunk bytes of anonymous memory outside the Go
// heap (no GC scanning, never scavenged while in use). It is unmapped once
// the arena is unreachable: chunk buffers never leave the cache, so no slice
// of it can outlive the arena.
func newArena(slots, chunk int) *arena {
	size := slots * chunk
	mem, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &arena{mem: make([]byte, size), chunk: chunk}
	}
	// Align to a huge page so that every 2 MiB of slots is one huge page.
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&mem[0])) % hugePage); r != 0 {
		skip = hugePage - r
	}
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE) // best effort: THP may be off
	a := &arena{mem: mem[skip : skip+size : skip+size], chunk: chunk}
	runtime.AddCleanup(a, func(m []byte) { unix.Munmap(m) }, mem)
	return a
}
