package blockdev

import (
	"errors"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// readv reads bufs at off with preadv, continuing after short reads.
func (f *File) readv(bufs [][]byte, off int64) (int, error) {
	rc, err := f.f.SyscallConn()
	if err != nil {
		return f.readLoop(bufs, off)
	}
	done := 0
	for len(bufs) > 0 {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Preadv(int(fd), bufs, off+int64(done))
			return !errors.Is(rerr, syscall.EAGAIN)
		}); err != nil {
			return done, err
		}
		if errors.Is(rerr, syscall.EINTR) {
			continue
		}
		if rerr != nil {
			return done, rerr
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
		bufs = advance(bufs, n)
	}
	return done, nil
}

// advance drops the first n bytes of bufs.
func advance(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
	}
	return bufs
}
