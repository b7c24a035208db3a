package fusefs

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Lookup and attributes: LOOKUP, FORGET, GETATTR, STATX, ACCESS and the
// FS_IOC_GETFLAGS ioctl.

func setAttr(a *fuse.Attr, st *ext4.Stat, blksize uint32) {
	*a = fuse.Attr{
		Ino:     st.Ino,
		Size:    st.Size,
		Blocks:  st.Blocks,
		Mode:    st.Mode,
		Nlink:   st.Nlink,
		Owner:   fuse.Owner{Uid: st.Uid, Gid: st.Gid},
		Rdev:    st.Rdev,
		Blksize: blksize,
	}
	a.Atime, a.Atimensec = fuseTime(st.Atime)
	a.Mtime, a.Mtimensec = fuseTime(st.Mtime)
	a.Ctime, a.Ctimensec = fuseTime(st.Ctime)
}

// fuseTime splits t into seconds (two's complement for times before 1970,
// which the kernel reads as signed) and nanoseconds.
func fuseTime(t time.Time) (uint64, uint32) {
	if t.IsZero() {
		return 0, 0
	}
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

func (r *rawFS) fillEntry(out *fuse.EntryOut, st *ext4.Stat) {
	out.NodeId = nodeOf(st.Ino)
	out.Generation = uint64(st.Generation)
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	setAttr(&out.Attr, st, r.blockSize)
}

func (r *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.lookups.Add(1)
	dir := inoOf(h.NodeId)
	if len(name) > 255 {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	ino, err := r.fs.Lookup(dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		// A negative entry: node ID 0 with a timeout makes the kernel
		// cache the absence (an ENOENT reply would not be cached).
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(cacheTimeout)
		return fuse.OK
	}
	if err != nil {
		return r.status("lookup", dir, err)
	}
	if ino <= 1 {
		// Inode 1 (bad blocks) is never a directory entry; as node ID it
		// would alias the FUSE root.
		return r.status("lookup", dir, ext4.ErrCorrupt)
	}
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("lookup", ino, err)
	}
	r.fillEntry(out, &st)
	r.nlookupMu.Lock()
	r.nlookup[out.NodeId]++
	r.nlookupMu.Unlock()
	return fuse.OK
}

func (r *rawFS) Forget(nodeid, nlookup uint64) {
	r.nlookupMu.Lock()
	r.forgetLocked(nodeid, nlookup)
	r.nlookupMu.Unlock()
}

func (r *rawFS) forgetLocked(node, n uint64) {
	if c := r.nlookup[node]; c > n {
		r.nlookup[node] = c - n
	} else {
		delete(r.nlookup, node)
	}
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	ino := inoOf(in.NodeId)
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("getattr", ino, err)
	}
	setAttr(&out.Attr, &st, r.blockSize)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	ino := inoOf(in.NodeId)
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("statx", ino, err)
	}
	sx := &out.Statx
	*sx = fuse.Statx{
		Mask:    statxBasicStats,
		Blksize: r.blockSize,
		Nlink:   st.Nlink,
		Uid:     st.Uid,
		Gid:     st.Gid,
		Mode:    uint16(st.Mode),
		Ino:     st.Ino,
		Size:    st.Size,
		Blocks:  st.Blocks,
		// Major/minor as the kernel's new_decode_dev splits a 32-bit dev_t.
		RdevMajor: (st.Rdev & 0xfff00) >> 8,
		RdevMinor: (st.Rdev & 0xff) | ((st.Rdev >> 12) & 0xfff00),
	}
	for _, a := range statxAttrs {
		sx.AttributesMask |= uint64(a.statx)
		if st.Flags&a.ext4 != 0 {
			sx.Attributes |= uint64(a.statx)
		}
	}
	sx.Atime.Sec, sx.Atime.Nsec = fuseTime(st.Atime)
	sx.Mtime.Sec, sx.Mtime.Nsec = fuseTime(st.Mtime)
	sx.Ctime.Sec, sx.Ctime.Nsec = fuseTime(st.Ctime)
	if !st.Btime.IsZero() {
		sx.Mask |= statxBtime
		sx.Btime.Sec, sx.Btime.Nsec = fuseTime(st.Btime)
	}
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	// Only reached without default_permissions; the kernel checks otherwise.
	ino := inoOf(in.NodeId)
	if in.Mask&unix.W_OK != 0 {
		return fuse.EROFS
	}
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("access", ino, err)
	}
	mask := in.Mask & 7
	perm := st.Mode & 7
	switch {
	case in.Uid == 0:
		if mask&unix.X_OK != 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&0o111 == 0 {
			return fuse.EACCES
		}
		return fuse.OK
	case in.Uid == st.Uid:
		perm = (st.Mode >> 6) & 7
	case in.Gid == st.Gid:
		perm = (st.Mode >> 3) & 7
	}
	if perm&mask != mask {
		return fuse.EACCES
	}
	return fuse.OK
}

const (
	fsIocGetFlags   = 0x80086601 // FS_IOC_GETFLAGS (long on 64-bit; the kernel reads an int)
	fsIocGetFlags32 = 0x80046601 // FS_IOC32_GETFLAGS
	// ext4UserVisible is EXT4_FL_USER_VISIBLE: the i_flags lsattr may see.
	ext4UserVisible = 0x725BDFFF
)

// Ioctl answers FS_IOC_GETFLAGS so lsattr shows the inode flags.
func (r *rawFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	if in.Cmd != fsIocGetFlags && in.Cmd != fsIocGetFlags32 {
		return fuse.Status(syscall.ENOTTY)
	}
	ino := inoOf(in.NodeId)
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("ioctl", ino, err)
	}
	if len(outbuf) < 4 {
		return fuse.EINVAL
	}
	binary.NativeEndian.PutUint32(outbuf, st.Flags&ext4UserVisible)
	return fuse.OK
}
