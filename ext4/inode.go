package ext4

import (
	"bytes"
	"encoding/binary"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io/fs"
	"time"
)

// Inode flags (i_flags).
const (
	flagIndex      = 0x1000
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagEAInode    = 0x200000
	flagInlineData = 0x10000000
)

const goodOldInodeSize = 128

// bootLoaderIno is EXT4_BOOT_LOADER_INO, the one inode iget takes unlinked.
const bootLoaderIno = 5

// On-disk inode field offsets (struct ext4_inode), for decodeInode and for
// the patcher in patch.go.
const (
	iModeOff        = 0x00
	iUIDLoOff       = 0x02
	iSizeLoOff      = 0x04
	iAtimeOff       = 0x08
	iCtimeOff       = 0x0C
	iMtimeOff       = 0x10
	iGIDLoOff       = 0x18
	iLinksOff       = 0x1A
	iBlocksLoOff    = 0x1C
	iFlagsOff       = 0x20
	iBlockOff       = 0x28
	iGenerationOff  = 0x64
	iFileACLLoOff   = 0x68
	iSizeHiOff      = 0x6C
	iBlocksHiOff    = 0x74
	iFileACLHiOff   = 0x76
	iUIDHiOff       = 0x78
	iGIDHiOff       = 0x7A
	iChecksumLoOff  = 0x7C
	iExtraIsizeOff  = 0x80
	iChecksumHiOff  = 0x82
	iCtimeExtraOff  = 0x84
	iMtimeExtraOff  = 0x88
	iAtimeExtraOff  = 0x8C
	iCrtimeOff      = 0x90
	iCrtimeExtraOff = 0x94
)

// inode is a decoded on-disk inode; raw keeps the whole record for xattrs.
type inode struct {
	ino                         uint64
	iMode                       uint16
	iUid                        uint32
	iGid                        uint32
	iSize                       uint64
	iLinks                      uint16
	iBlocks                     uint64 // 512-byte units, as st_blocks
	iFlags                      uint32
	iBlock                      [60]byte
	iGeneration                 uint32
	iFileACL                    uint64
	extraIsize                  uint16
	atime, ctime, mtime, crtime time.Time
	hasCrtime                   bool
	csumSeed                    uint32 // per-inode seed for extent/dir/inode checksums
	raw                         []byte
}

func (in *inode) fileType() uint16 { return in.iMode & syscall.S_IFMT }
func (in *inode) isDir() bool      { return in.fileType() == syscall.S_IFDIR }

// fits reports whether a field ending at byte end lies within the inode's
// extra space (EXT4_FITS_IN_INODE).
func (in *inode) fits(end int) bool {
	return end <= goodOldInodeSize+int(in.extraIsize) && end <= len(in.raw)
}

// inode returns the parsed inode, from the cache when possible.
func (f *FS) inode(ino uint64) (*inode, error) {
	f.mu.Lock()
	if v, ok := f.inodes.get(ino); ok {
		f.mu.Unlock()
		return v.(*inode), nil
	}
	f.mu.Unlock()
	in, err := f.readInode(ino)
	if err != nil {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	f.mu.Lock()
	f.inodes.put(ino, in)
	f.mu.Unlock()
	return in, nil
}

func (f *FS) readInode(ino uint64) (*inode, error) {
	pos, err := f.inodePos(ino)
	if err != nil {
		return nil, err
	}
	blk, err := f.itableBlock((ino-1)/uint64(f.sb.sInodesPerGroup), pos/f.bs)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, f.sb.sInodeSize)
	copy(raw, blk[pos%f.bs:])
	return f.decodeInode(ino, raw)
}

// inodePos is the byte position of inode ino's record on the device.
func (f *FS) inodePos(ino uint64) (uint64, error) {
	if ino == 0 || ino > uint64(f.sb.sInodesCount) {
		return 0, fmt.Errorf("%w: inode number out of range (1..%d)", fs.ErrNotExist, f.sb.sInodesCount)
	}
	g := (ino - 1) / uint64(f.sb.sInodesPerGroup)
	idx := (ino - 1) % uint64(f.sb.sInodesPerGroup)
	gd := &f.groups[g]
	return gd.bgInodeTable*f.bs + idx*uint64(f.sb.sInodeSize), nil
}

func decodeTime(base uint32, extra uint32, hasExtra bool) time.Time {
	sec := int64(int32(base))
	var nsec int64
	if hasExtra {
		sec += int64(extra&3) << 32
		nsec = int64(extra >> 2)
		if nsec > 999999999 {
			nsec = 999999999
		}
	}
	return time.Unix(sec, nsec)
}

// encodeTime is the inverse of decodeTime: the low 32 bits of the seconds
// for the base field, and for the extra field the nanoseconds and the two
// epoch bits that carry the seconds past 2038.
func encodeTime(t time.Time) (base, extra uint32) {
	sec := t.Unix()
	epoch := uint32((sec-int64(int32(sec)))>>32) & 3
	return uint32(sec), uint32(t.Nanosecond())<<2 | epoch
}

func (f *FS) decodeInode(ino uint64, b []byte) (*inode, error) {
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(b[o:]) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	in := &inode{
		ino:         ino,
		iMode:       le16(iModeOff),
		iUid:        uint32(le16(iUIDLoOff)) | uint32(le16(iUIDHiOff))<<16,
		iGid:        uint32(le16(iGIDLoOff)) | uint32(le16(iGIDHiOff))<<16,
		iSize:       uint64(le32(iSizeLoOff)),
		iLinks:      le16(iLinksOff),
		iFlags:      le32(iFlagsOff),
		iGeneration: le32(iGenerationOff),
		iFileACL:    uint64(le32(iFileACLLoOff)),
		raw:         b,
	}
	copy(in.iBlock[:], b[iBlockOff:iBlockOff+60])
	if f.sb.incompat(incompat64bit) {
		in.iFileACL |= uint64(le16(iFileACLHiOff)) << 32
	}
	if len(b) > goodOldInodeSize {
		in.extraIsize = le16(iExtraIsizeOff)
		if int(in.extraIsize)+goodOldInodeSize > len(b) || in.extraIsize&3 != 0 {
			return nil, fmt.Errorf("%w: i_extra_isize %d", ErrCorrupt, in.extraIsize)
		}
	}
	if f.csum {
		if err := f.verifyInode(in); err != nil {
			return nil, err
		}
	}
	if f.sb.incompat(incompatLargeDir) || in.fileType() == syscall.S_IFREG {
		in.iSize |= uint64(le32(iSizeHiOff)) << 32
	}
	blocks := uint64(le32(iBlocksLoOff))
	if f.sb.roCompat(roCompatHugeFile) {
		blocks |= uint64(le16(iBlocksHiOff)) << 32
		if in.iFlags&flagHugeFile != 0 {
			blocks <<= f.bits - 9
		}
	}
	in.iBlocks = blocks
	extra := func(o int) (uint32, bool) {
		if in.fits(o + 4) {
			return le32(o), true
		}
		return 0, false
	}
	e, ok := extra(iCtimeExtraOff)
	in.ctime = decodeTime(le32(iCtimeOff), e, ok)
	e, ok = extra(iMtimeExtraOff)
	in.mtime = decodeTime(le32(iMtimeOff), e, ok)
	e, ok = extra(iAtimeExtraOff)
	in.atime = decodeTime(le32(iAtimeOff), e, ok)
	if in.fits(iCrtimeExtraOff) {
		in.hasCrtime = true
		e, ok = extra(iCrtimeExtraOff)
		in.crtime = decodeTime(le32(iCrtimeOff), e, ok)
	}
	if in.iLinks == 0 && ino != bootLoaderIno {
		// iget fails with ESTALE, which ext4_lookup turns into EFSCORRUPTED
		// ("deleted inode referenced").
		return nil, fmt.Errorf("%w: deleted inode referenced (no links)", ErrCorrupt)
	}
	if err := f.checkBlockRefs(in); err != nil {
		return nil, err
	}
	if in.fileType() == syscall.S_IFLNK && f.isFastSymlink(in) {
		// The kernel's iget refuses a fast symlink whose target is not
		// exactly i_size bytes up to a NUL: stat fails (EUCLEAN).
		n := bytes.IndexByte(in.iBlock[:], 0)
		if in.iSize == 0 || in.iSize >= uint64(len(in.iBlock)) || uint64(n) != in.iSize {
			return nil, fmt.Errorf("%w: invalid fast symlink length %d", ErrCorrupt, in.iSize)
		}
	}
	return in, nil
}

// checkBlockRefs applies the kernel's iget checks of the block references
// in i_block (ext4_ext_check_inode, ext4_ind_check_inode) to the files
// that have them: a bad reference fails iget, and stat with it, even when
// no read would follow it.
func (f *FS) checkBlockRefs(in *inode) error {
	switch in.fileType() {
	case syscall.S_IFREG, syscall.S_IFDIR:
	case syscall.S_IFLNK:
		if f.isFastSymlink(in) {
			return nil
		}
	default:
		return nil
	}
	if in.iFlags&flagInlineData != 0 || in.ino == uint64(f.sb.sJournalInum) && f.sb.compat(compatHasJournal) {
		return nil
	}
	if in.iFlags&flagExtents != 0 {
		return f.checkExtentRoot(in)
	}
	for i := 0; i < 12; i++ { // the direct blocks only, as ext4_ind_check_inode
		b := uint64(binary.LittleEndian.Uint32(in.iBlock[4*i:]))
		if b != 0 && !f.blockValid(b, 1) {
			return fmt.Errorf("%w: invalid block %d in the block map", ErrCorrupt, b)
		}
	}
	return nil
}

// blockValid is ext4_inode_block_valid without the system zone: n blocks
// from start lie after the first data block and within the filesystem.
func (f *FS) blockValid(start, n uint64) bool {
	return start > uint64(f.sb.sFirstDataBlock) && start+n >= start && start+n <= f.sb.sBlocksCount
}

// checkExtentRoot is __ext4_ext_check on the extent root in i_block: its
// header, and each entry's blocks and order (ext4_valid_extent_entries).
func (f *FS) checkExtentRoot(in *inode) error {
	h, err := decodeExtentHeader(in.iBlock[:])
	if err != nil {
		return err
	}
	if h.ehEntries == 0 && h.ehDepth > 0 {
		return fmt.Errorf("%w: extent root of depth %d without entries", ErrCorrupt, h.ehDepth)
	}
	var next uint64 // the first logical block an entry may start at
	for i := 0; i < int(h.ehEntries); i++ {
		e := in.iBlock[12+12*i : 24+12*i]
		lblk := uint64(binary.LittleEndian.Uint32(e))
		if i > 0 && lblk < next {
			return fmt.Errorf("%w: extent entries out of order", ErrCorrupt)
		}
		if h.ehDepth > 0 {
			child := eiLeaf(e)
			if !f.blockValid(child, 1) {
				return fmt.Errorf("%w: extent index points to block %d", ErrCorrupt, child)
			}
			next = lblk + 1
			continue
		}
		ln := uint64(binary.LittleEndian.Uint16(e[4:]))
		if ln > initMaxLen {
			ln -= initMaxLen
		}
		phys := eeStart(e)
		if ln == 0 || !f.blockValid(phys, ln) {
			return fmt.Errorf("%w: extent maps %d blocks at block %d", ErrCorrupt, ln, phys)
		}
		next = lblk + ln
	}
	return nil
}

// isFastSymlink is ext4_inode_is_fast_symlink: the target lies in i_block.
// Without ea_inode, a symlink is fast when it owns no blocks besides an
// xattr block; with it, when its size fits i_block.
func (f *FS) isFastSymlink(in *inode) bool {
	if f.sb.incompat(incompatEAInode) {
		return in.iSize != 0 && in.iSize < uint64(len(in.iBlock))
	}
	if in.iFlags&flagInlineData != 0 {
		return false
	}
	var ea uint64
	if in.iFileACL != 0 {
		ea = f.bs << (f.sb.sLogClusterSize - f.sb.sLogBlockSize) >> 9
	}
	return in.iBlocks == ea
}

// verifyInode checks the metadata_csum inode checksum (see inodeChecksum).
func (f *FS) verifyInode(in *inode) error {
	c, want, seed := inodeChecksum(f.csumSeed, in)
	in.csumSeed = seed
	if c != want {
		return fmt.Errorf("%w: inode checksum %#x, computed %#x", ErrChecksum, want, c)
	}
	return nil
}

// Stat returns the attributes of inode ino as stat(2) reports them.
func (f *FS) Stat(ino uint64) (Stat, error) {
	in, err := f.inode(ino)
	if err != nil {
		return Stat{}, err
	}
	st := Stat{
		Ino: ino, Mode: uint32(in.iMode), Nlink: uint32(in.iLinks), Uid: in.iUid, Gid: in.iGid,
		Size: in.iSize, Blocks: in.iBlocks, Atime: in.atime, Mtime: in.mtime, Ctime: in.ctime,
		Flags: in.iFlags, Generation: in.iGeneration,
	}
	if in.hasCrtime {
		st.Btime = in.crtime
	}
	switch in.fileType() {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		st.Rdev = decodeDev(in.iBlock[:])
	case syscall.S_IFREG:
		// The kernel reports inline files as occupying their size in
		// sectors, so tools do not take them for entirely sparse files.
		if in.iFlags&flagInlineData != 0 && f.sb.incompat(incompatInlineData) {
			st.Blocks += (in.iSize + 511) >> 9
		}
	}
	return st, nil
}

// decodeDev reads a device number from i_block: the old 16-bit encoding in
// i_block[0], else the new 32-bit one in i_block[1].
func decodeDev(ib []byte) uint32 {
	var major, minor uint32
	if old := binary.LittleEndian.Uint32(ib[0:]); old != 0 {
		major, minor = (old>>8)&0xFF, old&0xFF
	} else {
		n := binary.LittleEndian.Uint32(ib[4:])
		major = (n & 0xFFF00) >> 8
		minor = (n & 0xFF) | ((n >> 12) & 0xFFF00)
	}
	// unix.Mkdev for major < 4096, minor < 2^20.
	return (major&0xFFF)<<8 | (minor & 0xFF) | (minor&0xFFF00)<<12
}
