// Package extract copies a whole ext4 tree onto the local filesystem,
// preserving what the kernel would show: modes, times, symlinks, hard links,
// xattrs, sparse files, and, when asked, owners, device nodes and set-id bits.
//
// The image is untrusted. As tar does, what would hand out privileges on the
// local machine (owners, device nodes, setuid/setgid bits, file
// capabilities) is recreated only when asked, even for root; each directory
// inode is entered once and depth is bounded, so that a crafted directory
// loop ends with an error instead of filling the disk.
package extract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // ext4 modes: Linux values on every host
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/chestfs/chestfs/ext4"
)

// Options choose what is preserved beyond content, modes and times. The
// zero value is safe for untrusted images, also as root: files belong to
// the extracting user, device nodes and sockets are skipped, and setuid and
// setgid bits are cleared.
type Options struct {
	// SameOwner sets uids/gids (tar --same-owner) and writes security.* and
	// trusted.* xattrs (except security.capability): needs root.
	SameOwner bool
	// Devices creates character and block device nodes (needs root) and
	// socket nodes. FIFOs are always created.
	Devices bool
	// PreserveSetID keeps setuid and setgid bits and security.capability
	// xattrs (tar --preserve-permissions for set-id bits).
	PreserveSetID bool
}

// MaxDepth bounds directory nesting: deeper trees end with an error. At
// 1024 levels of one-letter names the path stays within PATH_MAX (4096),
// so the bound, not ENAMETOOLONG, is what stops a deep tree.
const MaxDepth = 1024

// ErrLoop means a directory inode was reached a second time: a directory
// hard link, which a crafted image can point at its own ancestor.
var ErrLoop = errors.New("directory reached twice (directory hard link or loop)")

// ErrTooDeep means directories nest deeper than MaxDepth.
var ErrTooDeep = fmt.Errorf("directories nest deeper than %d levels", MaxDepth)

type extractor struct {
	ctx    context.Context
	fsys   *ext4.FS
	opts   Options
	links  map[uint64]string // first path of each inode with nlink > 1
	dirs   map[uint64]string // path of each directory entered
	depth  int
	warned map[string]bool
	buf    []byte
	n      int
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
	x := &extractor{ctx: ctx, fsys: fsys, opts: opts, links: map[uint64]string{}, dirs: map[uint64]string{},
		buf: make([]byte, 1<<20)}
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
	if first, ok := x.dirs[ino]; ok {
		return fmt.Errorf("extract: %s: inode %d: %w: already extracted as %s", dst, ino, ErrLoop, first)
	}
	x.dirs[ino] = dst
	if x.depth >= MaxDepth {
		return fmt.Errorf("extract: %s: %w", dst, ErrTooDeep)
	}
	x.depth++
	defer func() { x.depth-- }()
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
		if _, ok := x.dirs[ino]; ok {
			// Checked before Mkdir too, so that a loop leaves no empty directory.
			return fmt.Errorf("extract: %s: inode %d: %w: already extracted as %s", p, ino, ErrLoop, x.dirs[ino])
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("extract: %w", err)
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
		if typ != syscall.S_IFIFO && !x.opts.Devices {
			x.n--
			delete(x.links, ino) // a later name of it is skipped too, not linked to nothing
			x.skipped("device node or socket", p)
			return nil
		}
		// Created 0600; meta sets the final mode, set-id bits filtered.
		if err := mknod(p, typ|0o600, int(st.Rdev)); err != nil {
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

// skipped notes, once per kind, what was left out for want of an option.
func (x *extractor) skipped(what, p string) {
	if x.warned == nil {
		x.warned = map[string]bool{}
	}
	if !x.warned[what] {
		x.warned[what] = true
		slog.Debug("extract: skipped (not asked to preserve it)", "what", what, "first", p)
	}
}

// xattrAllowed says whether xattr name may be written under the options:
// file capabilities are privileges like setuid bits, and the other
// security.* and trusted.* names belong with owners (and need root).
func (x *extractor) xattrAllowed(name string) bool {
	switch {
	case name == "security.capability":
		return x.opts.PreserveSetID
	case strings.HasPrefix(name, "security."), strings.HasPrefix(name, "trusted."):
		return x.opts.SameOwner
	}
	return true
}
