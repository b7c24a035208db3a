package fusefs

import (
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// cacheTimeout is how long the kernel may trust entries, attributes and
// negative lookups: the image never changes while mounted.
const cacheTimeout = time.Hour

// maxLoggedInodes bounds the set of inodes whose errors were logged, so a
// badly corrupt image cannot grow it without limit.
const maxLoggedInodes = 4096

// filesystem is what rawFS needs from *ext4.FS.
type filesystem interface {
	Stat(ino uint64) (ext4.Stat, error)
	Lookup(dir uint64, name string) (uint64, error)
	ReadDir(dir uint64) ([]ext4.DirEntry, error)
	ReadAt(ino uint64, p []byte, off int64) (int, error)
	Readlink(ino uint64) (string, error)
	ListXattr(ino uint64) ([]string, error)
	GetXattr(ino uint64, name string) ([]byte, error)
	Statfs() ext4.Statfs
	BlockSize() int
}

// rawFS answers FUSE requests from an ext4.FS. Every write path says EROFS.
type rawFS struct {
	fuse.RawFileSystem // ENOSYS for everything not overridden below

	fs        filesystem
	blockSize uint32

	lookups atomic.Int64 // LOOKUP requests served, for tests of the kernel's caching
	nextFh  atomic.Uint64
	dirsMu  sync.Mutex
	dirs    map[uint64]*dirHandle
	logMu   sync.Mutex
	logged  map[uint64]bool
	logFull bool

	// xattrNames caches each inode's xattr names: the kernel does not cache
	// xattrs, so `ls -l` asks for security.selinux (and the ACL) of every
	// entry on every listing, and almost always the answer is "none". The
	// image is immutable, so the names never go stale.
	xattrMu    sync.Mutex
	xattrNames map[uint64][]string

	// nlookup counts, per node, the entries the kernel holds (replies that
	// carried the node ID, minus FORGETs). READDIRPLUS sends no attributes
	// for a node the kernel already has: they cannot have changed, and
	// sending them again would make the kernel drop its cached ACLs (and
	// ask for them once per entry) on every listing.
	nlookupMu sync.Mutex
	nlookup   map[uint64]uint64
}

// maxXattrCache bounds the xattr name cache (about 40 bytes an inode
// without xattrs); when full it starts over.
const maxXattrCache = 1 << 18

func newRawFS(f filesystem) *rawFS {
	return &rawFS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		fs:            f,
		blockSize:     uint32(f.BlockSize()),
		dirs:          map[uint64]*dirHandle{},
		logged:        map[uint64]bool{},
		xattrNames:    map[uint64][]string{},
		nlookup:       map[uint64]uint64{},
	}
}

func (r *rawFS) String() string { return "chestfs" }

// inoOf maps a FUSE node ID to an ext4 inode number.
func inoOf(node uint64) uint64 {
	if node == fuse.FUSE_ROOT_ID {
		return ext4.RootIno
	}
	return node
}

// nodeOf maps an ext4 inode number to a FUSE node ID.
func nodeOf(ino uint64) uint64 {
	if ino == ext4.RootIno {
		return fuse.FUSE_ROOT_ID
	}
	return ino
}

// status maps an ext4 error to an errno; unexpected ones are logged once
// per inode.
func (r *rawFS) status(op string, ino uint64, err error) fuse.Status {
	switch {
	case err == nil:
		return fuse.OK
	case errors.Is(err, fs.ErrNotExist):
		return fuse.ENOENT
	case errors.Is(err, ext4.ErrNoXattr):
		return fuse.ENODATA
	case errors.Is(err, ext4.ErrNotDir):
		return fuse.ENOTDIR
	case errors.Is(err, ext4.ErrIsDir):
		return fuse.EISDIR
	case errors.Is(err, ext4.ErrNotSymlink):
		return fuse.EINVAL
	}
	code := fuse.EIO
	if errors.Is(err, ext4.ErrUnsupported) {
		code = fuse.Status(syscall.EOPNOTSUPP)
	}
	r.logMu.Lock()
	first := !r.logged[ino] && !r.logFull
	if first {
		r.logged[ino] = true
		r.logFull = len(r.logged) >= maxLoggedInodes
	}
	r.logMu.Unlock()
	if first {
		slog.Warn("fusefs: filesystem error", "op", op, "ino", ino, "err", err)
	}
	return code
}

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

// ext4 i_flags that statx reports as attributes, and their STATX_ATTR_* bits.
var statxAttrs = []struct{ ext4, statx uint32 }{
	{0x4, unix.STATX_ATTR_COMPRESSED},  // EXT4_COMPR_FL
	{0x10, unix.STATX_ATTR_IMMUTABLE},  // EXT4_IMMUTABLE_FL
	{0x20, unix.STATX_ATTR_APPEND},     // EXT4_APPEND_FL
	{0x40, unix.STATX_ATTR_NODUMP},     // EXT4_NODUMP_FL
	{0x800, unix.STATX_ATTR_ENCRYPTED}, // EXT4_ENCRYPT_FL
	{0x100000, unix.STATX_ATTR_VERITY}, // EXT4_VERITY_FL
	{0x2000000, unix.STATX_ATTR_DAX},   // EXT4_DAX_FL
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	ino := inoOf(in.NodeId)
	st, err := r.fs.Stat(ino)
	if err != nil {
		return r.status("statx", ino, err)
	}
	sx := &out.Statx
	*sx = fuse.Statx{
		Mask:    unix.STATX_BASIC_STATS,
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
		sx.Mask |= unix.STATX_BTIME
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

func (r *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	ino := inoOf(h.NodeId)
	target, err := r.fs.Readlink(ino)
	if err != nil {
		return nil, r.status("readlink", ino, err)
	}
	return []byte(target), fuse.OK
}

// Open admits read-only opens; file handles carry no state.
func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.EROFS
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
	n, err := r.fs.ReadAt(ino, buf[:size], int64(in.Offset))
	if err != nil && err != io.EOF {
		// A short reply would read as end of file (and zero-fill the page
		// cache), so any failure fails the whole request.
		return nil, r.status("read", ino, err)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {}

func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// dirHandle holds one open directory's listing, loaded on the first READDIR
// and served by offset: entry i (0 ".", 1 "..", then the names) ends at
// offset i+1, so a 100k-entry directory is read from disk once per open.
type dirHandle struct {
	ino    uint64
	once   sync.Once
	parent uint64
	ents   []ext4.DirEntry
	err    error
}

func (d *dirHandle) load(r *rawFS) error {
	d.once.Do(func() {
		d.ents, d.err = r.fs.ReadDir(d.ino)
		if d.err != nil {
			return
		}
		if d.ino == ext4.RootIno {
			d.parent = ext4.RootIno
			return
		}
		// ".." is best effort: FUSE_UNKNOWN_INO goes out when it fails.
		if p, err := r.fs.Lookup(d.ino, ".."); err == nil {
			d.parent = p
		}
	})
	return d.err
}

// entry returns the i-th entry of the listing including "." and "..".
func (d *dirHandle) entry(i uint64) (name string, ino uint64, mode uint32, ok bool) {
	switch {
	case i == 0:
		return ".", d.ino, unix.S_IFDIR, true
	case i == 1:
		return "..", d.parent, unix.S_IFDIR, true
	case i-2 < uint64(len(d.ents)):
		e := &d.ents[i-2]
		return e.Name, e.Ino, uint32(e.Type) << 12, true
	}
	return "", 0, 0, false
}

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ino := inoOf(in.NodeId)
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return fuse.EROFS
	}
	fh := r.nextFh.Add(1)
	r.dirsMu.Lock()
	r.dirs[fh] = &dirHandle{ino: ino}
	r.dirsMu.Unlock()
	out.Fh = fh
	// CACHE_DIR + KEEP_CACHE: the kernel keeps listings in its page cache
	// across opens, which is valid because the image never changes.
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (r *rawFS) dir(fh uint64) *dirHandle {
	r.dirsMu.Lock()
	defer r.dirsMu.Unlock()
	return r.dirs[fh]
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	r.dirsMu.Lock()
	delete(r.dirs, in.Fh)
	r.dirsMu.Unlock()
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	d := r.dir(in.Fh)
	if d == nil {
		return fuse.EBADF
	}
	if err := d.load(r); err != nil {
		return r.status("readdir", d.ino, err)
	}
	for i := in.Offset; ; i++ {
		name, ino, mode, ok := d.entry(i)
		if !ok || !out.AddDirEntry(fuse.DirEntry{Name: name, Ino: ino, Mode: mode, Off: i + 1}) {
			break
		}
	}
	return fuse.OK
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	d := r.dir(in.Fh)
	if d == nil {
		return fuse.EBADF
	}
	if err := d.load(r); err != nil {
		return r.status("readdirplus", d.ino, err)
	}
	for i := in.Offset; ; i++ {
		name, ino, mode, ok := d.entry(i)
		if !ok {
			break
		}
		eo := out.AddDirLookupEntry(fuse.DirEntry{Name: name, Ino: ino, Mode: mode, Off: i + 1})
		if eo == nil {
			break
		}
		// "." and ".." stay without node (the kernel ignores them), as does
		// an entry whose inode cannot be read: its own LOOKUP reports that.
		if i < 2 || ino <= 1 {
			continue
		}
		// Nor does a node the kernel already holds (node ID 0 means "no
		// attributes", not ENOENT): see rawFS.nlookup.
		node := nodeOf(ino)
		r.nlookupMu.Lock()
		known := r.nlookup[node] > 0
		if !known {
			// Counted before the reply goes out, so that a FORGET racing
			// with it cannot be undone by a later increment.
			r.nlookup[node]++
		}
		r.nlookupMu.Unlock()
		if known {
			continue
		}
		st, err := r.fs.Stat(ino)
		if err != nil {
			r.nlookupMu.Lock()
			r.forgetLocked(node, 1)
			r.nlookupMu.Unlock()
			r.status("readdirplus", ino, err)
			continue
		}
		r.fillEntry(eo, &st)
	}
	return fuse.OK
}

func (r *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	s := r.fs.Statfs()
	*out = fuse.StatfsOut{
		Blocks:  s.Blocks,
		Bfree:   s.BFree,
		Bavail:  s.BAvail,
		Files:   s.Files,
		Ffree:   s.FFree,
		Bsize:   s.BlockSize,
		NameLen: s.NameLen,
		Frsize:  s.BlockSize,
	}
	return fuse.OK
}

// copyOut implements the xattr size protocol: an empty buffer asks for the
// size, a short one gets ERANGE with the size needed.
func copyOut(dest, data []byte) (uint32, fuse.Status) {
	if len(dest) == 0 || len(dest) < len(data) {
		return uint32(len(data)), fuse.ERANGE
	}
	return uint32(copy(dest, data)), fuse.OK
}

// xattrList returns ino's xattr names, through the cache.
func (r *rawFS) xattrList(ino uint64) ([]string, error) {
	r.xattrMu.Lock()
	names, ok := r.xattrNames[ino]
	r.xattrMu.Unlock()
	if ok {
		return names, nil
	}
	names, err := r.fs.ListXattr(ino)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{} // cached as "none", distinct from a miss
	}
	r.xattrMu.Lock()
	if len(r.xattrNames) >= maxXattrCache {
		clear(r.xattrNames)
	}
	r.xattrNames[ino] = names
	r.xattrMu.Unlock()
	return names, nil
}

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	ino := inoOf(h.NodeId)
	// A name the inode does not list is answered without reading it again.
	// Should listing fail, GetXattr below reports why.
	if names, err := r.xattrList(ino); err == nil && !slices.Contains(names, attr) {
		return 0, fuse.ENODATA
	}
	data, err := r.fs.GetXattr(ino, attr)
	if err != nil {
		return 0, r.status("getxattr", ino, err)
	}
	if len(data) == 0 {
		return 0, fuse.OK
	}
	return copyOut(dest, data)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	ino := inoOf(h.NodeId)
	names, err := r.xattrList(ino)
	if err != nil {
		return 0, r.status("listxattr", ino, err)
	}
	var b []byte
	for _, n := range names {
		// As ext4 does, list trusted.* only to the privileged.
		if h.Uid != 0 && strings.HasPrefix(n, "trusted.") {
			continue
		}
		b = append(b, n...)
		b = append(b, 0)
	}
	if len(b) == 0 {
		return 0, fuse.OK
	}
	return copyOut(dest, b)
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

// Everything that would change the filesystem fails with EROFS.

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	return fuse.EROFS
}
func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return 0, fuse.EROFS
}
func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	return 0, fuse.EROFS
}
func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	return 0, fuse.EROFS
}
func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return fuse.EROFS
}
