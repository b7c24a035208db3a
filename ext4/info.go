package ext4

import (
	"fmt"
	"strings"
)

// Info describes the filesystem, as `chestfs inspect` shows it.
type Info struct {
	UUID            string
	Label           string
	Revision        uint32
	BlockSize       uint32
	ClusterSize     uint32
	BlocksCount     uint64
	InodesCount     uint32
	InodeSize       uint16
	BlocksPerGroup  uint32
	InodesPerGroup  uint32
	Groups          uint64
	Features        []string // as dumpe2fs names them
	JournalReplayed bool     // needs_recovery was set and the journal was replayed in memory
}

var compatNames = []struct {
	bit  uint32
	name string
}{
	{0x1, "dir_prealloc"}, {0x2, "imagic_inodes"}, {compatHasJournal, "has_journal"}, {compatExtAttr, "ext_attr"},
	{0x10, "resize_inode"}, {compatDirIndex, "dir_index"}, {0x40, "lazy_bg"}, {0x100, "exclude_bitmap"},
	{compatSparseSuper2, "sparse_super2"}, {0x400, "fast_commit"}, {0x800, "stable_inodes"}, {0x1000, "orphan_file"},
}

var roCompatNames = []struct {
	bit  uint32
	name string
}{
	{roCompatSparseSuper, "sparse_super"}, {roCompatLargeFile, "large_file"}, {0x4, "btree_dir"},
	{roCompatHugeFile, "huge_file"}, {roCompatGdtCsum, "uninit_bg"}, {roCompatDirNlink, "dir_nlink"},
	{roCompatExtraIsize, "extra_isize"}, {0x80, "snapshot"}, {0x100, "quota"}, {roCompatBigalloc, "bigalloc"},
	{roCompatMetadataCsum, "metadata_csum"}, {0x800, "replica"}, {0x1000, "read-only"}, {0x2000, "project"},
	{0x4000, "shared_blocks"}, {0x8000, "verity"}, {0x10000, "orphan_present"},
}

// Info returns the superblock's description of the filesystem.
func (f *FS) Info() Info {
	sb := f.sb
	u := sb.sUUID
	in := Info{
		UUID:            fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
		Label:           strings.ToValidUTF8(sb.sVolumeName, "?"),
		Revision:        sb.sRevLevel,
		BlockSize:       uint32(f.bs),
		ClusterSize:     uint32(1024) << sb.sLogClusterSize,
		BlocksCount:     sb.sBlocksCount,
		InodesCount:     sb.sInodesCount,
		InodeSize:       sb.sInodeSize,
		BlocksPerGroup:  sb.sBlocksPerGroup,
		InodesPerGroup:  sb.sInodesPerGroup,
		Groups:          f.ngroup,
		JournalReplayed: f.replayed,
	}
	for _, n := range compatNames {
		if sb.sFeatureCompat&n.bit != 0 {
			in.Features = append(in.Features, n.name)
		}
	}
	for _, n := range incompatNames {
		if sb.sFeatureIncompat&n.bit != 0 {
			in.Features = append(in.Features, n.name)
		}
	}
	for _, n := range roCompatNames {
		if sb.sFeatureRoCompat&n.bit != 0 {
			in.Features = append(in.Features, n.name)
		}
	}
	return in
}
