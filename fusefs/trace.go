package fusefs

import (
	"log/slog"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// tracedFS wraps rawFS when Options.Debug or Options.Observe is set; a
// mount with neither serves rawFS directly and pays nothing.
//
// The Debug trace logs (slog, debug level) for every request the
// operation, node IDs, offsets, sizes, the result and the time taken. Never
// names, file data, link targets, directory entries or xattr names and
// values: logs leave the confidential guest (go-fuse's own Debug trace
// prints all of those; see Options.UnsafeTraceContent). The log attributes
// are built only when logging, so an Observe-only mount does not allocate
// per request.
type tracedFS struct {
	*rawFS
	log     bool
	observe func(op string, d time.Duration, n int, err error)
}

// observed reports one finished request to Options.Observe.
func (t *tracedFS) observed(op string, t0 time.Time, st fuse.Status, n int) {
	if t.observe == nil {
		return
	}
	var err error
	if st != fuse.OK {
		err = syscall.Errno(st)
	}
	t.observe(op, time.Since(t0), n, err)
}

// refused traces and observes a write, which the read-only mount answers
// with EROFS.
func (t *tracedFS) refused(name string, node uint64, attrs ...any) {
	if t.log {
		trace(name, node, time.Now(), fuse.EROFS, attrs...)
	}
	t.observed(name, time.Now(), fuse.EROFS, 0)
}

// op runs one operation without attributes of its own, traced and observed.
func (t *tracedFS) op(name string, node uint64, f func() fuse.Status) fuse.Status {
	t0 := time.Now()
	st := f()
	if t.log {
		trace(name, node, t0, st)
	}
	t.observed(name, t0, st, 0)
	return st
}

func trace(op string, node uint64, t0 time.Time, st fuse.Status, attrs ...any) {
	res := "OK"
	if st != fuse.OK {
		res = unix.ErrnoName(syscall.Errno(st))
		if res == "" {
			res = st.String()
		}
	}
	slog.Debug("fuse", append([]any{"op", op, "node", node, "status", res, "dur", time.Since(t0)}, attrs...)...)
}

func (t *tracedFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.Lookup(cancel, h, name, out)
	if t.log {
		trace("lookup", h.NodeId, t0, st, "entry", out.NodeId)
	}
	t.observed("lookup", t0, st, 0)
	return st
}

func (t *tracedFS) Forget(nodeid, nlookup uint64) {
	t0 := time.Now()
	t.rawFS.Forget(nodeid, nlookup)
	if t.log {
		trace("forget", nodeid, t0, fuse.OK, "nlookup", nlookup)
	}
	t.observed("forget", t0, fuse.OK, 0)
}

func (t *tracedFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.GetAttr(cancel, in, out)
	if t.log {
		trace("getattr", in.NodeId, t0, st, "size", out.Size)
	}
	t.observed("getattr", t0, st, 0)
	return st
}

func (t *tracedFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.Statx(cancel, in, out)
	if t.log {
		trace("statx", in.NodeId, t0, st, "size", out.Size)
	}
	t.observed("statx", t0, st, 0)
	return st
}

func (t *tracedFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.Access(cancel, in)
	if t.log {
		trace("access", in.NodeId, t0, st, "mask", in.Mask)
	}
	t.observed("access", t0, st, 0)
	return st
}

func (t *tracedFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	t0 := time.Now()
	target, st := t.rawFS.Readlink(cancel, h)
	if t.log {
		trace("readlink", h.NodeId, t0, st, "size", len(target))
	}
	t.observed("readlink", t0, st, 0)
	return target, st
}

func (t *tracedFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.Open(cancel, in, out)
	if t.log {
		trace("open", in.NodeId, t0, st, "flags", in.Flags)
	}
	t.observed("open", t0, st, 0)
	return st
}

func (t *tracedFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	t0 := time.Now()
	res, st := t.rawFS.Read(cancel, in, buf)
	n := 0
	if res != nil {
		n = res.Size()
	}
	if t.log {
		trace("read", in.NodeId, t0, st, "off", in.Offset, "size", in.Size, "n", n)
	}
	t.observed("read", t0, st, n)
	return res, st
}

func (t *tracedFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	t0 := time.Now()
	t.rawFS.Release(cancel, in)
	if t.log {
		trace("release", in.NodeId, t0, fuse.OK)
	}
	t.observed("release", t0, fuse.OK, 0)
}

func (t *tracedFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return t.op("flush", in.NodeId, func() fuse.Status { return t.rawFS.Flush(cancel, in) })
}

func (t *tracedFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return t.op("fsync", in.NodeId, func() fuse.Status { return t.rawFS.Fsync(cancel, in) })
}

func (t *tracedFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return t.op("fsyncdir", in.NodeId, func() fuse.Status { return t.rawFS.FsyncDir(cancel, in) })
}

func (t *tracedFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.OpenDir(cancel, in, out)
	if t.log {
		trace("opendir", in.NodeId, t0, st, "fh", out.Fh)
	}
	t.observed("opendir", t0, st, 0)
	return st
}

func (t *tracedFS) ReleaseDir(in *fuse.ReleaseIn) {
	t0 := time.Now()
	t.rawFS.ReleaseDir(in)
	if t.log {
		trace("releasedir", in.NodeId, t0, fuse.OK, "fh", in.Fh)
	}
	t.observed("releasedir", t0, fuse.OK, 0)
}

func (t *tracedFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.ReadDir(cancel, in, out)
	if t.log {
		trace("readdir", in.NodeId, t0, st, "off", in.Offset, "size", in.Size)
	}
	t.observed("readdir", t0, st, 0)
	return st
}

func (t *tracedFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.ReadDirPlus(cancel, in, out)
	if t.log {
		trace("readdirplus", in.NodeId, t0, st, "off", in.Offset, "size", in.Size)
	}
	t.observed("readdirplus", t0, st, 0)
	return st
}

func (t *tracedFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return t.op("statfs", h.NodeId, func() fuse.Status { return t.rawFS.StatFs(cancel, h, out) })
}

func (t *tracedFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	t0 := time.Now()
	n, st := t.rawFS.GetXAttr(cancel, h, attr, dest)
	if t.log {
		trace("getxattr", h.NodeId, t0, st, "size", len(dest), "n", n)
	}
	t.observed("getxattr", t0, st, 0)
	return n, st
}

func (t *tracedFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	t0 := time.Now()
	n, st := t.rawFS.ListXAttr(cancel, h, dest)
	if t.log {
		trace("listxattr", h.NodeId, t0, st, "size", len(dest), "n", n)
	}
	t.observed("listxattr", t0, st, 0)
	return n, st
}

func (t *tracedFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	t0 := time.Now()
	st := t.rawFS.Ioctl(cancel, in, inbuf, out, outbuf)
	if t.log {
		trace("ioctl", in.NodeId, t0, st, "cmd", in.Cmd)
	}
	t.observed("ioctl", t0, st, 0)
	return st
}

// Write requests are answered EROFS by rawFS; the trace shows them by
// operation and node only.

func (t *tracedFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	t.refused("setattr", in.NodeId)
	return t.rawFS.SetAttr(cancel, in, out)
}
func (t *tracedFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	t.refused("mknod", in.NodeId)
	return t.rawFS.Mknod(cancel, in, name, out)
}
func (t *tracedFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	t.refused("mkdir", in.NodeId)
	return t.rawFS.Mkdir(cancel, in, name, out)
}
func (t *tracedFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	t.refused("unlink", h.NodeId)
	return t.rawFS.Unlink(cancel, h, name)
}
func (t *tracedFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	t.refused("rmdir", h.NodeId)
	return t.rawFS.Rmdir(cancel, h, name)
}
func (t *tracedFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	t.refused("rename", in.NodeId, "newdir", in.Newdir)
	return t.rawFS.Rename(cancel, in, oldName, newName)
}
func (t *tracedFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	t.refused("link", in.NodeId, "old", in.Oldnodeid)
	return t.rawFS.Link(cancel, in, name, out)
}
func (t *tracedFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	t.refused("symlink", h.NodeId)
	return t.rawFS.Symlink(cancel, h, target, name, out)
}
func (t *tracedFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	t.refused("setxattr", in.NodeId, "size", len(data))
	return t.rawFS.SetXAttr(cancel, in, attr, data)
}
func (t *tracedFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	t.refused("removexattr", h.NodeId)
	return t.rawFS.RemoveXAttr(cancel, h, attr)
}
func (t *tracedFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	t.refused("create", in.NodeId)
	return t.rawFS.Create(cancel, in, name, out)
}
func (t *tracedFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	t.refused("write", in.NodeId, "off", in.Offset, "size", len(data))
	return t.rawFS.Write(cancel, in, data)
}
func (t *tracedFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	t.refused("tmpfile", in.NodeId)
	return t.rawFS.Tmpfile(cancel, in, out)
}
func (t *tracedFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	t.refused("write", in.NodeId, "off", in.Offset, "size", in.Size)
	return t.rawFS.Writev(cancel, in, data)
}
func (t *tracedFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	t.refused("copyfilerange", in.NodeIdOut, "from", in.NodeId, "size", in.Len)
	return t.rawFS.CopyFileRange(cancel, in)
}
func (t *tracedFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	t.refused("fallocate", in.NodeId, "off", in.Offset, "size", in.Length)
	return t.rawFS.Fallocate(cancel, in)
}
