package ext4

import syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host

// Statfs returns what statfs(2) reports for the filesystem mounted
// read-only by the kernel: blocks exclude the metadata overhead, the free
// counts are the group descriptors' sums, and the available count keeps
// back the reserved blocks and the kernel's reserved clusters.
func (f *FS) Statfs() Statfs {
	f.statfsOnce.Do(f.computeStatfs)
	return f.statfs
}

func (f *FS) computeStatfs() {
	sb := f.sb
	cbits := uint(sb.sLogClusterSize - sb.sLogBlockSize) // log2(blocks per cluster)
	var freeClusters, freeInodes uint64
	for i := range f.groups {
		freeClusters += uint64(f.groups[i].bgFreeBlocksCount)
		freeInodes += uint64(f.groups[i].bgFreeInodesCount)
	}
	overhead := f.overheadClusters()
	st := Statfs{BlockSize: uint32(f.bs), NameLen: 255, Files: uint64(sb.sInodesCount), FFree: freeInodes}
	if o := overhead << cbits; o < sb.sBlocksCount {
		st.Blocks = sb.sBlocksCount - o
	}
	st.BFree = freeClusters << cbits
	var resv uint64
	if sb.incompat(incompatExtents) {
		resv = min((sb.sBlocksCount>>cbits)/50, 4096) << cbits
	}
	if r := sb.sRBlocksCount + resv; st.BFree >= r {
		st.BAvail = st.BFree - r
	}
	f.statfs = st
}

// overheadClusters mirrors the kernel's ext4_calculate_overhead: the
// superblock's value for bigalloc, otherwise per-group metadata plus the
// internal journal.
func (f *FS) overheadClusters() uint64 {
	sb := f.sb
	if sb.roCompat(roCompatBigalloc) && sb.sOverheadClusters != 0 && uint64(sb.sOverheadClusters) <= sb.sBlocksCount {
		return uint64(sb.sOverheadClusters)
	}
	cbits := uint(sb.sLogClusterSize - sb.sLogBlockSize)
	itb := (uint64(sb.sInodesPerGroup)*uint64(sb.sInodeSize) + f.bs - 1) / f.bs
	overhead := uint64(sb.sFirstDataBlock) >> cbits
	gdbCount := (f.ngroup + f.descPerBlock() - 1) / f.descPerBlock()
	for g := uint64(0); g < f.ngroup; g++ {
		if sb.roCompat(roCompatBigalloc) {
			overhead += f.bigallocGroupOverhead(g, itb)
			continue
		}
		var hs uint64
		if f.hasSuper(g) {
			hs = 1
		}
		overhead += hs + f.groupDescBlocks(g, gdbCount) + hs*uint64(sb.sReservedGdtBlocks) + itb + 2
	}
	if sb.compat(compatHasJournal) && sb.sJournalInum != 0 {
		if in, err := f.inode(uint64(sb.sJournalInum)); err == nil && in.fileType() == syscall.S_IFREG {
			overhead += ((in.iSize >> f.bits) + (1 << cbits) - 1) >> cbits
		}
	}
	return overhead
}

// groupDescBlocks is ext4_bg_num_gdb: descriptor blocks held by group g.
func (f *FS) groupDescBlocks(g, gdbCount uint64) uint64 {
	dpb := f.descPerBlock()
	if !f.sb.incompat(incompatMetaBG) || g/dpb < uint64(f.sb.sFirstMetaBg) {
		if !f.hasSuper(g) {
			return 0
		}
		if f.sb.incompat(incompatMetaBG) {
			return uint64(f.sb.sFirstMetaBg)
		}
		return gdbCount
	}
	first := g / dpb * dpb
	if g == first || g == first+1 || g == first+dpb-1 {
		return 1
	}
	return 0
}

// bigallocGroupOverhead counts the clusters of group g holding metadata
// (count_overhead with bigalloc).
func (f *FS) bigallocGroupOverhead(g, itb uint64) uint64 {
	sb := f.sb
	cbits := uint(sb.sLogClusterSize - sb.sLogBlockSize)
	first := uint64(sb.sFirstDataBlock) + g*uint64(sb.sBlocksPerGroup)
	last := first + uint64(sb.sBlocksPerGroup) - 1
	used := map[uint64]bool{}
	count := 0
	mark := func(b uint64) { used[(b-first)>>cbits] = true; count++ }
	if f.ngroup > 4096 {
		return 0 // quadratic; such images carry s_overhead_clusters anyway
	}
	for i := range f.groups {
		gd := &f.groups[i]
		if b := gd.bgBlockBitmap; b >= first && b <= last {
			mark(b)
		}
		if b := gd.bgInodeBitmap; b >= first && b <= last {
			mark(b)
		}
		if b := gd.bgInodeTable; b >= first && b+itb <= last {
			for j := uint64(0); j < itb; j++ {
				mark(b + j)
			}
		}
		if uint64(i) != g {
			continue
		}
		s := uint64(0)
		if f.hasSuper(g) {
			mark(first)
			s = 1
		}
		j := f.groupDescBlocks(g, (f.ngroup+f.descPerBlock()-1)/f.descPerBlock())
		if s+j > uint64(sb.sBlocksPerGroup) {
			j = uint64(sb.sBlocksPerGroup) - s
		}
		for ; j > 0; j-- {
			mark(first + s)
			s++
		}
	}
	if count == 0 {
		return 0
	}
	return uint64(len(used))
}
