package ext4

import "io"

// FS is an opened filesystem. It is safe for concurrent use.
type FS struct{}

func Open(r io.ReaderAt, size int64) (*FS, error)                 { return nil, ErrUnsupported }
func (f *FS) Stat(ino uint64) (Stat, error)                       { return Stat{}, ErrUnsupported }
func (f *FS) Lookup(dir uint64, name string) (uint64, error)      { return 0, ErrUnsupported }
func (f *FS) ReadDir(dir uint64) ([]DirEntry, error)              { return nil, ErrUnsupported }
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) { return 0, ErrUnsupported }
func (f *FS) Readlink(ino uint64) (string, error)                 { return "", ErrUnsupported }
func (f *FS) ListXattr(ino uint64) ([]string, error)              { return nil, ErrUnsupported }
func (f *FS) GetXattr(ino uint64, name string) ([]byte, error)    { return nil, ErrUnsupported }
func (f *FS) Statfs() Statfs                                      { return Statfs{} }
func (f *FS) BlockSize() int                                      { return 0 }

// IOFS returns an io/fs view of f (fs.FS, fs.ReadDirFS, fs.StatFS,
// fs.ReadFileFS, fs.ReadLinkFS). Its FileInfo.Sys() is a *Stat. A separate
// type because FS's inode-number methods (Stat, ReadDir) share names with
// io/fs's path methods.
func (f *FS) IOFS() *IOFS { return &IOFS{f: f} }

// IOFS adapts FS to io/fs with slash-separated paths from the root.
type IOFS struct{ f *FS }
