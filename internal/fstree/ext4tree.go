package fstree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/chestfs/chestfs/ext4"
	"golang.org/x/sys/unix"
)

// FromExt4 builds a Tree of what the ext4 parser shows, walking from the
// root inode, in the same shape Snapshot gives for a kernel mount.
func FromExt4(f *ext4.FS) (Tree, error) {
	t := Tree{}
	err := walkExt4(f, t, ".", ext4.RootIno, 0)
	return t, err
}

func walkExt4(f *ext4.FS, t Tree, p string, ino uint64, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%s: too deep", p)
	}
	e, err := Ext4Entry(f, ino)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	e.Path = p
	t[p] = e
	if e.Type() != unix.S_IFDIR {
		return nil
	}
	ents, err := f.ReadDir(ino)
	if err != nil {
		return fmt.Errorf("%s: readdir: %w", p, err)
	}
	for _, d := range ents {
		cp := d.Name
		if p != "." {
			cp = path.Join(p, d.Name)
		}
		if err := walkExt4(f, t, cp, d.Ino, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// Ext4Entry returns one inode's attributes as an Entry (Path unset).
func Ext4Entry(f *ext4.FS, ino uint64) (*Entry, error) {
	st, err := f.Stat(ino)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Size: st.Size, Nlink: st.Nlink,
		Ino: st.Ino, Blocks: st.Blocks, Rdev: uint64(st.Rdev),
		Atime: MakeTS(st.Atime), Mtime: MakeTS(st.Mtime), Ctime: MakeTS(st.Ctime),
	}
	if !st.Btime.IsZero() {
		e.HasBtime = true
		e.Btime = MakeTS(st.Btime)
	}
	switch e.Type() {
	case unix.S_IFLNK:
		if e.Target, err = f.Readlink(ino); err != nil {
			return nil, fmt.Errorf("readlink: %w", err)
		}
	case unix.S_IFREG:
		h := sha256.New()
		buf := make([]byte, min(st.Size+1, 256<<10))
		var off int64
		for {
			n, err := f.ReadAt(ino, buf, off)
			h.Write(buf[:n])
			off += int64(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read at %d: %w", off, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("read at %d: no progress", off)
			}
		}
		if uint64(off) != st.Size {
			return nil, fmt.Errorf("read %d bytes, size %d", off, st.Size)
		}
		e.SHA256 = fmt.Sprintf("%x", h.Sum(nil))
	}
	names, err := f.ListXattr(ino)
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	e.Xattrs = map[string]string{}
	for _, n := range names {
		v, err := f.GetXattr(ino, n)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", n, err)
		}
		e.Xattrs[n] = string(v)
	}
	return e, nil
}
