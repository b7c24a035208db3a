// Package blockdev holds the bottom of the read path: sources of ciphertext
// bytes (a local file, an Azure blob), the chunk cache in front of remote
// sources, and the Volume interface that the LUKS and plain dm-crypt layers
// implement.
package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Source is a fixed-size, random-access byte store. Implementations must be
// safe for concurrent ReadAt calls.
type Source interface {
	io.ReaderAt
	Size() int64
}

// Volume is a plaintext view of an encrypted (or unencrypted) source. ReadAt
// accepts any offset and length, not only whole sectors.
type Volume interface {
	io.ReaderAt
	Size() int64
}

// ErrOutOfRange is returned for reads that start beyond a source's end.
var ErrOutOfRange = errors.New("blockdev: read beyond end of source")

// File is a Source backed by a local file or block device.
type File struct {
	f    *os.File
	size int64
}

// OpenFile opens path read-only. Block devices are sized by seeking to their end.
func OpenFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blockdev: size of %s: %w", path, err)
	}
	return &File{f: f, size: size}, nil
}

func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }
func (f *File) Size() int64                             { return f.size }
func (f *File) Close() error                            { return f.f.Close() }

// Section is the part of a source from Off for N bytes.
type Section struct {
	src Source
	off int64
	n   int64
}

// NewSection returns the n bytes of src from off. It fails when the range does
// not lie within src.
func NewSection(src Source, off, n int64) (*Section, error) {
	if off < 0 || n < 0 || off > src.Size() || n > src.Size()-off {
		return nil, fmt.Errorf("blockdev: section [%d,+%d) outside a source of %d bytes", off, n, src.Size())
	}
	return &Section{src: src, off: off, n: n}, nil
}

func (s *Section) Size() int64 { return s.n }

func (s *Section) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	if off >= s.n {
		if len(p) == 0 && off == s.n {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if max := s.n - off; int64(len(p)) > max {
		p = p[:max]
		eof = io.EOF
	}
	n, err := s.src.ReadAt(p, s.off+off)
	if err == nil {
		err = eof
	}
	return n, err
}

// Bytes is an in-memory Source, for tests and small images.
type Bytes []byte

func (b Bytes) Size() int64 { return int64(len(b)) }

func (b Bytes) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
