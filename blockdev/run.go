package blockdev

import "io"

// RunReader is implemented by the layers of the read path that read ahead
// (the cache) and those that pass reads down (volumes): a read that belongs
// to a longer stretch of bytes, such as a file's extent, says where that
// stretch ends, so that readahead stops there instead of fetching bytes no
// reader wants. end <= 0 means unknown.
type RunReader interface {
	ReadAtRun(p []byte, off, end int64) (int, error)
}

// ReadAtRun reads from r, passing end on when r is a RunReader.
func ReadAtRun(r io.ReaderAt, p []byte, off, end int64) (int, error) {
	if rr, ok := r.(RunReader); ok {
		return rr.ReadAtRun(p, off, end)
	}
	return r.ReadAt(p, off)
}
