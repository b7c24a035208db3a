//go:build !linux

package blockdev

func (f *File) readv(bufs [][]byte, off int64) (int, error) { return f.readLoop(bufs, off) }
