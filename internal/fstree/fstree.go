// Package fstree snapshots a directory tree with every attribute a
// filesystem reports (lstat/statx, xattrs, symlink targets, content hashes)
// and compares two snapshots field by field. Tests use it to check that a
// parsed or FUSE-served tree equals the kernel's view of the same image.
package fstree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TS is a timestamp as seconds and nanoseconds since the epoch (int64
// nanoseconds would overflow for ext4's range, 1901..2446).
type TS struct{ Sec, Nsec int64 }

// MakeTS converts a time.Time.
func MakeTS(t time.Time) TS { return TS{t.Unix(), int64(t.Nanosecond())} }

func (t TS) String() string { return time.Unix(t.Sec, t.Nsec).UTC().Format(time.RFC3339Nano) }

// Entry is one path's attributes.
type Entry struct {
	Path                string // slash-separated, relative; "." is the root
	Mode                uint32 // st_mode including S_IFMT
	Uid, Gid            uint32
	Size                uint64
	Nlink               uint32
	Ino                 uint64
	Blocks              uint64
	Rdev                uint64
	Atime, Mtime, Ctime TS
	Btime               TS // zero with HasBtime false when unavailable
	HasBtime            bool
	Target              string            // symlink target
	Xattrs              map[string]string // name -> value (raw bytes as string)
	SHA256              string            // hex, regular files only
}

// Type returns the S_IFMT bits.
func (e *Entry) Type() uint32 { return e.Mode & unix.S_IFMT }

// Tree maps a relative path to its entry.
type Tree map[string]*Entry

// Paths returns the tree's paths sorted.
func (t Tree) Paths() []string {
	ps := make([]string, 0, len(t))
	for p := range t {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Snapshot walks root (not following symlinks) and records every path.
func Snapshot(root string) (Tree, error) {
	t := Tree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, err := snapshotOne(p)
		if err != nil {
			return err
		}
		e.Path = filepath.ToSlash(rel)
		t[e.Path] = e
		return nil
	})
	return t, err
}

func snapshotOne(p string) (*Entry, error) {
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
		return nil, fmt.Errorf("statx %s: %w", p, err)
	}
	e := &Entry{
		Mode:   uint32(sx.Mode),
		Uid:    sx.Uid,
		Gid:    sx.Gid,
		Size:   sx.Size,
		Nlink:  sx.Nlink,
		Ino:    sx.Ino,
		Blocks: sx.Blocks,
		Rdev:   unix.Mkdev(sx.Rdev_major, sx.Rdev_minor),
		Atime:  TS{sx.Atime.Sec, int64(sx.Atime.Nsec)},
		Mtime:  TS{sx.Mtime.Sec, int64(sx.Mtime.Nsec)},
		Ctime:  TS{sx.Ctime.Sec, int64(sx.Ctime.Nsec)},
	}
	if sx.Mask&unix.STATX_BTIME != 0 {
		e.HasBtime = true
		e.Btime = TS{sx.Btime.Sec, int64(sx.Btime.Nsec)}
	}
	switch e.Type() {
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.Target = t
	case unix.S_IFREG:
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		e.SHA256 = fmt.Sprintf("%x", h.Sum(nil))
	}
	xs, err := xattrs(p)
	if err != nil {
		return nil, err
	}
	e.Xattrs = xs
	return e, nil
}

func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("llistxattr %s: %w", p, err)
	}
	buf := make([]byte, sz)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("llistxattr %s: %w", p, err)
	}
	m := map[string]string{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		vs, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		v := make([]byte, vs)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		m[name] = string(v[:vn])
	}
	return m, nil
}

// Options select fields Compare ignores.
type Options struct {
	IgnoreIno    bool
	IgnoreAtime  bool
	IgnoreCtime  bool
	IgnoreBtime  bool
	IgnoreBlocks bool
	IgnoreNlink  bool
	IgnoreXattrs bool
	// IgnoreDirSize skips the size of directories (FUSE may report other sizes).
	IgnoreDirSize bool
	// IgnoreRootAttrs skips all attributes of "." (a mount point's root may differ).
	IgnoreRootAttrs bool
	// Max differences reported before stopping; 0 means 50.
	Max int
}

// Compare lists differences between want and got, at most opts.Max of them.
func Compare(want, got Tree, opts Options) []string {
	max := opts.Max
	if max == 0 {
		max = 50
	}
	var d []string
	add := func(format string, a ...any) bool {
		if len(d) < max {
			d = append(d, fmt.Sprintf(format, a...))
		}
		return len(d) < max
	}
	for _, p := range want.Paths() {
		w := want[p]
		g, ok := got[p]
		if !ok {
			if !add("%s: missing", p) {
				return d
			}
			continue
		}
		if p == "." && opts.IgnoreRootAttrs {
			continue
		}
		for _, f := range compareEntry(w, g, opts) {
			if !add("%s: %s", p, f) {
				return d
			}
		}
	}
	for _, p := range got.Paths() {
		if _, ok := want[p]; !ok {
			if !add("%s: unexpected", p) {
				return d
			}
		}
	}
	return d
}

func compareEntry(w, g *Entry, o Options) []string {
	var d []string
	diff := func(field string, a, b any) {
		if a != b {
			d = append(d, fmt.Sprintf("%s want %v got %v", field, a, b))
		}
	}
	diff("mode", fmt.Sprintf("%o", w.Mode), fmt.Sprintf("%o", g.Mode))
	diff("uid", w.Uid, g.Uid)
	diff("gid", w.Gid, g.Gid)
	if !(o.IgnoreDirSize && w.Type() == unix.S_IFDIR) {
		diff("size", w.Size, g.Size)
	}
	if !o.IgnoreNlink {
		diff("nlink", w.Nlink, g.Nlink)
	}
	if !o.IgnoreIno {
		diff("ino", w.Ino, g.Ino)
	}
	if !o.IgnoreBlocks {
		diff("blocks", w.Blocks, g.Blocks)
	}
	if w.Type() == unix.S_IFCHR || w.Type() == unix.S_IFBLK {
		diff("rdev", w.Rdev, g.Rdev)
	}
	if !o.IgnoreAtime {
		diff("atime", w.Atime.String(), g.Atime.String())
	}
	diff("mtime", w.Mtime.String(), g.Mtime.String())
	if !o.IgnoreCtime {
		diff("ctime", w.Ctime.String(), g.Ctime.String())
	}
	if !o.IgnoreBtime {
		diff("hasbtime", w.HasBtime, g.HasBtime)
		if w.HasBtime && g.HasBtime {
			diff("btime", w.Btime.String(), g.Btime.String())
		}
	}
	diff("target", w.Target, g.Target)
	diff("sha256", w.SHA256, g.SHA256)
	if !o.IgnoreXattrs {
		for k, v := range w.Xattrs {
			gv, ok := g.Xattrs[k]
			if !ok {
				d = append(d, fmt.Sprintf("xattr %s missing", k))
			} else if gv != v {
				d = append(d, fmt.Sprintf("xattr %s want %q got %q", k, short(v), short(gv)))
			}
		}
		for k := range g.Xattrs {
			if _, ok := w.Xattrs[k]; !ok {
				d = append(d, fmt.Sprintf("xattr %s unexpected", k))
			}
		}
	}
	sort.Strings(d)
	return d
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
