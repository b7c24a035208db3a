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

var (
	// ErrCorrupt marks on-disk data that violates the format.
	ErrCorrupt = errors.New("ext4: corrupt filesystem")
	// ErrUnsupported marks a valid filesystem using a feature this reader lacks.
	ErrUnsupported = errors.New("ext4: unsupported feature")
	// ErrNoXattr is returned by GetXattr when the attribute does not exist.
	ErrNoXattr = errors.New("ext4: no such extended attribute")
	// ErrNotDir is returned when a directory operation meets another file type.
	ErrNotDir = errors.New("ext4: not a directory")
	// ErrIsDir is returned when a file operation meets a directory.
	ErrIsDir = errors.New("ext4: is a directory")
	// ErrChecksum marks a metadata_csum mismatch; it also matches ErrCorrupt.
	ErrChecksum = errors.New("ext4: checksum mismatch")
	// ErrNotSymlink is returned by Readlink for other file types.
	ErrNotSymlink = errors.New("ext4: not a symbolic link")
)

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
