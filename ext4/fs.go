package ext4

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// FS is an opened filesystem. It is safe for concurrent use.
type FS struct {
	r      io.ReaderAt
	size   int64
	sb     *superblock
	bs     uint64 // block size in bytes
	bits   uint   // log2(bs)
	groups []groupDesc
	ngroup uint64

	csum     bool   // metadata_csum
	csumSeed uint32 // crc32c seed for metadata checksums
	hashSign bool   // htree hashes treat name bytes as signed char

	mu     sync.Mutex
	blocks lru // block number -> []byte (metadata blocks)
	inodes lru // inode number -> *inode
	itable lru // block number -> []byte (inode-table blocks, see itable.go)

	warned map[string]bool // warnOnce keys, under mu

	statfsOnce sync.Once
	statfs     Statfs
	replayed   bool // the journal was replayed in memory
}

// Cache bounds: metadata blocks (bytes) and parsed inodes (count). The
// inode cache holds the inodes in use, at least inodeCacheMin and at most
// inodeCacheMax (a parsed inode with its raw record and LRU entry takes
// about 600 bytes: at most some 40 MiB). A tree walk stats every inode, and
// a cache smaller than the tree churns: each miss decodes and checksums the
// record again and the inserts alone cost a fifth of a READDIRPLUS.
const (
	blockCacheBytes = 8 << 20
	inodeCacheMin   = 8192
	inodeCacheMax   = 1 << 16
)

// groupDesc holds the fields of struct ext4_group_desc this reader uses.
type groupDesc struct {
	bgBlockBitmap     uint64
	bgInodeBitmap     uint64
	bgInodeTable      uint64
	bgFreeBlocksCount uint32
	bgFreeInodesCount uint32
	bgUsedDirsCount   uint32
	bgFlags           uint16
	bgChecksum        uint16
	bgItableUnused    uint32
}

// Open reads the superblock and group descriptors of the filesystem in r,
// which is size bytes long. When the journal needs recovery, its committed
// transactions are replayed in memory (nothing is written). Errors match
// ErrNotExt4, ErrCorrupt (ErrChecksum) or ErrUnsupported, or are the
// reader's own.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	f, err := open(r, size)
	if err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	return f, nil
}

func open(r io.ReaderAt, size int64) (*FS, error) {
	f := &FS{r: r, size: size}
	if size < superblockOffset+superblockSize {
		return nil, fmt.Errorf("%w: %d bytes is too small for a filesystem", ErrNotExt4, size)
	}
	if err := f.load(); err != nil {
		return nil, err
	}
	if !f.sb.incompat(incompatRecover) {
		return f, f.checkJournal()
	}
	o, err := f.replayJournal()
	if err != nil {
		return nil, fmt.Errorf("replaying the journal: %w", err)
	}
	if o == nil {
		return f, nil
	}
	// Reread everything through the replayed blocks.
	bs := f.bs
	*f = FS{r: o, size: size}
	if err := f.load(); err != nil {
		return nil, fmt.Errorf("after journal replay: %w", err)
	}
	if f.bs != bs {
		return nil, fmt.Errorf("%w: the journal changes the block size", ErrCorrupt)
	}
	f.replayed = true
	return f, nil
}

// load decodes the superblock and group descriptors through f.r.
func (f *FS) load() error {
	raw := make([]byte, superblockSize)
	if _, err := f.r.ReadAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	sb, err := decodeSuperblock(raw)
	if err != nil {
		return err
	}
	if err := sb.validate(raw); err != nil {
		return err
	}
	f.sb = sb
	f.bits = uint(10 + sb.sLogBlockSize)
	f.bs = 1 << f.bits
	if sb.sBlocksCount > uint64(f.size)>>f.bits {
		return fmt.Errorf("%w: image has %d bytes, the filesystem claims %d blocks of %d", ErrCorrupt, f.size, sb.sBlocksCount, f.bs)
	}
	f.ngroup = (sb.sBlocksCount - uint64(sb.sFirstDataBlock) + uint64(sb.sBlocksPerGroup) - 1) / uint64(sb.sBlocksPerGroup)
	if sb.roCompat(roCompatMetadataCsum) {
		f.csum = true
		if sb.incompat(incompatCsumSeed) {
			f.csumSeed = sb.sChecksumSeed
		} else {
			f.csumSeed = crc32c(^uint32(0), sb.sUUID[:])
		}
	}
	f.hashSign = sb.sFlags&0x2 == 0 // EXT2_FLAGS_UNSIGNED_HASH; signed otherwise (x86 default)
	f.blocks.max = int(blockCacheBytes / f.bs)
	if f.blocks.max < 16 {
		f.blocks.max = 16
	}
	if err := f.readGroups(); err != nil {
		return err
	}
	f.itable.max = f.itableSize()
	f.inodes.max = f.inodeCacheSize()
	return nil
}

// inodeCacheSize is the inode cache's bound: the inodes in use by the
// group descriptors' free counts (a damaged count only moves the bound
// within [inodeCacheMin, inodeCacheMax]).
func (f *FS) inodeCacheSize() int {
	ipg := uint64(f.sb.sInodesPerGroup)
	var used uint64
	for g := range f.groups {
		used += ipg - min(uint64(f.groups[g].bgFreeInodesCount), ipg)
	}
	used += used / 8
	return int(min(max(used, inodeCacheMin), inodeCacheMax))
}

// BlockSize returns the filesystem block size in bytes.
func (f *FS) BlockSize() int { return int(f.bs) }

// descPerBlock is how many group descriptors fit a block.
func (f *FS) descPerBlock() uint64 { return f.bs / uint64(f.sb.sDescSize) }

// hasSuper reports whether group g holds a superblock backup (ext4_bg_has_super).
func (f *FS) hasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if f.sb.compat(compatSparseSuper2) {
		return g == uint64(f.sb.sBackupBgs[0]) || g == uint64(f.sb.sBackupBgs[1])
	}
	if g <= 1 || !f.sb.roCompat(roCompatSparseSuper) {
		return true
	}
	if g&1 == 0 {
		return false
	}
	for _, base := range []uint64{3, 5, 7} {
		n := base
		for n < g {
			n *= base
		}
		if n == g {
			return true
		}
	}
	return false
}

// descBlock is the location of group descriptor block nr (descriptor_loc):
// contiguous after the superblock, except that with meta_bg each
// meta-group from s_first_meta_bg on keeps its own block in its first group.
func (f *FS) descBlock(nr uint64) uint64 {
	first := uint64(f.sb.sFirstDataBlock)
	if !f.sb.incompat(incompatMetaBG) || nr < uint64(f.sb.sFirstMetaBg) {
		// The superblock's own block: 1 with 1 KiB blocks, else 0.
		var sbBlock uint64
		if f.bs == 1024 {
			sbBlock = 1
		}
		return sbBlock + nr + 1
	}
	g := f.descPerBlock() * nr
	var hs uint64
	if f.hasSuper(g) {
		hs = 1
	}
	if f.bs == 1024 && nr == 0 && first == 0 {
		hs++
	}
	return hs + g*uint64(f.sb.sBlocksPerGroup) + first
}

func (f *FS) readGroups() error {
	dpb := f.descPerBlock()
	nblocks := (f.ngroup + dpb - 1) / dpb
	f.groups = make([]groupDesc, f.ngroup)
	buf := make([]byte, f.bs)
	ds := uint64(f.sb.sDescSize)
	var badCsum []uint64
	for nr := uint64(0); nr < nblocks; nr++ {
		blk := f.descBlock(nr)
		if err := f.readDev(buf, blk); err != nil {
			return fmt.Errorf("group descriptor block %d: %w", blk, err)
		}
		for i := uint64(0); i < dpb && nr*dpb+i < f.ngroup; i++ {
			g := nr*dpb + i
			d, ok := f.decodeGroup(g, buf[i*ds:(i+1)*ds])
			if !ok {
				badCsum = append(badCsum, g)
			}
			if err := f.checkGroupLocation(g, &d); err != nil {
				return err
			}
			f.groups[g] = d
		}
	}
	if len(badCsum) > 0 {
		// The kernel mounts such a filesystem read-only, with a message.
		slog.Warn("ext4: group descriptor checksums do not match; reading on, as the kernel does read-only",
			"groups", len(badCsum), "first", badCsum[0])
	}
	return nil
}

// checkGroupLocation applies the location checks of the kernel's
// ext4_check_descriptors that refuse even a read-only mount: the bitmaps
// and the inode table lie within the group (within the filesystem with
// flex_bg).
func (f *FS) checkGroupLocation(g uint64, d *groupDesc) error {
	first := uint64(f.sb.sFirstDataBlock)
	last := f.sb.sBlocksCount - 1
	if !f.sb.incompat(incompatFlexBG) {
		first += g * uint64(f.sb.sBlocksPerGroup)
		if g != f.ngroup-1 {
			last = first + uint64(f.sb.sBlocksPerGroup) - 1
		}
	}
	itb := (uint64(f.sb.sInodesPerGroup)*uint64(f.sb.sInodeSize) + f.bs - 1) / f.bs
	switch {
	case d.bgBlockBitmap < first || d.bgBlockBitmap > last:
		return fmt.Errorf("%w: block bitmap for group %d not in group (block %d)", ErrCorrupt, g, d.bgBlockBitmap)
	case d.bgInodeBitmap < first || d.bgInodeBitmap > last:
		return fmt.Errorf("%w: inode bitmap for group %d not in group (block %d)", ErrCorrupt, g, d.bgInodeBitmap)
	case d.bgInodeTable < first || d.bgInodeTable+itb-1 > last:
		return fmt.Errorf("%w: inode table for group %d not in group (block %d)", ErrCorrupt, g, d.bgInodeTable)
	}
	return nil
}

// decodeGroup decodes group g's descriptor and reports whether its
// checksum (metadata_csum or gdt_csum) matches.
func (f *FS) decodeGroup(g uint64, b []byte) (groupDesc, bool) {
	le16 := func(o int) uint16 { return binary.LittleEndian.Uint16(b[o:]) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	d := groupDesc{
		bgBlockBitmap:     uint64(le32(0x0)),
		bgInodeBitmap:     uint64(le32(0x4)),
		bgInodeTable:      uint64(le32(0x8)),
		bgFreeBlocksCount: uint32(le16(0xC)),
		bgFreeInodesCount: uint32(le16(0xE)),
		bgUsedDirsCount:   uint32(le16(0x10)),
		bgFlags:           le16(0x12),
		bgChecksum:        le16(0x1E),
		bgItableUnused:    uint32(le16(0x1C)),
	}
	if len(b) >= 64 {
		d.bgBlockBitmap |= uint64(le32(0x20)) << 32
		d.bgInodeBitmap |= uint64(le32(0x24)) << 32
		d.bgInodeTable |= uint64(le32(0x28)) << 32
		d.bgFreeBlocksCount |= uint32(le16(0x2C)) << 16
		d.bgFreeInodesCount |= uint32(le16(0x2E)) << 16
		d.bgUsedDirsCount |= uint32(le16(0x30)) << 16
		d.bgItableUnused |= uint32(le16(0x32)) << 16
	}
	if f.csum {
		c := crc32c(f.csumSeed, le32b(uint32(g)))
		c = crc32c(c, b[:0x1E])
		c = crc32c(c, []byte{0, 0})
		c = crc32c(c, b[0x20:])
		return d, uint16(c) == d.bgChecksum
	}
	if f.sb.roCompat(roCompatGdtCsum) {
		c := crc16(0xFFFF, f.sb.sUUID[:])
		c = crc16(c, le32b(uint32(g)))
		c = crc16(c, b[:0x1E])
		if len(b) > 0x20 && f.sb.incompat(incompat64bit) {
			c = crc16(c, b[0x20:])
		}
		return d, c == d.bgChecksum
	}
	return d, true
}

// maxWarned bounds warnOnce's memory; past it, warnings are dropped.
const maxWarned = 1024

// warnOnce logs a warning about damage the first time key is seen.
func (f *FS) warnOnce(key, msg string, args ...any) {
	f.mu.Lock()
	if f.warned == nil {
		f.warned = map[string]bool{}
	}
	seen := f.warned[key] || len(f.warned) >= maxWarned
	if !seen {
		f.warned[key] = true
	}
	f.mu.Unlock()
	if !seen {
		slog.Warn(msg, args...)
	}
}

// readDev reads one whole block straight from the device.
func (f *FS) readDev(p []byte, blk uint64) error {
	if blk >= f.sb.sBlocksCount {
		return fmt.Errorf("%w: block %d beyond the end (%d blocks)", ErrCorrupt, blk, f.sb.sBlocksCount)
	}
	n, err := f.r.ReadAt(p, int64(blk<<f.bits))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: short read of block %d", ErrCorrupt, blk)
	}
	return err
}

// block returns metadata block blk through the block cache. The returned
// slice is shared: callers must not modify it.
func (f *FS) block(blk uint64) ([]byte, error) {
	f.mu.Lock()
	if v, ok := f.blocks.get(blk); ok {
		f.mu.Unlock()
		return v.([]byte), nil
	}
	f.mu.Unlock()
	b := make([]byte, f.bs)
	if err := f.readDev(b, blk); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.blocks.put(blk, b)
	f.mu.Unlock()
	return b, nil
}

// lru is a small least-recently-used map; callers hold FS.mu.
type lru struct {
	max int
	l   list.List
	m   map[uint64]*list.Element
}

type lruEntry struct {
	k uint64
	v any
}

func (c *lru) get(k uint64) (any, bool) {
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	c.l.MoveToFront(e)
	return e.Value.(*lruEntry).v, true
}

func (c *lru) put(k uint64, v any) {
	if c.m == nil {
		c.m = map[uint64]*list.Element{}
	}
	if e, ok := c.m[k]; ok {
		e.Value.(*lruEntry).v = v
		c.l.MoveToFront(e)
		return
	}
	c.m[k] = c.l.PushFront(&lruEntry{k, v})
	for c.l.Len() > c.max {
		e := c.l.Back()
		c.l.Remove(e)
		delete(c.m, e.Value.(*lruEntry).k)
	}
}
