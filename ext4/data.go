package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io"

	"github.com/chestfs/chestfs/blockdev"
)

const (
	extentMagic    = 0xF30A
	extentMaxDepth = 5
	initMaxLen     = 32768 // ee_len above this marks an unwritten extent
)

// extentHeader is struct ext4_extent_header.
type extentHeader struct {
	ehMagic, ehEntries, ehMax, ehDepth uint16
}

func decodeExtentHeader(b []byte) (extentHeader, error) {
	h := extentHeader{
		ehMagic:   binary.LittleEndian.Uint16(b[0:]),
		ehEntries: binary.LittleEndian.Uint16(b[2:]),
		ehMax:     binary.LittleEndian.Uint16(b[4:]),
		ehDepth:   binary.LittleEndian.Uint16(b[6:]),
	}
	if h.ehMagic != extentMagic {
		return h, fmt.Errorf("%w: extent header magic %#x", ErrCorrupt, h.ehMagic)
	}
	if h.ehEntries > h.ehMax || 12+12*int(h.ehMax) > len(b) || h.ehDepth > extentMaxDepth {
		return h, fmt.Errorf("%w: extent header entries %d max %d depth %d", ErrCorrupt, h.ehEntries, h.ehMax, h.ehDepth)
	}
	return h, nil
}

// eiLeaf is an extent index's ei_leaf_hi:ei_leaf_lo, the block of the
// next level of the tree (struct ext4_extent_idx, e 12 bytes).
func eiLeaf(e []byte) uint64 {
	return uint64(binary.LittleEndian.Uint16(e[8:]))<<32 | uint64(binary.LittleEndian.Uint32(e[4:]))
}

// eeStart is an extent's ee_start_hi:ee_start_lo, its first physical
// block (struct ext4_extent, e 12 bytes).
func eeStart(e []byte) uint64 {
	return uint64(binary.LittleEndian.Uint16(e[6:]))<<32 | uint64(binary.LittleEndian.Uint32(e[8:]))
}

// mapBlock maps logical block lblk of a file to a physical block. It
// returns phys 0 for a hole or an unwritten extent (both read as zeros)
// and run, the number of blocks from lblk that map the same way
// (contiguously), at least 1.
func (f *FS) mapBlock(in *inode, lblk uint64) (phys, run uint64, err error) {
	phys, run, unwritten, err := f.mapBlockRaw(in, lblk)
	if unwritten {
		phys = 0
	}
	return phys, run, err
}

// mapBlockRaw is mapBlock that also maps unwritten extents, reporting them
// as such: the kernel reads a directory's blocks from disk even there
// (ext4_bread), so directory entries in an unwritten extent are listed.
func (f *FS) mapBlockRaw(in *inode, lblk uint64) (phys, run uint64, unwritten bool, err error) {
	if in.iFlags&flagExtents != 0 {
		return f.mapExtent(in, lblk)
	}
	phys, run, err = f.mapIndirect(in, lblk)
	return phys, run, false, err
}

func (f *FS) mapExtent(in *inode, lblk uint64) (uint64, uint64, bool, error) {
	if lblk >= 1<<32 {
		return 0, 1 << 32, false, nil
	}
	node := in.iBlock[:]
	limit := uint64(1 << 32) // first logical block past the current subtree
	wantDepth := -1
	for level := 0; ; level++ {
		h, err := decodeExtentHeader(node)
		if err != nil {
			return 0, 0, false, err
		}
		if wantDepth >= 0 && int(h.ehDepth) != wantDepth || level > extentMaxDepth {
			return 0, 0, false, fmt.Errorf("%w: extent tree depth %d at level %d", ErrCorrupt, h.ehDepth, level)
		}
		n := int(h.ehEntries)
		ent := func(i int) []byte { return node[12+12*i : 24+12*i] }
		// Last entry whose first block is <= lblk.
		lo, hi := 0, n
		for lo < hi {
			m := (lo + hi) / 2
			if uint64(binary.LittleEndian.Uint32(ent(m))) <= lblk {
				lo = m + 1
			} else {
				hi = m
			}
		}
		i := lo - 1
		if i+1 < n {
			if next := uint64(binary.LittleEndian.Uint32(ent(i + 1))); next < limit {
				limit = next
			}
		}
		if limit <= lblk || i >= 0 && uint64(binary.LittleEndian.Uint32(ent(i))) > lblk {
			return 0, 0, false, fmt.Errorf("%w: extent entries out of order", ErrCorrupt)
		}
		if i < 0 {
			return 0, limit - lblk, false, nil
		}
		e := ent(i)
		if h.ehDepth == 0 {
			start := uint64(binary.LittleEndian.Uint32(e[0:]))
			ln := uint64(binary.LittleEndian.Uint16(e[4:]))
			phys := eeStart(e)
			unwritten := ln > initMaxLen
			if unwritten {
				ln -= initMaxLen
			}
			if ln == 0 {
				return 0, 0, false, fmt.Errorf("%w: empty extent at block %d", ErrCorrupt, start)
			}
			if lblk >= start+ln {
				return 0, limit - lblk, false, nil
			}
			if phys+ln > f.sb.sBlocksCount || phys == 0 {
				return 0, 0, false, fmt.Errorf("%w: extent maps to blocks %d..%d beyond the end", ErrCorrupt, phys, phys+ln)
			}
			return phys + (lblk - start), start + ln - lblk, unwritten, nil
		}
		child := eiLeaf(e)
		blk, err := f.block(child)
		if err != nil {
			return 0, 0, false, err
		}
		if f.csum {
			if err := f.verifyExtentBlock(in, blk); err != nil {
				return 0, 0, false, fmt.Errorf("extent block %d: %w", child, err)
			}
		}
		node = blk
		wantDepth = int(h.ehDepth) - 1
	}
}

func (f *FS) verifyExtentBlock(in *inode, b []byte) error {
	h, err := decodeExtentHeader(b)
	if err != nil {
		return err
	}
	t := 12 + 12*int(h.ehMax)
	if t+4 > len(b) {
		return fmt.Errorf("%w: no room for the extent tail", ErrCorrupt)
	}
	if want, got := binary.LittleEndian.Uint32(b[t:]), crc32c(in.csumSeed, b[:t]); want != got {
		return fmt.Errorf("%w: extent block checksum %#x, computed %#x", ErrChecksum, want, got)
	}
	return nil
}

// mapIndirect maps through the ext2/ext3 block map: 12 direct blocks, then
// single, double and triple indirect blocks. Zero entries are holes.
func (f *FS) mapIndirect(in *inode, lblk uint64) (uint64, uint64, error) {
	apb := f.bs / 4
	entry := func(b []byte, i uint64) uint64 { return uint64(binary.LittleEndian.Uint32(b[4*i:])) }
	contiguous := func(b []byte, i, n uint64) uint64 {
		p := entry(b, i)
		r := uint64(1)
		for i+r < n {
			q := entry(b, i+r)
			if p == 0 && q != 0 || p != 0 && q != p+r {
				break
			}
			r++
		}
		return r
	}
	check := func(p uint64) (uint64, error) {
		if p >= f.sb.sBlocksCount {
			return 0, fmt.Errorf("%w: block map points to block %d beyond the end", ErrCorrupt, p)
		}
		return p, nil
	}
	if lblk < 12 {
		p, err := check(entry(in.iBlock[:], lblk))
		return p, contiguous(in.iBlock[:], lblk, 12), err
	}
	rel := lblk - 12
	depth, span := 1, apb
	for rel >= span {
		rel -= span
		depth++
		if depth > 3 {
			return 0, 1, nil // beyond the triple-indirect range: a hole
		}
		span *= apb
	}
	blkno := entry(in.iBlock[:], uint64(11+depth))
	for d := depth; d > 0; d-- {
		span /= apb // blocks covered by one entry at this level
		if blkno == 0 {
			return 0, span*apb - (rel % (span * apb)), nil
		}
		if _, err := check(blkno); err != nil {
			return 0, 0, err
		}
		b, err := f.block(blkno)
		if err != nil {
			return 0, 0, err
		}
		idx := rel / span
		rel %= span
		if d == 1 {
			p, err := check(entry(b, idx))
			return p, contiguous(b, idx, apb), err
		}
		blkno = entry(b, idx)
	}
	return 0, 1, nil
}

// readData reads file content at off into p (within i_size).
func (f *FS) readData(in *inode, p []byte, off uint64) error {
	if in.iFlags&flagInlineData != 0 {
		d, err := f.inlineData(in)
		if err != nil {
			return err
		}
		for i := range p {
			p[i] = 0
		}
		if off < uint64(len(d)) {
			copy(p, d[off:])
		}
		return nil
	}
	for len(p) > 0 {
		lblk := off >> f.bits
		phys, run, err := f.mapBlock(in, lblk)
		if err != nil {
			return err
		}
		inBlk := off & (f.bs - 1)
		n := uint64(len(p))
		if run < (n+inBlk+f.bs-1)>>f.bits {
			n = run<<f.bits - inBlk
		}
		if phys == 0 {
			clear(p[:n])
		} else {
			// The run's end bounds the readahead below (a remote source).
			end := f.runEnd(in, lblk, phys, run)
			k, err := blockdev.ReadAtRun(f.r, p[:n], int64(phys<<f.bits+inBlk), int64(end<<f.bits))
			if k < int(n) {
				if err == nil || errors.Is(err, io.EOF) {
					err = fmt.Errorf("%w: short read at block %d", ErrCorrupt, phys)
				}
				return err
			}
		}
		p = p[n:]
		off += n
	}
	return nil
}

// maxRunProbes bounds the extents runEnd looks at past the one read.
const maxRunProbes = 8

// runEnd is the physical block where the data read at lblk stops being
// contiguous on the device: the end of its extent, extended over the next
// extents while each starts where the last ended. Extents end at block
// group boundaries (128 MiB with 4 KiB blocks) even when the file goes on
// next to them, and readahead that stopped there would let a streaming
// reader run dry once per boundary.
func (f *FS) runEnd(in *inode, lblk, phys, run uint64) uint64 {
	end := phys + run
	for i := 0; i < maxRunProbes; i++ {
		lblk += run
		var next uint64
		var err error
		next, run, err = f.mapBlock(in, lblk)
		if err != nil || next != end || run == 0 {
			break
		}
		end += run
	}
	return end
}

// ReadAt reads a regular file's content like io.ReaderAt: holes and
// unwritten extents read as zeros; fewer than len(p) bytes only at the end
// of the file, with io.EOF.
func (f *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	in, err := f.inode(ino)
	if err != nil {
		return 0, err
	}
	switch in.fileType() {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return 0, fmt.Errorf("ext4: inode %d: %w", ino, ErrIsDir)
	default:
		return 0, fmt.Errorf("ext4: inode %d is not a regular file (mode %#o)", ino, in.iMode)
	}
	if off < 0 {
		return 0, fmt.Errorf("ext4: inode %d: negative offset %d", ino, off)
	}
	if uint64(off) >= in.iSize {
		return 0, io.EOF
	}
	n := len(p)
	if rest := in.iSize - uint64(off); uint64(n) > rest {
		n = int(rest)
	}
	if err := f.readData(in, p[:n], uint64(off)); err != nil {
		return 0, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Readlink returns a symbolic link's target, up to its first NUL as the
// kernel reads it (nd_terminate_link): a fast symlink's from i_block, a
// slow one's from its first block, at most a block less one byte.
func (f *FS) Readlink(ino uint64) (string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if in.fileType() != syscall.S_IFLNK {
		return "", fmt.Errorf("ext4: inode %d: %w", ino, ErrNotSymlink)
	}
	if in.iSize > 65536 || in.iSize > f.bs && in.iFlags&flagInlineData == 0 {
		return "", fmt.Errorf("ext4: inode %d: %w: symlink of %d bytes", ino, ErrCorrupt, in.iSize)
	}
	if f.isFastSymlink(in) { // checked at decode: no NUL within i_size
		return string(in.iBlock[:in.iSize]), nil
	}
	b, err := f.slowSymlink(in)
	if err != nil {
		return "", fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b), nil
}

// slowSymlink reads the target bytes of a symlink kept in a block (or
// inline data): through ext4_bread, so an unwritten extent reads from disk.
func (f *FS) slowSymlink(in *inode) ([]byte, error) {
	if in.iFlags&flagInlineData != 0 {
		b := make([]byte, in.iSize)
		return b, f.readData(in, b, 0)
	}
	phys, _, _, err := f.mapBlockRaw(in, 0)
	if err != nil {
		return nil, err
	}
	if phys == 0 {
		return nil, fmt.Errorf("%w: symlink without a block", ErrCorrupt)
	}
	b, err := f.block(phys)
	if err != nil {
		return nil, err
	}
	return b[:min(in.iSize, f.bs-1)], nil
}
