// Package ext4 is a read-only parser for ext2/ext3/ext4 filesystems. It reads
// through an io.ReaderAt, never writes, and treats every on-disk value as
// untrusted: corrupt input yields errors, not panics or unbounded work.
//
// A journal that needs recovery is replayed in memory at Open. A metadata
// checksum failure is an error for that object only (one inode, directory
// block, xattr block or group), not for the whole filesystem. FS works
// with inode numbers; IOFS adapts it to io/fs paths.
package ext4

import (
	"errors"
	"time"
)

// RootIno is the inode number of the root directory.
const RootIno = 2

// Errors. Each sentinel stands for one decision a caller makes; match them
// with errors.Is. Messages carry the package prefix once, at the start.
//
//   - ErrNotExt4: the volume holds no ext4 filesystem: the superblock's magic
//     is wrong, the superblock fails its checksum, or the image is too small to
//     hold one. On an encrypted volume this is what a wrong key looks like
//     (the decrypted superblock is noise), so callers may hint at the key. A
//     superblock checksum failure also matches ErrChecksum (and ErrCorrupt).
//   - ErrCorrupt: an ext4 filesystem whose on-disk data violates the format.
//   - ErrChecksum: a metadata_csum mismatch; it also matches ErrCorrupt.
//   - ErrUnsupported: a valid filesystem using a feature this reader lacks.
//   - fs.ErrNotExist, ErrNotDir, ErrIsDir, ErrNotSymlink, ErrNoXattr, ErrLoop:
//     the request does not fit the file it names (ENOENT, ENOTDIR, EISDIR,
//     EINVAL, ENODATA, ELOOP).
var (
	// ErrNotExt4 marks a volume without an ext4 superblock (wrong key?).
	ErrNotExt4 = errors.New("not an ext4 filesystem")
	// ErrCorrupt marks on-disk data that violates the format.
	ErrCorrupt = errors.New("corrupt filesystem")
	// ErrChecksum marks a metadata_csum mismatch; it also matches ErrCorrupt.
	ErrChecksum error = &checksumError{}
	// ErrUnsupported marks a valid filesystem using a feature this reader lacks.
	ErrUnsupported = errors.New("unsupported feature")
	// ErrNoXattr is returned by GetXattr when the attribute does not exist.
	ErrNoXattr = errors.New("no such extended attribute")
	// ErrNotDir is returned when a directory operation (or a path walking
	// through a file) meets another file type.
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir is returned when a file operation meets a directory.
	ErrIsDir = errors.New("is a directory")
	// ErrNotSymlink is returned by Readlink for other file types.
	ErrNotSymlink = errors.New("not a symbolic link")
	// ErrLoop is returned by Resolve after more than 40 symbolic links.
	ErrLoop = errors.New("too many levels of symbolic links")
)

// checksumError is ErrChecksum's type: a kind of corruption.
type checksumError struct{}

func (*checksumError) Error() string        { return "checksum mismatch" }
func (*checksumError) Is(target error) bool { return target == ErrCorrupt }

// Stat is an inode's attributes as the kernel reports them in stat(2).
type Stat struct {
	Ino        uint64
	Mode       uint32 // st_mode including the S_IFMT bits
	Nlink      uint32
	Uid, Gid   uint32
	Size       uint64
	Blocks     uint64 // st_blocks: 512-byte units
	Rdev       uint32 // as unix.Mkdev(major, minor)
	Atime      time.Time
	Mtime      time.Time
	Ctime      time.Time
	Btime      time.Time // zero if the inode has no creation time
	Flags      uint32    // i_flags
	Generation uint32
}

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	Ino  uint64
	Type uint8 // syscall.DT_* (DT_UNKNOWN without the filetype feature is resolved from the inode)
}

// Statfs is what statfs(2) reports for the filesystem mounted read-only.
type Statfs struct {
	BlockSize             uint32
	Blocks, BFree, BAvail uint64
	Files, FFree          uint64
	NameLen               uint32
}
