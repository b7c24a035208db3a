package ext4

import (
	"encoding/binary"
	"fmt"
	"strings"
)

const (
	superblockOffset = 1024
	superblockSize   = 1024
	superMagic       = 0xEF53
)

// Feature flags (s_feature_compat, s_feature_incompat, s_feature_ro_compat).
const (
	compatHasJournal   = 0x4
	compatExtAttr      = 0x8
	compatDirIndex     = 0x20
	compatSparseSuper2 = 0x200

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatHugeFile     = 0x8
	roCompatGdtCsum      = 0x10
	roCompatDirNlink     = 0x20
	roCompatExtraIsize   = 0x40
	roCompatBigalloc     = 0x200
	roCompatMetadataCsum = 0x400
)

// supportedIncompat lists what this reader understands. MMP only guards
// concurrent writers, irrelevant read-only.
const supportedIncompat = incompatFiletype | incompatRecover | incompatMetaBG | incompatExtents |
	incompat64bit | incompatMMP | incompatFlexBG | incompatEAInode | incompatCsumSeed |
	incompatLargeDir | incompatInlineData

var incompatNames = []struct {
	bit  uint32
	name string
}{
	{incompatCompression, "compression"}, {incompatFiletype, "filetype"}, {incompatRecover, "needs_recovery"},
	{incompatJournalDev, "journal_dev"}, {incompatMetaBG, "meta_bg"}, {incompatExtents, "extent"},
	{incompat64bit, "64bit"}, {incompatMMP, "mmp"}, {incompatFlexBG, "flex_bg"}, {incompatEAInode, "ea_inode"},
	{incompatDirData, "dirdata"}, {incompatCsumSeed, "metadata_csum_seed"}, {incompatLargeDir, "large_dir"},
	{incompatInlineData, "inline_data"}, {incompatEncrypt, "encrypt"}, {incompatCasefold, "casefold"},
}

// superblock holds the fields this reader uses, named as in the kernel's
// struct ext4_super_block.
type superblock struct {
	sInodesCount       uint32
	sBlocksCount       uint64
	sRBlocksCount      uint64
	sFreeBlocksCount   uint64
	sFreeInodesCount   uint32
	sFirstDataBlock    uint32
	sLogBlockSize      uint32
	sLogClusterSize    uint32
	sBlocksPerGroup    uint32
	sClustersPerGroup  uint32
	sInodesPerGroup    uint32
	sMagic             uint16
	sRevLevel          uint32
	sFirstIno          uint32
	sInodeSize         uint16
	sFeatureCompat     uint32
	sFeatureIncompat   uint32
	sFeatureRoCompat   uint32
	sUUID              [16]byte
	sVolumeName        string
	sReservedGdtBlocks uint16
	sJournalInum       uint32
	sHashSeed          [4]uint32
	sDefHashVersion    uint8
	sDescSize          uint16
	sFirstMetaBg       uint32
	sMinExtraIsize     uint16
	sFlags             uint32
	sChecksumType      uint8
	sOverheadClusters  uint32
	sBackupBgs         [2]uint32
	sChecksumSeed      uint32
	sChecksum          uint32
}

func decodeSuperblock(b []byte) (*superblock, error) {
	if len(b) < superblockSize {
		return nil, fmt.Errorf("%w: short superblock", ErrNotExt4)
	}
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(b[o:]) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	s := &superblock{
		sInodesCount:       le32(0x0),
		sBlocksCount:       uint64(le32(0x4)),
		sRBlocksCount:      uint64(le32(0x8)),
		sFreeBlocksCount:   uint64(le32(0xC)),
		sFreeInodesCount:   le32(0x10),
		sFirstDataBlock:    le32(0x14),
		sLogBlockSize:      le32(0x18),
		sLogClusterSize:    le32(0x1C),
		sBlocksPerGroup:    le32(0x20),
		sClustersPerGroup:  le32(0x24),
		sInodesPerGroup:    le32(0x28),
		sMagic:             le16(0x38),
		sRevLevel:          le32(0x4C),
		sFirstIno:          11,
		sInodeSize:         128,
		sReservedGdtBlocks: le16(0xCE),
		sJournalInum:       le32(0xE0),
		sDefHashVersion:    b[0xFC],
		sDescSize:          le16(0xFE),
		sFirstMetaBg:       le32(0x104),
		sFlags:             le32(0x160),
		sChecksumType:      b[0x175],
		sOverheadClusters:  le32(0x248),
		sBackupBgs:         [2]uint32{le32(0x24C), le32(0x250)},
		sChecksumSeed:      le32(0x270),
		sChecksum:          le32(0x3FC),
	}
	if s.sMagic != superMagic {
		return nil, fmt.Errorf("%w: bad superblock magic %#x", ErrNotExt4, s.sMagic)
	}
	if s.sRevLevel >= 1 {
		s.sFirstIno = le32(0x54)
		s.sInodeSize = le16(0x58)
		s.sFeatureCompat = le32(0x5C)
		s.sFeatureIncompat = le32(0x60)
		s.sFeatureRoCompat = le32(0x64)
	}
	copy(s.sUUID[:], b[0x68:0x78])
	s.sVolumeName = strings.TrimRight(string(b[0x78:0x88]), "\x00")
	for i := range s.sHashSeed {
		s.sHashSeed[i] = le32(0xEC + 4*i)
	}
	if s.sFeatureIncompat&incompat64bit != 0 {
		s.sBlocksCount |= uint64(le32(0x150)) << 32
		s.sRBlocksCount |= uint64(le32(0x154)) << 32
		s.sFreeBlocksCount |= uint64(le32(0x158)) << 32
	}
	if s.sFeatureRoCompat&roCompatExtraIsize != 0 {
		s.sMinExtraIsize = le16(0x15C)
	}
	return s, nil
}

func (s *superblock) incompat(f uint32) bool { return s.sFeatureIncompat&f != 0 }
func (s *superblock) roCompat(f uint32) bool { return s.sFeatureRoCompat&f != 0 }
func (s *superblock) compat(f uint32) bool   { return s.sFeatureCompat&f != 0 }

// validate checks the features, the checksum and the geometry, so that
// later arithmetic cannot divide by zero, overflow, or allocate without bound.
func (s *superblock) validate(raw []byte) error {
	if err := s.checkFeatures(); err != nil {
		return err
	}
	if err := s.checkChecksum(raw); err != nil {
		return err
	}
	if err := s.checkSizes(); err != nil {
		return err
	}
	return s.checkGroups()
}

// checkFeatures refuses incompatible features this reader lacks, by name.
func (s *superblock) checkFeatures() error {
	u := s.sFeatureIncompat &^ supportedIncompat
	if u == 0 {
		return nil
	}
	var names []string
	for _, n := range incompatNames {
		if u&n.bit != 0 {
			names = append(names, n.name)
			u &^= n.bit
		}
	}
	if u != 0 {
		names = append(names, fmt.Sprintf("%#x", u))
	}
	return fmt.Errorf("%w: incompatible features %s", ErrUnsupported, strings.Join(names, ", "))
}

// checkChecksum verifies the metadata_csum superblock checksum. A mismatch
// is both ErrNotExt4 (the superblock cannot be trusted to describe an ext4
// filesystem: with a wrong key the magic matched by chance) and ErrChecksum.
func (s *superblock) checkChecksum(raw []byte) error {
	if !s.roCompat(roCompatMetadataCsum) {
		return nil
	}
	if s.sChecksumType != 1 {
		return fmt.Errorf("%w: unknown checksum type %d", ErrCorrupt, s.sChecksumType)
	}
	if c := crc32c(^uint32(0), raw[:0x3FC]); c != s.sChecksum {
		return fmt.Errorf("%w: %w: superblock checksum %#x, computed %#x", ErrNotExt4, ErrChecksum, s.sChecksum, c)
	}
	return nil
}

// checkSizes checks block, cluster and inode sizes; without bigalloc the
// cluster fields are set to the block ones.
func (s *superblock) checkSizes() error {
	if s.sLogBlockSize > 6 { // 1 KiB << 6 = 64 KiB
		return fmt.Errorf("%w: block size 2^(10+%d)", ErrCorrupt, s.sLogBlockSize)
	}
	if s.roCompat(roCompatBigalloc) {
		if s.sLogClusterSize < s.sLogBlockSize || s.sLogClusterSize > s.sLogBlockSize+16 {
			return fmt.Errorf("%w: cluster size 2^(10+%d)", ErrCorrupt, s.sLogClusterSize)
		}
	} else {
		s.sLogClusterSize = s.sLogBlockSize
		s.sClustersPerGroup = s.sBlocksPerGroup
	}
	bs := uint32(1024) << s.sLogBlockSize
	if s.sInodeSize < 128 || uint32(s.sInodeSize) > bs || s.sInodeSize&(s.sInodeSize-1) != 0 {
		return fmt.Errorf("%w: inode size %d", ErrCorrupt, s.sInodeSize)
	}
	if s.incompat(incompat64bit) {
		if s.sDescSize < 32 || s.sDescSize > 1024 || s.sDescSize&(s.sDescSize-1) != 0 {
			return fmt.Errorf("%w: group descriptor size %d", ErrCorrupt, s.sDescSize)
		}
	} else {
		s.sDescSize = 32
	}
	return nil
}

// checkGroups checks the group geometry and the block and inode counts.
func (s *superblock) checkGroups() error {
	bs := uint32(1024) << s.sLogBlockSize
	if s.sBlocksPerGroup == 0 || s.sBlocksPerGroup > 8*bs<<(s.sLogClusterSize-s.sLogBlockSize) ||
		s.sInodesPerGroup == 0 || s.sInodesPerGroup > 8*bs {
		return fmt.Errorf("%w: blocks per group %d, inodes per group %d", ErrCorrupt, s.sBlocksPerGroup, s.sInodesPerGroup)
	}
	if s.sFirstDataBlock > 1 || bs > 1024 && s.sFirstDataBlock != 0 {
		return fmt.Errorf("%w: first data block %d with block size %d", ErrCorrupt, s.sFirstDataBlock, bs)
	}
	if s.sBlocksCount <= uint64(s.sFirstDataBlock) || s.sBlocksCount > 1<<48 {
		return fmt.Errorf("%w: block count %d", ErrCorrupt, s.sBlocksCount)
	}
	ngroups := (s.sBlocksCount - uint64(s.sFirstDataBlock) + uint64(s.sBlocksPerGroup) - 1) / uint64(s.sBlocksPerGroup)
	if uint64(s.sInodesCount) > ngroups*uint64(s.sInodesPerGroup) || ngroups > 1<<32 {
		return fmt.Errorf("%w: %d inodes in %d groups of %d", ErrCorrupt, s.sInodesCount, ngroups, s.sInodesPerGroup)
	}
	return nil
}
