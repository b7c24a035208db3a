package ext4

import (
	"errors"
	"fmt"
	"io"
)

// The inode-table cache: blocks of the inode tables, kept apart from the
// general block cache and sized to the tables in use (capped), and filled
// in runs. Listing a directory stats its entries, whose inodes are mostly
// neighbours in the table, so one miss reads the aligned run of
// itableReadahead blocks around it (the kernel's inode_readahead_blks):
// a tree walk then costs a read per 32 blocks (512 inodes of 256 bytes)
// instead of one per block. Kept in memory, the tables make a second walk
// of the tree free of device reads even after the kernel dropped its
// caches (the image never changes).

const (
	// itableReadahead is how many inode-table blocks one miss reads.
	itableReadahead = 32
	// itableCacheBytes caps the inode-table cache: 64 MiB holds the
	// tables of 262144 inodes of 256 bytes.
	itableCacheBytes = 64 << 20
)

// usedItable reports the blocks of group g's inode table that can hold
// inodes in use: [start, end), the records usedRecords counts (the kernel
// reads ahead only up to there, too).
func (f *FS) usedItable(g uint64) (start, end uint64) {
	start = f.groups[g].bgInodeTable
	end = start + (f.usedRecords(g)*uint64(f.sb.sInodeSize)+f.bs-1)/f.bs
	return start, min(end, f.sb.sBlocksCount)
}

// itableSize is the inode-table cache's bound in blocks: the used parts
// of all inode tables, at most itableCacheBytes, at least one run.
func (f *FS) itableSize() int {
	var n uint64
	for g := uint64(0); g < f.ngroup; g++ {
		if s, e := f.usedItable(g); e > s {
			n += e - s
		}
	}
	n = min(n, itableCacheBytes/f.bs)
	return int(max(n, itableReadahead))
}

// itableBlock returns block blk of group g's inode table through the
// inode-table cache, reading the aligned run around it on a miss. The
// returned slice is shared: callers must not modify it.
func (f *FS) itableBlock(g, blk uint64) ([]byte, error) {
	f.mu.Lock()
	if v, ok := f.itable.get(blk); ok {
		f.mu.Unlock()
		return v.([]byte), nil
	}
	f.mu.Unlock()
	start, end := f.usedItable(g)
	lo := max(start, blk&^(itableReadahead-1))
	hi := min(end, lo+itableReadahead)
	if blk < lo || blk >= hi {
		// Outside the table's used part (a damaged inode number or
		// group descriptor): that block alone.
		lo, hi = blk, blk+1
	}
	buf := make([]byte, (hi-lo)*f.bs)
	if err := f.readRun(buf, lo); err != nil {
		if hi-lo == 1 {
			return nil, err
		}
		// A bad neighbour (say, a block failing verification) must not
		// fail this inode: retry with the block alone.
		lo, hi, buf = blk, blk+1, buf[:f.bs]
		if err := f.readRun(buf, lo); err != nil {
			return nil, err
		}
	}
	var want []byte
	f.mu.Lock()
	for b := lo; b < hi; b++ {
		// A copy per block, so that evicting one frees its memory.
		c := make([]byte, f.bs)
		copy(c, buf[(b-lo)*f.bs:])
		if b == blk {
			want = c
		}
		if _, ok := f.itable.m[b]; !ok || b == blk {
			f.itable.put(b, c)
		}
	}
	f.mu.Unlock()
	return want, nil
}

// readRun reads whole blocks from blk on into p straight from the device.
func (f *FS) readRun(p []byte, blk uint64) error {
	n := uint64(len(p)) >> f.bits
	if blk+n > f.sb.sBlocksCount || blk+n < blk {
		return fmt.Errorf("%w: blocks %d..%d beyond the end (%d blocks)", ErrCorrupt, blk, blk+n, f.sb.sBlocksCount)
	}
	k, err := f.r.ReadAt(p, int64(blk<<f.bits))
	if k == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: short read of blocks %d..%d", ErrCorrupt, blk, blk+n)
	}
	return err
}
