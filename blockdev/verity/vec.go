package verity

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// The chunk cache sits above the Reader (blob -> verity -> cache), so that
// each fetched block is hashed once. These two methods let it keep what it
// does with a blob directly: cancel fetches on Close, and read several
// chunks with one request.

type contextReaderAt interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

type vecReaderAt interface {
	ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error)
}

// ReadAtContext is ReadAt, with the data read abandoned when ctx ends (when
// the data source supports it).
func (r *Reader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cr, ok := r.data.(contextReaderAt)
	if !ok || !r.aligned(len(p), off) {
		return r.ReadAt(p, off)
	}
	return r.readVerified(p, off, func() (int, error) { return cr.ReadAtContext(ctx, p, off) })
}

// ReadVecAtContext reads one run of whole data blocks into bufs, with one
// request when the data source reads vectors, and checks every block.
func (r *Reader) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	vr, ok := r.data.(vecReaderAt)
	total := 0
	for _, b := range bufs {
		total += len(b)
		ok = ok && r.aligned(len(b), 0)
	}
	if !ok || !r.aligned(0, off) || off+int64(total) > r.Size() {
		return r.readEach(ctx, bufs, off)
	}
	if n, err := vr.ReadVecAtContext(ctx, bufs, off); n < total {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		for _, b := range bufs {
			clear(b)
		}
		return 0, fmt.Errorf("verity: read data at %d: %w", off, err)
	}
	done := 0
	for i, b := range bufs {
		n, err := r.check(b, off+int64(done))
		done += n
		if err != nil {
			for _, rest := range bufs[i+1:] {
				clear(rest)
			}
			return done, err
		}
	}
	return done, nil
}

// readEach reads the buffers one after the other.
func (r *Reader) readEach(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	done := 0
	for _, b := range bufs {
		n, err := r.ReadAtContext(ctx, b, off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// aligned reports whether n bytes at off are whole data blocks.
func (r *Reader) aligned(n int, off int64) bool {
	bs := int64(r.g.p.DataBlockSize)
	return off%bs == 0 && int64(n)%bs == 0
}

// readVerified runs read (which fills p, whole blocks at off) and checks p.
func (r *Reader) readVerified(p []byte, off int64, read func() (int, error)) (int, error) {
	if off+int64(len(p)) > r.Size() {
		return r.ReadAt(p, off)
	}
	if n, err := read(); n < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		clear(p)
		return 0, fmt.Errorf("verity: read data at %d: %w", off, err)
	}
	return r.check(p, off)
}

// check verifies p, whole data blocks read at off; on a mismatch it keeps
// the good blocks before the bad one and zeroes the rest.
func (r *Reader) check(p []byte, off int64) (int, error) {
	bs := int64(r.g.p.DataBlockSize)
	bad, err := r.verifyBlocks(p, uint64(off/bs))
	if bad < 0 {
		return len(p), nil
	}
	if errors.Is(err, ErrMismatch) {
		r.warn(uint64(off/bs)+uint64(bad), err)
	}
	good := bad * int(bs)
	clear(p[good:])
	return good, fmt.Errorf("verity: %w", err)
}
