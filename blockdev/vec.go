package blockdev

import (
	"context"
	"io"
)

// ReadVecAtContext reads one run of the file into several buffers with one
// system call where the platform has preadv: a reader above (the verity
// check, then the chunk cache) reads ahead several chunks at once, and one
// large read lets the kernel do large I/O instead of one request a chunk.
func (f *File) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	n, err := f.readv(bufs, off)
	if err == nil && n < total {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// readLoop is readv without preadv: one ReadAt a buffer.
func (f *File) readLoop(bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		m, err := f.f.ReadAt(b, off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
