package fusefs

import (
	"sync"
	"syscall"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR.

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
