package fusefs

import (
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// File content: OPEN, READ, READLINK and the no-op RELEASE, FLUSH, FSYNC.

func (r *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	ino := inoOf(h.NodeId)
	target, err := r.fs.Readlink(ino)
	if err != nil {
		return nil, r.status("readlink", ino, err)
	}
	return []byte(target), fuse.OK
}

// Open answers a read-only open with ENOSYS: file handles carry no state,
// and the kernel (FUSE_NO_OPEN_SUPPORT) then stops sending OPEN and RELEASE
// for the rest of the mount, opening every file as with FOPEN_KEEP_CACHE.
// That saves a round trip per file opened (a tree read file by file, an
// import). Writing opens never get here on the read-only mount (the VFS
// says EROFS), but should one come, it gets EROFS.
func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.EROFS
	}
	if !r.keepOpen {
		return fuse.ENOSYS
	}
	// KEEP_CACHE: the page cache stays valid across opens (immutable image);
	// NOFLUSH: nothing to flush on close.
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	return fuse.OK
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	ino := inoOf(in.NodeId)
	size := min(int(in.Size), len(buf))
	if in.Offset >= 1<<63 {
		return fuse.ReadResultData(nil), fuse.OK
	}
	if in.Offset == 0 {
		r.sib.read(ino)
	}
	n, err := r.fs.ReadAt(ino, buf[:size], int64(in.Offset))
	if err != nil && err != io.EOF {
		// A short reply would read as end of file (and zero-fill the page
		// cache), so any failure fails the whole request.
		return nil, r.status("read", ino, err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {}

// Flush says ENOSYS: there is nothing to flush, and the kernel then stops
// sending FLUSH on every close (files opened without OPEN, see Open, carry
// no FOPEN_NOFLUSH).
func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }
