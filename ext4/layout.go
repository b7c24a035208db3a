package ext4

import (
	"fmt"
	"slices"
)

// Layout of the metadata a path lookup reads, for a remote source to fetch
// at mount time: with the inode tables and directory blocks in memory, a
// cold file's first byte costs one round trip (its data), not one per
// directory level and inode.

// InodeTableRanges returns the byte ranges [off, off+n) on the device of
// the inode-table records in use (up to each group's itable_unused mark
// when the group descriptors are checksummed; whole tables otherwise),
// merged where adjacent. It reads nothing.
func (f *FS) InodeTableRanges() [][2]int64 {
	var out [][2]int64
	for g := uint64(0); g < f.ngroup; g++ {
		if used := f.usedRecords(g); used > 0 {
			out = appendRange(out, int64(f.groups[g].bgInodeTable*f.bs), int64(used*uint64(f.sb.sInodeSize)))
		}
	}
	return out
}

// DirectoryRanges returns the byte ranges on the device of the blocks of
// every directory (and of their extent-tree blocks), found by reading the
// inode tables in use (InodeTableRanges: fetch those first, they are read
// here in 1 MiB pieces). Only groups whose descriptor counts directories
// (bg_used_dirs_count) are read, each only up to its last directory: a
// tree's directories are a small part of its inodes. It stops, with what
// it found so far, once the directory blocks reach limit bytes or the
// inode tables read reach 4*limit, so a huge image never costs a huge
// scan. A damaged inode is skipped, and a wrong count only leaves
// directories out: the lookup that needs one reads it then.
func (f *FS) DirectoryRanges(limit int64) ([][2]int64, error) {
	return f.DirectoryRangesFetch(limit, nil)
}

// DirectoryRangesFetch is DirectoryRanges that first hands fetch the
// device ranges of the directories' extent index blocks (found in the
// inodes, not read), so that a remote source loads them all at once before
// they are walked: one round trip for every directory, not one each.
func (f *FS) DirectoryRangesFetch(limit int64, fetch func([][2]int64)) ([][2]int64, error) {
	dirs, err := f.directoryInodes(limit)
	if fetch != nil {
		var idx [][2]int64
		for _, in := range dirs {
			idx = f.appendIndexBlocks(idx, in)
		}
		if len(idx) > 0 {
			fetch(idx)
		}
	}
	var out [][2]int64
	var total int64
	for _, in := range dirs {
		if out, total = f.appendDirBlocks(out, total, in); total >= limit {
			break
		}
	}
	return out, err
}

// directoryInodes decodes the directories found in the inode tables, in
// table order, until their sizes add up to limit or the tables read reach
// 4*limit; on a read error it returns those found so far with it.
func (f *FS) directoryInodes(limit int64) ([]*inode, error) {
	isz := uint64(f.sb.sInodeSize)
	ipg := uint64(f.sb.sInodesPerGroup)
	var dirs []*inode
	var total, scanned int64
	buf := make([]byte, (1<<20)/isz*isz)
	for g := uint64(0); g < f.ngroup; g++ {
		d := &f.groups[g]
		want, n := uint64(d.bgUsedDirsCount), f.usedRecords(g)*isz
		for done := uint64(0); done < n && want > 0; {
			b := buf[:min(uint64(len(buf)), n-done)]
			if k, err := f.r.ReadAt(b, int64(d.bgInodeTable*f.bs+done)); k < len(b) {
				return dirs, fmt.Errorf("ext4: reading the inode table at %d: %w", d.bgInodeTable*f.bs+done, err)
			}
			for o := uint64(0); o+isz <= uint64(len(b)) && want > 0; o += isz {
				rec := b[o : o+isz]
				if !isDirRecord(rec) {
					continue
				}
				want--
				in, err := f.decodeInode(g*ipg+(done+o)/isz+1, slices.Clone(rec))
				if err != nil || !in.isDir() || in.iFlags&flagInlineData != 0 {
					continue
				}
				dirs = append(dirs, in)
				// At least a block each, so that empty directories cannot grow the list unbounded.
				if total += int64(max(f.dirBlocks(in), 1) * f.bs); total >= limit {
					return dirs, nil
				}
			}
			done += uint64(len(b))
			scanned += int64(len(b))
			if scanned >= 4*limit {
				return dirs, nil
			}
		}
	}
	return dirs, nil
}

// appendIndexBlocks adds the blocks the extent root in the inode points to
// (the next level of a directory's extent tree, when it has one).
func (f *FS) appendIndexBlocks(out [][2]int64, in *inode) [][2]int64 {
	if in.iFlags&flagExtents == 0 {
		return out
	}
	node := in.iBlock[:]
	h, err := decodeExtentHeader(node)
	if err != nil || h.ehDepth == 0 {
		return out
	}
	// decodeExtentHeader checked that the entries fit in i_block.
	for i := 0; i < int(h.ehEntries); i++ {
		if child := eiLeaf(node[12+12*i : 24+12*i]); child != 0 && child < f.sb.sBlocksCount {
			out = appendRange(out, int64(child*f.bs), int64(f.bs))
		}
	}
	return out
}

// usedRecords is how many records of group g's inode table can hold
// inodes in use: up to the itable_unused mark when the group descriptors
// are checksummed (none in an INODE_UNINIT group), the whole table
// otherwise, never past s_inodes_count.
func (f *FS) usedRecords(g uint64) uint64 {
	d := &f.groups[g]
	ipg := uint64(f.sb.sInodesPerGroup)
	used := ipg
	if f.csum || f.sb.roCompat(roCompatGdtCsum) {
		if d.bgFlags&bgInodeUninit != 0 {
			return 0
		}
		used = ipg - min(uint64(d.bgItableUnused), ipg)
	}
	if first := g * ipg; first+used > uint64(f.sb.sInodesCount) {
		used = uint64(f.sb.sInodesCount) - min(first, uint64(f.sb.sInodesCount))
	}
	return used
}

// isDirRecord: a raw inode record of a live directory (mode S_IFDIR, links).
func isDirRecord(b []byte) bool {
	mode := uint16(b[iModeOff]) | uint16(b[iModeOff+1])<<8
	links := uint16(b[iLinksOff]) | uint16(b[iLinksOff+1])<<8
	return mode&0xF000 == 0x4000 && links != 0
}

// appendDirBlocks adds the physical blocks of directory in to out, and the
// extent-tree blocks mapping them (read, so that the walk below costs
// nothing later).
func (f *FS) appendDirBlocks(out [][2]int64, total int64, in *inode) ([][2]int64, int64) {
	n := f.dirBlocks(in)
	for lblk := uint64(0); lblk < n; {
		phys, run, _, err := f.mapBlockRaw(in, lblk)
		if err != nil || run == 0 {
			return out, total
		}
		run = min(run, n-lblk)
		if phys != 0 {
			out = appendRange(out, int64(phys*f.bs), int64(run*f.bs))
			total += int64(run * f.bs)
		}
		lblk += run
	}
	return out, total
}

// appendRange adds [off, off+n) to out, merged with the last range when
// they touch.
func appendRange(out [][2]int64, off, n int64) [][2]int64 {
	if k := len(out) - 1; k >= 0 && out[k][0]+out[k][1] == off {
		out[k][1] += n
		return out
	}
	return append(out, [2]int64{off, n})
}
