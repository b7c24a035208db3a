package ext4

import (
	"errors"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// IOFS returns an io/fs view of f: fs.FS, fs.ReadDirFS, fs.StatFS,
// fs.ReadFileFS and fs.ReadLinkFS, with FileInfo.Sys() a *Stat. It is a
// separate type because FS's inode-number methods (Stat, ReadDir) share
// names with io/fs's path methods.
func (f *FS) IOFS() *IOFS { return &IOFS{f: f} }

// IOFS adapts FS to io/fs with slash-separated paths from the root.
// Paths resolve with FS.Resolve: symbolic links are followed inside the
// filesystem (absolute targets start at its root), at most 40 per path.
type IOFS struct{ f *FS }

var (
	_ fs.ReadDirFS  = (*IOFS)(nil)
	_ fs.StatFS     = (*IOFS)(nil)
	_ fs.ReadFileFS = (*IOFS)(nil)
	_ fs.ReadLinkFS = (*IOFS)(nil)
)

// resolve walks name to an inode with FS.Resolve.
func (x *IOFS) resolve(op, name string, follow FollowMode) (uint64, error) {
	if !fs.ValidPath(name) {
		return 0, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	ino, err := x.f.Resolve(name, follow)
	if err != nil {
		return 0, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return ino, nil
}

// fileInfo implements fs.FileInfo over a Stat.
type fileInfo struct {
	name string
	st   Stat
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return int64(fi.st.Size) }
func (fi *fileInfo) ModTime() time.Time { return fi.st.Mtime }
func (fi *fileInfo) IsDir() bool        { return fi.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (fi *fileInfo) Sys() any           { return &fi.st }
func (fi *fileInfo) Mode() fs.FileMode  { return modeToGo(fi.st.Mode) }

func modeToGo(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func (x *IOFS) info(name string, ino uint64) (*fileInfo, error) {
	st, err := x.f.Stat(ino)
	if err != nil {
		return nil, err
	}
	base := path.Base(name)
	if name == "." {
		base = "."
	}
	return &fileInfo{name: base, st: st}, nil
}

// Stat follows symbolic links.
func (x *IOFS) Stat(name string) (fs.FileInfo, error) {
	ino, err := x.resolve("stat", name, Follow)
	if err != nil {
		return nil, err
	}
	fi, err := x.info(name, ino)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fi, nil
}

// Lstat does not follow a final symbolic link.
func (x *IOFS) Lstat(name string) (fs.FileInfo, error) {
	ino, err := x.resolve("lstat", name, NoFollow)
	if err != nil {
		return nil, err
	}
	fi, err := x.info(name, ino)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return fi, nil
}

// ReadLink returns the target of the symbolic link name.
func (x *IOFS) ReadLink(name string) (string, error) {
	ino, err := x.resolve("readlink", name, NoFollow)
	if err != nil {
		return "", err
	}
	t, err := x.f.Readlink(ino)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return t, nil
}

// dirEntry implements fs.DirEntry.
type dirEntry struct {
	x *IOFS
	d DirEntry
}

func (e *dirEntry) Name() string { return e.d.Name }
func (e *dirEntry) IsDir() bool  { return e.d.Type == syscall.DT_DIR }
func (e *dirEntry) Type() fs.FileMode {
	return modeToGo(uint32(e.d.Type)<<12) & fs.ModeType
}
func (e *dirEntry) Info() (fs.FileInfo, error) {
	st, err := e.x.f.Stat(e.d.Ino)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: e.d.Name, st: st}, nil
}

func (x *IOFS) readDir(ino uint64) ([]fs.DirEntry, error) {
	ents, err := x.f.ReadDir(ino)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, len(ents))
	for i := range ents {
		out[i] = &dirEntry{x: x, d: ents[i]}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// ReadDir lists the directory name sorted by file name.
func (x *IOFS) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, err := x.resolve("readdir", name, Follow)
	if err != nil {
		return nil, err
	}
	out, err := x.readDir(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return out, nil
}

// maxReadFile bounds ReadFile's allocation; use Open and Read for more.
const maxReadFile = 1 << 30

// ReadFile returns a regular file's whole content (at most 1 GiB).
func (x *IOFS) ReadFile(name string) ([]byte, error) {
	ino, err := x.resolve("readfile", name, Follow)
	if err != nil {
		return nil, err
	}
	st, err := x.f.Stat(ino)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	if st.Size > maxReadFile {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: fmt.Errorf("file too large (%d bytes)", st.Size)}
	}
	b := make([]byte, st.Size)
	n, err := x.f.ReadAt(ino, b, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(b)) {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return b[:n], nil
}

// Open opens name, following symbolic links. Directories support
// ReadDir; regular files Read, ReadAt and Seek.
func (x *IOFS) Open(name string) (fs.File, error) {
	ino, err := x.resolve("open", name, Follow)
	if err != nil {
		return nil, err
	}
	fi, err := x.info(name, ino)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{x: x, ino: ino, fi: fi, name: name}, nil
}

// file implements fs.File, fs.ReadDirFile, io.ReaderAt and io.Seeker.
type file struct {
	x    *IOFS
	ino  uint64
	fi   *fileInfo
	name string
	off  int64
	ents []fs.DirEntry
	dirs bool // ents loaded
}

func (fl *file) Stat() (fs.FileInfo, error) { return fl.fi, nil }
func (fl *file) Close() error               { return nil }

func (fl *file) Read(p []byte) (int, error) {
	if fl.fi.IsDir() {
		return 0, &fs.PathError{Op: "read", Path: fl.name, Err: ErrIsDir}
	}
	if !fl.fi.Mode().IsRegular() {
		return 0, io.EOF // devices, fifos and sockets have no content here
	}
	n, err := fl.x.f.ReadAt(fl.ino, p, fl.off)
	fl.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (fl *file) ReadAt(p []byte, off int64) (int, error) { return fl.x.f.ReadAt(fl.ino, p, off) }

func (fl *file) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += fl.off
	case io.SeekEnd:
		off += fl.fi.Size()
	default:
		return 0, fmt.Errorf("ext4: seek whence %d", whence)
	}
	if off < 0 {
		return 0, fmt.Errorf("ext4: negative seek offset")
	}
	fl.off = off
	return off, nil
}

func (fl *file) ReadDir(n int) ([]fs.DirEntry, error) {
	if !fl.fi.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: fl.name, Err: ErrNotDir}
	}
	if !fl.dirs {
		ents, err := fl.x.readDir(fl.ino)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: fl.name, Err: err}
		}
		fl.ents, fl.dirs = ents, true
	}
	if n <= 0 {
		out := fl.ents
		fl.ents = nil
		return out, nil
	}
	if len(fl.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(fl.ents))
	out := fl.ents[:n]
	fl.ents = fl.ents[n:]
	return out, nil
}
