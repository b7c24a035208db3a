//go:build !linux

package cache

func newArena(slots, chunk int) *arena {
	return &arena{mem: make([]byte, slots*chunk), chunk: chunk}
}
