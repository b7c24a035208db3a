package fusefs

import (
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
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
	dirs    map[uint64]uint64 // open directory handle -> inode
	listed  listings
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

	// noXattrs: the image holds no xattr at all (scanXattrs), GETXATTR
	// answers ENOSYS. keepOpen answers OPEN (for tests of the handle
	// path) instead of ENOSYS.
	noXattrs atomic.Bool
	keepOpen bool
	// noOpendir: the kernel opens directories without OPENDIR when
	// told ENOSYS (see OpenDir).
	noOpendir atomic.Bool
	// sib pushes the small files of a directory being read (siblings.go)
	// unless noPush.
	sib    siblings
	noPush bool
}

func newRawFS(f filesystem) *rawFS {
	return &rawFS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		fs:            f,
		blockSize:     uint32(f.BlockSize()),
		dirs:          map[uint64]uint64{},
		logged:        map[uint64]bool{},
		xattrNames:    map[uint64][]string{},
		nlookup:       map[uint64]uint64{},
	}
}

func (r *rawFS) String() string { return "chestfs" }

// Init learns what the kernel supports, before any request is served.
func (r *rawFS) Init(s *fuse.Server) {
	r.noOpendir.Store(s.KernelSettings().Flags&capNoOpendir != 0)
	if !r.noPush {
		r.sib.start(r, s)
	}
}

// OnUnmount stops the sibling pusher.
func (r *rawFS) OnUnmount() { r.sib.close() }

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
	case errors.Is(err, ext4.ErrLoop):
		return fuse.Status(syscall.ELOOP)
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
