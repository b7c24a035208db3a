package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/sysabi"
)

// mkfs.ext4 -d (e2fsprogs 1.47.0) gives the root directory its own mode,
// owner and times instead of DIR's, stores whole seconds only (before
// 1.47.1), and copies every owner as lstat reports it. The few inode fields
// to change afterwards are patched in place in the freshly made image: the
// ext4 reader resolves the tree and locates each inode, and ext4.PatchInode
// sets the fields and redoes the checksum.

// maxDepth bounds the walk (ext4 directories cannot form cycles, but the
// recursion should not depend on that).
const maxDepth = 4096

// fixInodes gives the root directory DIR's mode, owner and times, every
// inode DIR's nanosecond atime and mtime, and maps all owners when owner is
// set. path is the ext4 image of size bytes.
func fixInodes(ctx context.Context, path string, size int64, dir string, dirInfo os.FileInfo, owner *[2]uint32) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	defer f.Close()
	if err := patchTree(ctx, f, size, dir, dirInfo, owner); err != nil {
		return err
	}
	return f.Close()
}

// imageFile is the ext4 image being patched.
type imageFile interface {
	io.ReaderAt
	io.WriterAt
}

// patcher walks the new file system beside DIR.
type patcher struct {
	ctx     context.Context
	img     imageFile
	fs      *ext4.FS
	owner   *[2]uint32 // for every inode, when set
	visited int
}

// patchTree applies fixInodes' changes to the image in img.
func patchTree(ctx context.Context, img imageFile, size int64, dir string, dirInfo os.FileInfo, owner *[2]uint32) error {
	fsys, err := ext4.Open(img, size)
	if err != nil {
		return fmt.Errorf("pack: reading the new file system: %w", err)
	}
	p := &patcher{ctx: ctx, img: img, fs: fsys, owner: owner}
	if err := p.patch(ext4.RootIno, rootPatch(dirInfo, owner)); err != nil {
		return err
	}
	return p.walk(dir, ext4.RootIno, 0)
}

// rootPatch gives the root directory DIR's permissions, owner (unless all
// owners are mapped) and times.
func rootPatch(dirInfo os.FileInfo, owner *[2]uint32) ext4.InodePatch {
	perm := uint16(dirInfo.Mode().Perm())
	for _, b := range []struct {
		mode fs.FileMode
		bit  uint16
	}{{fs.ModeSetuid, 0o4000}, {fs.ModeSetgid, 0o2000}, {fs.ModeSticky, 0o1000}} {
		if dirInfo.Mode()&b.mode != 0 {
			perm |= b.bit
		}
	}
	p := ext4.InodePatch{Perm: &perm, Owner: owner}
	if st, ok := dirInfo.Sys().(*statT); ok {
		if owner == nil {
			p.Owner = &[2]uint32{st.Uid, st.Gid}
		}
		p.Mtime, p.Atime = statTimes(st)
	}
	return p
}

// walk patches the entries of image directory dirIno; src is its
// counterpart in DIR, or "" where there is none (lost+found).
func (p *patcher) walk(src string, dirIno uint64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("pack: directories nested deeper than %d", maxDepth)
	}
	ents, err := p.fs.ReadDir(dirIno)
	if err != nil {
		return fmt.Errorf("pack: reading the new file system: %w", err)
	}
	for _, e := range ents {
		if p.visited++; p.visited%1024 == 0 && p.ctx.Err() != nil {
			return p.ctx.Err()
		}
		patch := ext4.InodePatch{Owner: p.owner}
		entSrc := ""
		if src != "" {
			entSrc = filepath.Join(src, e.Name)
			fi, err := os.Lstat(entSrc)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				entSrc = "" // made by mkfs.ext4 (lost+found)
			case err != nil:
				return fmt.Errorf("pack: %w", err)
			default:
				if st, ok := fi.Sys().(*statT); ok {
					patch.Mtime, patch.Atime = statTimes(st)
				}
			}
		}
		if patch.Owner != nil || patch.Mtime != nil {
			if err := p.patch(e.Ino, patch); err != nil {
				return err
			}
		}
		if e.Type == sysabi.DT_DIR {
			if err := p.walk(entSrc, e.Ino, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// patch rewrites inode ino's on-disk record with pt applied.
func (p *patcher) patch(ino uint64, pt ext4.InodePatch) error {
	off, size, err := p.fs.InodeLocation(ino)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	rec := make([]byte, size)
	if _, err := p.img.ReadAt(rec, off); err != nil {
		return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
	}
	if err := p.fs.PatchInode(ino, rec, pt); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if _, err := p.img.WriteAt(rec, off); err != nil {
		return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
	}
	return nil
}
