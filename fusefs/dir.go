package fusefs

import (
	"container/list"
	"errors"
	"sync"
	"syscall"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR.

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// listing is one directory's entries, loaded once and served by offset:
// entry i (0 ".", 1 "..", then the names) ends at offset i+1.
type listing struct {
	ino    uint64
	once   sync.Once
	parent uint64
	ents   []ext4.DirEntry
	err    error
	// counted is what the listing adds to listings.entries (under its mu).
	counted int
}

func (d *listing) load(r *rawFS) {
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
}

// entry returns the i-th entry of the listing including "." and "..".
func (d *listing) entry(i uint64) (name string, ino uint64, mode uint32, ok bool) {
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

// maxListed bounds the entries the listing cache keeps (about 64 bytes
// each, names included: some 16 MiB). The directory being listed stays
// even when it alone is larger.
const maxListed = 1 << 18

// listings caches directory listings by inode, least recently used out
// first: the image never changes, so a listing read once serves every
// later READDIR of that directory, from any open, also after the kernel
// dropped its own cached copy (drop_caches, memory pressure). A failed
// load is not kept.
type listings struct {
	mu      sync.Mutex
	l       list.List // of *listing, most recent first
	m       map[uint64]*list.Element
	entries int
	max     int // maxListed when 0 (tests lower it)
}

func (c *listings) get(r *rawFS, ino uint64) (*listing, error) {
	c.mu.Lock()
	e, ok := c.m[ino]
	if ok {
		c.l.MoveToFront(e)
	} else {
		if c.m == nil {
			c.m = map[uint64]*list.Element{}
		}
		e = c.l.PushFront(&listing{ino: ino})
		c.m[ino] = e
	}
	c.mu.Unlock()
	d := e.Value.(*listing)
	d.load(r)
	if ok {
		return d, d.err
	}
	// The loader accounts for the entries and evicts.
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.err != nil {
		if c.m[ino] == e {
			c.l.Remove(e)
			delete(c.m, ino)
		}
		return nil, d.err
	}
	if c.m[ino] != e {
		return d, nil // evicted meanwhile
	}
	d.counted = len(d.ents)
	c.entries += d.counted
	limit := c.max
	if limit == 0 {
		limit = maxListed
	}
	for c.entries > limit && c.l.Back() != e {
		old := c.l.Back()
		c.l.Remove(old)
		od := old.Value.(*listing)
		delete(c.m, od.ino)
		c.entries -= od.counted
	}
	return d, nil
}

// OpenDir answers ENOSYS where the kernel supports that (Linux 5.1 and
// later, FUSE_NO_OPENDIR_SUPPORT): it then stops sending OPENDIR and
// RELEASEDIR for the mount and opens every directory with
// FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE, as below; READDIR comes with handle 0
// and is served from the listing cache by node. That saves two round
// trips per directory opened (a tree walk opens every directory once).
func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	ino := inoOf(in.NodeId)
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return fuse.EROFS
	}
	if r.noOpendir.Load() && !r.keepOpen {
		return fuse.ENOSYS
	}
	fh := r.nextFh.Add(1)
	r.dirsMu.Lock()
	r.dirs[fh] = ino
	r.dirsMu.Unlock()
	out.Fh = fh
	// CACHE_DIR + KEEP_CACHE: the kernel keeps listings in its page cache
	// across opens, which is valid because the image never changes.
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

// dir returns the listing a READDIR reads: its handle's directory, or
// with handle 0 (no OPENDIR, see OpenDir) the request's node.
func (r *rawFS) dir(in *fuse.ReadIn) (*listing, error) {
	ino := inoOf(in.NodeId)
	if in.Fh != 0 {
		r.dirsMu.Lock()
		h, ok := r.dirs[in.Fh]
		r.dirsMu.Unlock()
		if !ok {
			return nil, errBadHandle
		}
		ino = h
	}
	return r.listed.get(r, ino)
}

// errBadHandle answers a READDIR on a handle that is not open.
var errBadHandle = errors.New("fusefs: unknown directory handle")

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	r.dirsMu.Lock()
	delete(r.dirs, in.Fh)
	r.dirsMu.Unlock()
}

// dirStatus maps a failed listing to an errno.
func (r *rawFS) dirStatus(op string, in *fuse.ReadIn, err error) fuse.Status {
	if err == errBadHandle {
		return fuse.EBADF
	}
	return r.status(op, inoOf(in.NodeId), err)
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	d, err := r.dir(in)
	if err != nil {
		return r.dirStatus("readdir", in, err)
	}
	r.sib.listed(d)
	for i := in.Offset; ; i++ {
		name, ino, mode, ok := d.entry(i)
		if !ok || !out.AddDirEntry(fuse.DirEntry{Name: name, Ino: ino, Mode: mode, Off: i + 1}) {
			break
		}
	}
	return fuse.OK
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	d, err := r.dir(in)
	if err != nil {
		return r.dirStatus("readdirplus", in, err)
	}
	r.sib.listed(d)
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
