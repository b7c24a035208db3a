package cache

// arena hands out the cache's chunk buffers, slot i always at the same
// place, taken from one reservation made at New: untouched slots cost no
// memory, and on Linux the reservation asks for transparent huge pages so
// that filling the cache takes one page fault per 2 MiB instead of per 4 KiB.
type arena struct {
	mem   []byte
	chunk int
}

func (a *arena) slot(i int) []byte {
	return a.mem[i*a.chunk : (i+1)*a.chunk : (i+1)*a.chunk]
}
