package ext4

import (
	"cmp"
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
	isz := uint64(f.sb.sInodeSize)
	ipg := uint64(f.sb.sInodesPerGroup)
	trustUnused := f.csum || f.sb.roCompat(roCompatGdtCsum)
	var out [][2]int64
	for g := uint64(0); g < f.ngroup; g++ {
		d := &f.groups[g]
		used := ipg
		if trustUnused {
			if d.bgFlags&bgInodeUninit != 0 {
				continue
			}
			used = ipg - min(uint64(d.bgItableUnused), ipg)
		}
		if first := g * ipg; first+used > uint64(f.sb.sInodesCount) {
			used = uint64(f.sb.sInodesCount) - min(first, uint64(f.sb.sInodesCount))
		}
		if used == 0 {
			continue
		}
		out = appendRange(out, int64(d.bgInodeTable*f.bs), int64(used*isz))
	}
	return out
}

// DirectoryRanges returns the byte ranges on the device of the blocks of
// every directory (and of their extent-tree blocks), found by reading the
// inode tables in use (InodeTableRanges: fetch those first, they are read
// here in 1 MiB pieces). It stops, with what it found so far, once the
// directory blocks reach limit bytes or the inode tables read reach
// 4*limit, so a huge image never costs a huge scan. A damaged inode is
// skipped: the lookup that needs it reports the damage.
func (f *FS) DirectoryRanges(limit int64) ([][2]int64, error) {
	isz := int64(f.sb.sInodeSize)
	var out [][2]int64
	var total, scanned int64
	buf := make([]byte, (1<<20)/isz*isz)
	idx := f.tableIndex()
	for _, r := range f.InodeTableRanges() {
		for done := int64(0); done < r[1]; {
			b := buf[:min(int64(len(buf)), r[1]-done)]
			if k, err := f.r.ReadAt(b, r[0]+done); k < len(b) {
				return out, fmt.Errorf("ext4: reading the inode table at %d: %w", r[0]+done, err)
			}
			for o := int64(0); o+isz <= int64(len(b)); o += isz {
				rec := b[o : o+isz]
				if !isDirRecord(rec) {
					continue
				}
				ino, ok := idx.inoAt(r[0]+done+o, uint64(isz))
				if !ok {
					continue
				}
				in, err := f.decodeInode(ino, slices.Clone(rec))
				if err != nil || !in.isDir() || in.iFlags&flagInlineData != 0 {
					continue
				}
				out, total = f.appendDirBlocks(out, total, in)
				if total >= limit {
					return out, nil
				}
			}
			done += int64(len(b))
			scanned += int64(len(b))
			if scanned >= 4*limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// isDirRecord: a raw inode record of a live directory (mode S_IFDIR, links).
func isDirRecord(b []byte) bool {
	mode := uint16(b[iModeOff]) | uint16(b[iModeOff+1])<<8
	links := uint16(b[iLinksOff]) | uint16(b[iLinksOff+1])<<8
	return mode&0xF000 == 0x4000 && links != 0
}

// tableIndex finds the inode whose record is at a device byte position:
// the groups' inode tables sorted by start, searched in O(log groups) (a
// terabyte image has thousands of groups, and the scan asks per record).
type tableIndex struct {
	starts []uint64 // byte offset of each table, ascending
	groups []uint64 // the group of each
	span   uint64   // bytes in one table
	ipg    uint64
}

func (f *FS) tableIndex() *tableIndex {
	t := &tableIndex{span: uint64(f.sb.sInodesPerGroup) * uint64(f.sb.sInodeSize), ipg: uint64(f.sb.sInodesPerGroup)}
	order := make([]uint64, f.ngroup)
	for g := range order {
		order[g] = uint64(g)
	}
	slices.SortFunc(order, func(a, b uint64) int {
		return cmp.Compare(f.groups[a].bgInodeTable, f.groups[b].bgInodeTable)
	})
	for _, g := range order {
		t.starts = append(t.starts, f.groups[g].bgInodeTable*f.bs)
		t.groups = append(t.groups, g)
	}
	return t
}

// inoAt is the inode number whose record is at device byte pos.
func (t *tableIndex) inoAt(pos int64, isz uint64) (uint64, bool) {
	i, found := slices.BinarySearch(t.starts, uint64(pos))
	if !found {
		i--
	}
	if i < 0 || uint64(pos)-t.starts[i] >= t.span {
		return 0, false
	}
	return t.groups[i]*t.ipg + (uint64(pos)-t.starts[i])/isz + 1, true
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
