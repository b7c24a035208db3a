// Package extract copies a whole ext4 tree onto the local filesystem,
// preserving what the kernel would show: modes, times, symlinks, hard links,
// xattrs, sparse files, and, when allowed, owners and device nodes.
package extract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/chestfs/chestfs/ext4"
)

// Options choose what is preserved beyond content, modes and times.
type Options struct {
	// Owners sets uids/gids, creates device nodes and writes security.* and
	// trusted.* xattrs: all need root.
	Owners bool
}

type extractor struct {
	ctx   context.Context
	fsys  *ext4.FS
	opts  Options
	links map[uint64]string // first path of each inode with nlink > 1
	buf   []byte
	n     int
}

// Tree extracts the whole filesystem into dest (created if missing, must be
// empty if it exists) and returns the number of entries written.
func Tree(ctx context.Context, fsys *ext4.FS, dest string, opts Options) (int, error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return 0, err
	}
	if ents, err := os.ReadDir(dest); err != nil {
		return 0, err
	} else if len(ents) > 0 {
		return 0, fmt.Errorf("extract: %s is not empty", dest)
	}
	x := &extractor{ctx: ctx, fsys: fsys, opts: opts, links: map[uint64]string{}, buf: make([]byte, 1<<20)}
	st, err := fsys.Stat(ext4.RootIno)
	if err != nil {
		return 0, err
	}
	if err := x.dir(ext4.RootIno, dest); err != nil {
		return x.n, err
	}
	return x.n, x.meta(dest, st)
}

func (x *extractor) dir(ino uint64, dst string) error {
	ents, err := x.fsys.ReadDir(ino)
	if err != nil {
		return fmt.Errorf("extract: %s: %w", dst, err)
	}
	for _, e := range ents {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if e.Name == "" || strings.ContainsRune(e.Name, '/') || e.Name == "." || e.Name == ".." {
			return fmt.Errorf("extract: %s: unsafe entry name %q", dst, e.Name)
		}
		if err := x.entry(e.Ino, filepath.Join(dst, e.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) entry(ino uint64, p string) error {
	st, err := x.fsys.Stat(ino)
	if err != nil {
		return fmt.Errorf("extract: %s: %w", p, err)
	}
	x.n++
	typ := st.Mode & syscall.S_IFMT
	if typ != syscall.S_IFDIR && st.Nlink > 1 {
		if first, ok := x.links[ino]; ok {
			return os.Link(first, p)
		}
		x.links[ino] = p
	}
	switch typ {
	case syscall.S_IFDIR:
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if err := x.dir(ino, p); err != nil {
			return err
		}
	case syscall.S_IFREG:
		if err := x.file(ino, p, st.Size); err != nil {
			return fmt.Errorf("extract: %s: %w", p, err)
		}
	case syscall.S_IFLNK:
		target, err := x.fsys.Readlink(ino)
		if err != nil {
			return fmt.Errorf("extract: %s: %w", p, err)
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	case syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
		if typ != syscall.S_IFIFO && !x.opts.Owners {
			x.n--
			return nil // device nodes and sockets need root; skip them quietly as tar does
		}
		if err := unix.Mknod(p, st.Mode&(syscall.S_IFMT|0o7777), int(st.Rdev)); err != nil {
			return fmt.Errorf("extract: %s: %w", p, err)
		}
	default:
		return fmt.Errorf("extract: %s: unknown file type %#o", p, typ)
	}
	return x.meta(p, st)
}

// file copies content, seeking over all-zero blocks so sparse files stay sparse.
func (x *extractor) file(ino uint64, p string, size uint64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	zero := make([]byte, 4096)
	for off := uint64(0); off < size; {
		n := uint64(len(x.buf))
		if size-off < n {
			n = size - off
		}
		chunk := x.buf[:n]
		got, err := x.fsys.ReadAt(ino, chunk, int64(off))
		if uint64(got) != n {
			if err == nil {
				err = errors.New("short read")
			}
			return err
		}
		for i := 0; i < len(chunk); i += len(zero) {
			end := min(i+len(zero), len(chunk))
			if bytes.Equal(chunk[i:end], zero[:end-i]) {
				continue
			}
			if _, err := f.WriteAt(chunk[i:end], int64(off)+int64(i)); err != nil {
				return err
			}
		}
		off += n
	}
	if err := f.Truncate(int64(size)); err != nil {
		return err
	}
	return f.Close()
}

// meta applies xattrs, owner, mode and times, in that order: chown clears
// setuid bits and chmod must come after it; times last.
func (x *extractor) meta(p string, st ext4.Stat) error {
	names, err := x.fsys.ListXattr(st.Ino)
	if err != nil {
		return fmt.Errorf("extract: %s: xattrs: %w", p, err)
	}
	for _, name := range names {
		if !x.opts.Owners && (strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.")) {
			continue
		}
		v, err := x.fsys.GetXattr(st.Ino, name)
		if err != nil {
			return fmt.Errorf("extract: %s: xattr %s: %w", p, name, err)
		}
		if err := unix.Lsetxattr(p, name, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("extract: %s: set xattr %s: %w", p, name, err)
		}
	}
	typ := st.Mode & syscall.S_IFMT
	if x.opts.Owners {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if typ != syscall.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{
		{Sec: st.Atime.Unix(), Nsec: int64(st.Atime.Nanosecond())},
		{Sec: st.Mtime.Unix(), Nsec: int64(st.Mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("extract: %s: times: %w", p, err)
	}
	return nil
}
