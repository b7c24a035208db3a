// Package sysabi holds the Linux file-type and mode constants (<sys/stat.h>,
// <dirent.h>) that ext4 stores on disk. ext4 images carry Linux's values
// whatever the host is: package syscall has them on Linux and macOS (the
// same numbers) but not, or with other values, on Windows.
package sysabi

// File types and mode bits of st_mode / i_mode.
const (
	S_IFMT   = 0xf000
	S_IFSOCK = 0xc000
	S_IFLNK  = 0xa000
	S_IFREG  = 0x8000
	S_IFBLK  = 0x6000
	S_IFDIR  = 0x4000
	S_IFCHR  = 0x2000
	S_IFIFO  = 0x1000
	S_ISUID  = 0x800
	S_ISGID  = 0x400
	S_ISVTX  = 0x200
)

// Directory entry types (d_type).
const (
	DT_UNKNOWN = 0
	DT_FIFO    = 1
	DT_CHR     = 2
	DT_DIR     = 4
	DT_BLK     = 6
	DT_REG     = 8
	DT_LNK     = 10
	DT_SOCK    = 12
)
