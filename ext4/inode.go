package ext4

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"syscall"
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
	if ino == 0 || ino > uint64(f.sb.sInodesCount) {
		return nil, fmt.Errorf("%w: inode number out of range (1..%d)", fs.ErrNotExist, f.sb.sInodesCount)
	}
	g := (ino - 1) / uint64(f.sb.sInodesPerGroup)
	idx := (ino - 1) % uint64(f.sb.sInodesPerGroup)
	gd := &f.groups[g]
	if gd.bad != nil {
		return nil, gd.bad
	}
	isz := uint64(f.sb.sInodeSize)
	off := idx * isz
	blk, err := f.block(gd.bgInodeTable + off/f.bs)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, isz)
	copy(raw, blk[off%f.bs:])
	return f.decodeInode(ino, raw)
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

func (f *FS) decodeInode(ino uint64, b []byte) (*inode, error) {
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(b[o:]) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	in := &inode{
		ino:         ino,
		iMode:       le16(0x0),
		iUid:        uint32(le16(0x2)) | uint32(le16(0x78))<<16,
		iGid:        uint32(le16(0x18)) | uint32(le16(0x7A))<<16,
		iSize:       uint64(le32(0x4)),
		iLinks:      le16(0x1A),
		iFlags:      le32(0x20),
		iGeneration: le32(0x64),
		iFileACL:    uint64(le32(0x68)),
		raw:         b,
	}
	copy(in.iBlock[:], b[0x28:0x28+60])
	if f.sb.incompat(incompat64bit) {
		in.iFileACL |= uint64(le16(0x76)) << 32
	}
	if len(b) > goodOldInodeSize {
		in.extraIsize = le16(0x80)
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
		in.iSize |= uint64(le32(0x6C)) << 32
	}
	blocks := uint64(le32(0x1C))
	if f.sb.roCompat(roCompatHugeFile) {
		blocks |= uint64(le16(0x74)) << 32
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
	e, ok := extra(0x84)
	in.ctime = decodeTime(le32(0xC), e, ok)
	e, ok = extra(0x88)
	in.mtime = decodeTime(le32(0x10), e, ok)
	e, ok = extra(0x8C)
	in.atime = decodeTime(le32(0x8), e, ok)
	if in.fits(0x94) {
		in.hasCrtime = true
		e, ok = extra(0x94)
		in.crtime = decodeTime(le32(0x90), e, ok)
	}
	return in, nil
}

// verifyInode checks the metadata_csum inode checksum: crc32c over the
// inode number, generation and the whole record with the checksum fields
// zeroed.
func (f *FS) verifyInode(in *inode) error {
	b := in.raw
	seed := crc32c(f.csumSeed, le32b(uint32(in.ino)))
	seed = crc32c(seed, le32b(in.iGeneration))
	in.csumSeed = seed
	c := crc32c(seed, b[:0x7C])
	c = crc32c(c, []byte{0, 0})
	c = crc32c(c, b[0x7E:goodOldInodeSize])
	want := uint32(binary.LittleEndian.Uint16(b[0x7C:]))
	if len(b) > goodOldInodeSize {
		c = crc32c(c, b[goodOldInodeSize:0x82])
		off := 0x82
		if in.fits(0x84) {
			c = crc32c(c, []byte{0, 0})
			off = 0x84
			want |= uint32(binary.LittleEndian.Uint16(b[0x82:])) << 16
		} else {
			c &= 0xFFFF
		}
		c = crc32c(c, b[off:])
	} else {
		c &= 0xFFFF
	}
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
