package verity

import (
	"hash"
	"math/bits"
	"sync"
)

// maxLevels is cryptsetup's VERITY_MAX_LEVELS.
const maxLevels = 63

// Layout is where a tree lies on its hash device.
type Layout struct {
	Levels     int   // 0 when there is a single data block (the root hashes it)
	TreeOffset int64 // byte offset of the tree's first hash block
	TreeBlocks uint64
	// HashDeviceSize is the size the hash device needs, from its byte 0 to
	// the tree's end (for a tree appended to its image: the whole file).
	HashDeviceSize int64
}

// geometry is the computed shape of one tree, in hash blocks.
type geometry struct {
	p          *Params
	alg        algorithm
	digestSize int
	entrySize  int  // bytes per digest slot in a hash block
	bits       uint // log2 of digests per hash block
	levels     int
	levelStart []uint64 // absolute hash block of each level; [0] hashes the data
	levelSize  []uint64 // hash blocks in each level
	treeStart  uint64
	treeEnd    uint64
	pool       sync.Pool // of hash.Hash
}

// newGeometry lays out the tree as cryptsetup's hash_levels and the
// kernel's dm-verity do.
func newGeometry(p *Params) (*geometry, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	g := &geometry{p: p, alg: algorithms[p.Algorithm]}
	g.digestSize = g.alg.size
	per := p.HashBlockSize / uint32(g.digestSize)
	if per < 2 {
		return nil, errorf(ErrFormat, "a %d-byte hash block cannot hold two %s digests", p.HashBlockSize, p.Algorithm)
	}
	g.bits = uint(bits.Len32(per) - 1)
	g.entrySize = int(p.HashBlockSize >> g.bits)
	if p.HashType == 0 {
		g.entrySize = g.digestSize
	}
	for g.bits*uint(g.levels) < 64 && (p.DataBlocks-1)>>(g.bits*uint(g.levels)) != 0 {
		g.levels++
	}
	if g.levels > maxLevels {
		return nil, errorf(ErrFormat, "%d tree levels", g.levels)
	}
	hbs := uint64(p.HashBlockSize)
	if p.NoSuperblock {
		g.treeStart = uint64(p.HashOffset) / hbs
	} else {
		g.treeStart = (uint64(p.HashOffset) + SuperblockSize + hbs - 1) / hbs
	}
	g.levelStart = make([]uint64, g.levels)
	g.levelSize = make([]uint64, g.levels)
	pos := g.treeStart
	for i := g.levels - 1; i >= 0; i-- {
		g.levelStart[i] = pos
		shift := uint(i+1) * g.bits
		s := p.DataBlocks >> shift
		if shift >= 64 || p.DataBlocks&(1<<shift-1) != 0 {
			s++
		}
		g.levelSize[i] = s
		pos += s
	}
	g.treeEnd = pos
	if g.treeEnd > uint64(maxInt64)/hbs {
		return nil, errorf(ErrFormat, "hash device end overflows")
	}
	g.pool.New = func() any { return g.alg.new() }
	return g, nil
}

func (g *geometry) layout() Layout {
	hbs := int64(g.p.HashBlockSize)
	return Layout{
		Levels:         g.levels,
		TreeOffset:     int64(g.treeStart) * hbs,
		TreeBlocks:     g.treeEnd - g.treeStart,
		HashDeviceSize: int64(g.treeEnd) * hbs,
	}
}

// Layout computes where p's tree lies.
func (p *Params) Layout() (Layout, error) {
	g, err := newGeometry(p)
	if err != nil {
		return Layout{}, prefix(err)
	}
	return g.layout(), nil
}

// perBlock is the number of digests in a hash block.
func (g *geometry) perBlock() uint64 { return 1 << g.bits }

// hashOffset is the byte offset of hash block idx of level on the hash device.
func (g *geometry) hashOffset(level int, idx uint64) int64 {
	return int64(g.levelStart[level]+idx) * int64(g.p.HashBlockSize)
}

// sum appends the digest of one data or hash block to dst.
func (g *geometry) sum(dst, block []byte) []byte {
	h := g.pool.Get().(hash.Hash)
	h.Reset()
	if g.p.HashType == 1 {
		h.Write(g.p.Salt)
		h.Write(block)
	} else {
		h.Write(block)
		h.Write(g.p.Salt)
	}
	dst = h.Sum(dst)
	g.pool.Put(h)
	return dst
}

// entry returns the digest slot for child idx within its parent hash block.
func (g *geometry) entry(block []byte, child uint64) []byte {
	off := int(child&(g.perBlock()-1)) * g.entrySize
	return block[off : off+g.digestSize]
}

// AppendedHashOffset is where a tree appended to an image of dataSize bytes
// starts: the image's size rounded up to whole data blocks. That many data
// blocks are covered: the bytes between dataSize and the offset must be
// zeros written (or a hole) before Format reads them.
func AppendedHashOffset(dataSize int64, dataBlockSize uint32) int64 {
	bs := int64(dataBlockSize)
	return (dataSize + bs - 1) / bs * bs
}
