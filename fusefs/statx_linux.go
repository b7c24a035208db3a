package fusefs

import "golang.org/x/sys/unix"

// FUSE_STATX exists only on Linux; its masks and attribute bits are Linux's.
const (
	statxBasicStats = unix.STATX_BASIC_STATS
	statxBtime      = unix.STATX_BTIME
)

// ext4 i_flags that statx reports as attributes, and their STATX_ATTR_* bits.
var statxAttrs = []struct{ ext4, statx uint32 }{
	{0x4, unix.STATX_ATTR_COMPRESSED},  // EXT4_COMPR_FL
	{0x10, unix.STATX_ATTR_IMMUTABLE},  // EXT4_IMMUTABLE_FL
	{0x20, unix.STATX_ATTR_APPEND},     // EXT4_APPEND_FL
	{0x40, unix.STATX_ATTR_NODUMP},     // EXT4_NODUMP_FL
	{0x800, unix.STATX_ATTR_ENCRYPTED}, // EXT4_ENCRYPT_FL
	{0x100000, unix.STATX_ATTR_VERITY}, // EXT4_VERITY_FL
	{0x2000000, unix.STATX_ATTR_DAX},   // EXT4_DAX_FL
}
