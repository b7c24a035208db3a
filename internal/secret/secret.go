// Package secret keeps key material away from where others can read it:
// Harden makes the process undumpable (no core files, no /proc/PID/mem or
// ptrace access by other processes of the same user), and Buffer holds
// secret bytes outside the Go heap, locked in RAM, excluded from core dumps
// and wiped when destroyed.
//
// The Go heap cannot be wiped reliably: the garbage collector moves nothing
// but frees without clearing, and string conversions copy. So a secret is
// read straight into a Buffer and handed on as a []byte view of it, never
// as a string.
package secret

import (
	"errors"
	"math/big"
	"runtime"
	"sync"
)

// ErrDestroyed: the Buffer was used after Destroy.
var ErrDestroyed = errors.New("secret: buffer destroyed")

// Buffer is secret memory of a fixed length. It is not safe for
// concurrent Destroy and use. The zero Buffer is empty.
type Buffer struct {
	mu  sync.Mutex
	mem []byte // the whole mapping (page multiple) or heap slice
	n   int
	// mapped says mem is an mmap'd region (else heap fallback).
	mapped bool
}

// New returns a zeroed Buffer of n bytes. The caller must Destroy it.
func New(n int) (*Buffer, error) {
	if n < 0 {
		return nil, errors.New("secret: negative length")
	}
	b := &Buffer{n: n}
	if n == 0 {
		return b, nil
	}
	// No finalizer: a Bytes view does not keep b alive, and unmapping
	// under a live view would crash. Forgetting Destroy leaks, wiped never.
	if err := b.alloc(n); err != nil {
		return nil, err
	}
	return b, nil
}

// FromBytes copies src into a new Buffer and wipes src.
func FromBytes(src []byte) (*Buffer, error) {
	b, err := New(len(src))
	if err != nil {
		Wipe(src)
		return nil, err
	}
	copy(b.Bytes(), src)
	Wipe(src)
	return b, nil
}

// Bytes is the secret: a view valid until Destroy. Do not convert it to a
// string or append to it (either copies it to the heap).
func (b *Buffer) Bytes() []byte {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return nil
	}
	return b.mem[:b.n:b.n]
}

// Len is the secret's length (0 after Destroy).
func (b *Buffer) Len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return 0
	}
	return b.n
}

// Destroy wipes the secret and releases its memory. Safe to call twice.
func (b *Buffer) Destroy() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return
	}
	Wipe(b.mem)
	b.free()
	b.mem = nil
}

// Wipe zeroes p in a way the compiler keeps.
func Wipe(p []byte) {
	clear(p)
	runtime.KeepAlive(p)
}

// WipeBigInt zeroes the words of x in place and sets it to 0. Copies made
// earlier by math/big (intermediate results, x.Bytes()) are out of reach.
func WipeBigInt(x *big.Int) {
	if x == nil {
		return
	}
	w := x.Bits()
	w = w[:cap(w)]
	clear(w)
	runtime.KeepAlive(w)
	x.SetInt64(0)
}
