package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// mkfs.ext4 -d (e2fsprogs 1.47.0) gives the root directory its own mode,
// owner and times instead of DIR's, and copies every other owner as lstat
// reports it. The few inode fields we need to change afterwards are patched
// here, in place in the freshly made image, with the inode checksums redone.

// ext4 superblock (at byte 1024) and group descriptor field offsets, as in
// the kernel's struct ext4_super_block / ext4_group_desc.
const (
	sbOffset          = 1024
	sbSize            = 1024
	sbInodesCount     = 0x00
	sbFirstDataBlock  = 0x14
	sbLogBlockSize    = 0x18
	sbInodesPerGroup  = 0x28
	sbMagic           = 0x38
	sbRevLevel        = 0x4C
	sbFirstIno        = 0x54
	sbInodeSize       = 0x58
	sbFeatureIncompat = 0x60
	sbFeatureROCompat = 0x64
	sbUUID            = 0x68
	sbDescSize        = 0xFE
	sbChecksumSeed    = 0x270
	ext4Magic         = 0xEF53
	incompat64Bit     = 0x80
	incompatMetaBG    = 0x10
	incompatCsumSeed  = 0x2000
	roCompatMetaCsum  = 0x400
	bgInodeBitmapLo   = 0x04
	bgInodeTableLo    = 0x08
	bgFlags           = 0x12
	bgItableUnusedLo  = 0x1C
	bgInodeBitmapHi   = 0x24
	bgInodeTableHi    = 0x28
	bgItableUnusedHi  = 0x32
	bgFlagInodeUninit = 0x1
	inodeMode         = 0x00
	inodeUIDLo        = 0x02
	inodeAtime        = 0x08
	inodeCtime        = 0x0C
	inodeMtime        = 0x10
	inodeGIDLo        = 0x18
	inodeGeneration   = 0x64
	inodeUIDHi        = 0x78
	inodeGIDHi        = 0x7A
	inodeChecksumLo   = 0x7C
	inodeExtraIsize   = 0x80
	inodeChecksumHi   = 0x82
	inodeCtimeExtra   = 0x84
	inodeMtimeExtra   = 0x88
	inodeAtimeExtra   = 0x8C
	rootIno           = 2
	goodOldInodeSize  = 128
	maxGroupsToPatch  = 1 << 24
)

// ErrExt4Layout is wrapped when the made image has a layout the patcher does
// not handle (it never happens with mkfs.ext4's defaults).
var ErrExt4Layout = errors.New("pack: unsupported ext4 layout")

// inodeAttrs are the fields to set on an inode; nil/zero-flag fields stay.
type inodeAttrs struct {
	owner    *[2]uint32 // uid, gid
	perm     *uint16    // the low 12 bits of i_mode
	mtime    *timeSpec
	atime    *timeSpec
	allOwner *[2]uint32 // applied to every in-use inode (root and >= s_first_ino)
}

type timeSpec struct {
	sec  int64
	nsec int64
}

type ext4Geometry struct {
	blockSize      int64
	inodesCount    uint32
	inodesPerGroup uint32
	inodeSize      int
	firstIno       uint32
	descSize       int
	gdtOffset      int64
	csum           bool
	csumSeed       uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cRaw is the kernel's crc32c(seed, data): no pre/post inversion.
func crc32cRaw(seed uint32, b []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, b)
}

func readGeometry(r io.ReaderAt, size int64) (*ext4Geometry, error) {
	sb := make([]byte, sbSize)
	if _, err := r.ReadAt(sb, sbOffset); err != nil {
		return nil, fmt.Errorf("pack: ext4 superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagic:]) != ext4Magic {
		return nil, fmt.Errorf("%w: no ext4 superblock magic", ErrExt4Layout)
	}
	g := &ext4Geometry{
		inodesCount:    binary.LittleEndian.Uint32(sb[sbInodesCount:]),
		inodesPerGroup: binary.LittleEndian.Uint32(sb[sbInodesPerGroup:]),
		inodeSize:      goodOldInodeSize,
		firstIno:       11,
		descSize:       32,
	}
	logBS := binary.LittleEndian.Uint32(sb[sbLogBlockSize:])
	if logBS > 6 {
		return nil, fmt.Errorf("%w: block size log %d", ErrExt4Layout, logBS)
	}
	g.blockSize = 1024 << logBS
	if binary.LittleEndian.Uint32(sb[sbRevLevel:]) >= 1 {
		g.firstIno = binary.LittleEndian.Uint32(sb[sbFirstIno:])
		g.inodeSize = int(binary.LittleEndian.Uint16(sb[sbInodeSize:]))
	}
	if g.inodeSize < goodOldInodeSize || g.inodeSize > int(g.blockSize) || g.inodeSize&(g.inodeSize-1) != 0 {
		return nil, fmt.Errorf("%w: inode size %d", ErrExt4Layout, g.inodeSize)
	}
	incompat := binary.LittleEndian.Uint32(sb[sbFeatureIncompat:])
	if incompat&incompatMetaBG != 0 {
		return nil, fmt.Errorf("%w: meta_bg", ErrExt4Layout)
	}
	if incompat&incompat64Bit != 0 {
		g.descSize = int(binary.LittleEndian.Uint16(sb[sbDescSize:]))
		if g.descSize < 64 || g.descSize > 1024 || g.descSize&(g.descSize-1) != 0 {
			return nil, fmt.Errorf("%w: group descriptor size %d", ErrExt4Layout, g.descSize)
		}
	}
	if g.inodesPerGroup == 0 || g.inodesPerGroup > uint32(8*g.blockSize) || g.inodesCount == 0 {
		return nil, fmt.Errorf("%w: %d inodes, %d per group", ErrExt4Layout, g.inodesCount, g.inodesPerGroup)
	}
	if g.firstIno <= rootIno || g.firstIno > g.inodesCount {
		return nil, fmt.Errorf("%w: first inode %d", ErrExt4Layout, g.firstIno)
	}
	firstData := int64(binary.LittleEndian.Uint32(sb[sbFirstDataBlock:]))
	g.gdtOffset = (firstData + 1) * g.blockSize
	if binary.LittleEndian.Uint32(sb[sbFeatureROCompat:])&roCompatMetaCsum != 0 {
		g.csum = true
		if incompat&incompatCsumSeed != 0 {
			g.csumSeed = binary.LittleEndian.Uint32(sb[sbChecksumSeed:])
		} else {
			g.csumSeed = crc32cRaw(^uint32(0), sb[sbUUID:sbUUID+16])
		}
	}
	// The inode tables are disjoint parts of the image: this bounds the work
	// on a corrupt superblock.
	if uint64(g.inodesCount)*uint64(g.inodeSize) > uint64(size) {
		return nil, fmt.Errorf("%w: %d inodes do not fit the image", ErrExt4Layout, g.inodesCount)
	}
	groups := (uint64(g.inodesCount) + uint64(g.inodesPerGroup) - 1) / uint64(g.inodesPerGroup)
	if groups > maxGroupsToPatch || g.gdtOffset+int64(groups)*int64(g.descSize) > size {
		return nil, fmt.Errorf("%w: %d groups do not fit the image", ErrExt4Layout, groups)
	}
	return g, nil
}

// patchInodes applies a to the image in f (size bytes).
func patchInodes(f interface {
	io.ReaderAt
	io.WriterAt
}, size int64, a inodeAttrs) error {
	g, err := readGeometry(f, size)
	if err != nil {
		return err
	}
	groups := (g.inodesCount + g.inodesPerGroup - 1) / g.inodesPerGroup
	desc := make([]byte, g.descSize)
	inode := make([]byte, g.inodeSize)
	bitmap := make([]byte, (g.inodesPerGroup+7)/8)
	for grp := uint32(0); grp < groups; grp++ {
		if _, err := f.ReadAt(desc, g.gdtOffset+int64(grp)*int64(g.descSize)); err != nil {
			return fmt.Errorf("pack: ext4 group %d descriptor: %w", grp, err)
		}
		if a.allOwner == nil && grp > 0 {
			break // only the root inode (group 0) is wanted
		}
		if binary.LittleEndian.Uint16(desc[bgFlags:])&bgFlagInodeUninit != 0 {
			continue
		}
		bitmapBlk := uint64(binary.LittleEndian.Uint32(desc[bgInodeBitmapLo:]))
		table := uint64(binary.LittleEndian.Uint32(desc[bgInodeTableLo:]))
		unused := uint32(binary.LittleEndian.Uint16(desc[bgItableUnusedLo:]))
		if g.descSize >= 64 {
			bitmapBlk |= uint64(binary.LittleEndian.Uint32(desc[bgInodeBitmapHi:])) << 32
			table |= uint64(binary.LittleEndian.Uint32(desc[bgInodeTableHi:])) << 32
			unused |= uint32(binary.LittleEndian.Uint16(desc[bgItableUnusedHi:])) << 16
		}
		tableEnd := (table*uint64(g.blockSize) + uint64(g.inodesPerGroup)*uint64(g.inodeSize))
		if bitmapBlk >= uint64(size)/uint64(g.blockSize) || tableEnd > uint64(size) || tableEnd < table {
			return fmt.Errorf("%w: group %d tables beyond the image", ErrExt4Layout, grp)
		}
		if _, err := f.ReadAt(bitmap, int64(bitmapBlk)*g.blockSize); err != nil {
			return fmt.Errorf("pack: ext4 group %d inode bitmap: %w", grp, err)
		}
		used := g.inodesPerGroup
		if unused <= used {
			used -= unused
		}
		for i := uint32(0); i < used; i++ {
			if bitmap[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			ino := grp*g.inodesPerGroup + i + 1
			if ino > g.inodesCount {
				break
			}
			isRoot := ino == rootIno
			if !isRoot && (ino < g.firstIno || a.allOwner == nil) {
				continue
			}
			off := int64(table)*g.blockSize + int64(i)*int64(g.inodeSize)
			if _, err := f.ReadAt(inode, off); err != nil {
				return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
			}
			if a.allOwner != nil {
				setOwner(inode, *a.allOwner)
			}
			if isRoot {
				applyRoot(inode, a)
			}
			if g.csum {
				setInodeChecksum(inode, g.csumSeed, ino)
			}
			if _, err := f.WriteAt(inode, off); err != nil {
				return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
			}
		}
	}
	return nil
}

func setOwner(inode []byte, o [2]uint32) {
	binary.LittleEndian.PutUint16(inode[inodeUIDLo:], uint16(o[0]))
	binary.LittleEndian.PutUint16(inode[inodeUIDHi:], uint16(o[0]>>16))
	binary.LittleEndian.PutUint16(inode[inodeGIDLo:], uint16(o[1]))
	binary.LittleEndian.PutUint16(inode[inodeGIDHi:], uint16(o[1]>>16))
}

func applyRoot(inode []byte, a inodeAttrs) {
	if a.owner != nil && a.allOwner == nil {
		setOwner(inode, *a.owner)
	}
	if a.perm != nil {
		m := binary.LittleEndian.Uint16(inode[inodeMode:])
		binary.LittleEndian.PutUint16(inode[inodeMode:], m&^0o7777|*a.perm&0o7777)
	}
	extra := 0
	if len(inode) > goodOldInodeSize {
		extra = int(binary.LittleEndian.Uint16(inode[inodeExtraIsize:]))
	}
	setTime(inode, extra, inodeMtime, inodeMtimeExtra, a.mtime)
	setTime(inode, extra, inodeAtime, inodeAtimeExtra, a.atime)
}

// setTime stores seconds in the 32-bit field and, when the inode has room
// for the extra field, the epoch bits and nanoseconds there.
func setTime(inode []byte, extraIsize, off, extraOff int, t *timeSpec) {
	if t == nil {
		return
	}
	binary.LittleEndian.PutUint32(inode[off:], uint32(t.sec))
	if goodOldInodeSize+extraIsize >= extraOff+4 && extraOff+4 <= len(inode) {
		epoch := uint32((t.sec-int64(int32(t.sec)))>>32) & 3
		binary.LittleEndian.PutUint32(inode[extraOff:], uint32(t.nsec)<<2|epoch)
	}
}

// setInodeChecksum recomputes the metadata_csum inode checksum: crc32c over
// the inode number, the generation and the inode with both checksum fields
// zero; the high half is stored only when i_extra_isize covers it.
func setInodeChecksum(inode []byte, seed, ino uint32) {
	hasHi := len(inode) > goodOldInodeSize &&
		int(binary.LittleEndian.Uint16(inode[inodeExtraIsize:])) >= inodeChecksumHi+2-goodOldInodeSize
	binary.LittleEndian.PutUint16(inode[inodeChecksumLo:], 0)
	if hasHi {
		binary.LittleEndian.PutUint16(inode[inodeChecksumHi:], 0)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], ino)
	c := crc32cRaw(seed, b[:])
	c = crc32cRaw(c, inode[inodeGeneration:inodeGeneration+4])
	c = crc32cRaw(c, inode)
	binary.LittleEndian.PutUint16(inode[inodeChecksumLo:], uint16(c))
	if hasHi {
		binary.LittleEndian.PutUint16(inode[inodeChecksumHi:], uint16(c>>16))
	}
}
