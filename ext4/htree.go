package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The htree index as the kernel walks it (fs/ext4/namei.c: dx_probe,
// ext4_htree_next_block, ext4_htree_fill_tree, ext4_dx_find_entry; and
// ext4_dx_readdir in dir.c), including what it does with damaged indexes:
// a malformed index (ERR_BAD_DX_DIR) sends readdir and lookup to a linear
// scan, while a checksum failure or an index pointing at a hole or a leaf
// fails them; readdir shows only the entries at or above the hash at which
// it enters each leaf.

// errBadDx marks a malformed htree index, the kernel's ERR_BAD_DX_DIR.
var errBadDx = errors.New("malformed htree index")

func badDx(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{ErrCorrupt, errBadDx}, args...)...)
}

// hashEOF is the hash after the last leaf (~0: no next leaf).
const hashEOF = ^uint32(0)

// dxBlockMask keeps the block number bits of a dx_entry (dx_get_block).
const dxBlockMask = 0x0fffffff

type dxFrame struct {
	b     []byte
	co    int // offset of limit/count
	count int
	at    int // current entry index
}

func (fr *dxFrame) hash(i int) uint32 { return binary.LittleEndian.Uint32(fr.b[fr.co+8*i:]) }
func (fr *dxFrame) block(i int) uint64 {
	return uint64(binary.LittleEndian.Uint32(fr.b[fr.co+8*i+4:]) & dxBlockMask)
}

// setCount reads a node's count, bounded by what the block holds (the
// kernel trusts it and would read past the block).
func (fr *dxFrame) setCount() {
	fr.count = min(int(binary.LittleEndian.Uint16(fr.b[fr.co+2:])), (len(fr.b)-fr.co)/8)
}

// search is dx_probe's binary search, step for step (so that it picks the
// same entry when damage leaves the hashes out of order): the last entry
// whose hash is <= hash, entry 0 covering everything below entry 1's.
func (fr *dxFrame) search(hash uint32) int {
	p, q := 1, fr.count-1
	for p <= q {
		m := p + (q-p)/2
		if fr.hash(m) > hash {
			q = m - 1
		} else {
			p = m + 1
		}
	}
	return p - 1
}

// dxRootLimit and dxNodeLimit are the entry limits an index block must
// state (dx_root_limit, dx_node_limit).
func (f *FS) dxRootLimit(infoLen int) int {
	space := int(f.bs) - 12 - 12 - infoLen
	if f.csum {
		space -= 8
	}
	return space / 8
}

func (f *FS) dxNodeLimit() int {
	space := int(f.bs) - 8
	if f.csum {
		space -= 8
	}
	return space / 8
}

// dxCsum verifies an index block's dx_tail (ext4_dx_csum_verify).
func (f *FS) dxCsum(in *inode, b []byte) error {
	bs := len(b)
	var co int
	switch f.recLen(binary.LittleEndian.Uint16(b[4:])) {
	case bs:
		co = 8
	case 12:
		if f.recLen(binary.LittleEndian.Uint16(b[16:])) != bs-12 ||
			binary.LittleEndian.Uint32(b[24:]) != 0 || b[0x1D] != 8 {
			return fmt.Errorf("%w: htree root without room for its checksum", ErrChecksum)
		}
		co = 32
	default:
		return fmt.Errorf("%w: htree block without room for its checksum", ErrChecksum)
	}
	limit := int(binary.LittleEndian.Uint16(b[co:]))
	count := int(binary.LittleEndian.Uint16(b[co+2:]))
	t := co + 8*limit
	if t > bs-8 || co+8*count > bs {
		return fmt.Errorf("%w: htree node limit %d count %d leave no room for its checksum", ErrChecksum, limit, count)
	}
	c := crc32c(in.csumSeed, b[:co+8*count])
	c = crc32c(c, b[t:t+4])
	c = crc32c(c, []byte{0, 0, 0, 0})
	if want := binary.LittleEndian.Uint32(b[t+4:]); want != c {
		return fmt.Errorf("%w: htree node checksum %#x, computed %#x", ErrChecksum, want, c)
	}
	return nil
}

// dxProbe is dx_probe: it reads the root, hashes name (unless nil: then
// hash is the hash to look for) and descends to the leaf level. It returns
// the path of frames, the hash and the hash version.
func (f *FS) dxProbe(in *inode, name []byte, hash uint32) ([]dxFrame, uint32, int, error) {
	root, err := f.readDirBlock(in, 0, dbIndex)
	if err != nil {
		return nil, 0, 0, err
	}
	version := int(root[0x1C])
	if version != hashLegacy && version != hashHalfMD4 && version != hashTea {
		return nil, 0, 0, badDx("hash version %d", version)
	}
	if !f.hashSign {
		version += 3
	}
	if name != nil {
		hash, _, _ = dirHash(name, version, f.sb.sHashSeed)
	}
	if root[0x1F]&1 != 0 {
		return nil, 0, 0, badDx("hash flags %#x", root[0x1F])
	}
	levels := int(root[0x1E])
	maxLevels := 2
	if f.sb.incompat(incompatLargeDir) {
		maxLevels = 3
	}
	if levels >= maxLevels {
		return nil, 0, 0, badDx("depth %d", levels)
	}
	infoLen := int(root[0x1D])
	fr := dxFrame{b: root, co: 0x18 + infoLen}
	if limit := int(binary.LittleEndian.Uint16(root[fr.co:])); limit != f.dxRootLimit(infoLen) {
		return nil, 0, 0, badDx("root limit %d", limit)
	}
	frames := make([]dxFrame, 0, levels+1)
	blocks := []uint64{0}
	for {
		limit := int(binary.LittleEndian.Uint16(fr.b[fr.co:]))
		fr.count = int(binary.LittleEndian.Uint16(fr.b[fr.co+2:]))
		if fr.count == 0 || fr.count > limit {
			return nil, 0, 0, badDx("count %d, limit %d", fr.count, limit)
		}
		fr.at = fr.search(hash)
		frames = append(frames, fr)
		next := fr.block(fr.at)
		if slices.Contains(blocks, next) {
			return nil, 0, 0, badDx("cycle at block %d", next)
		}
		if len(frames) > levels {
			return frames, hash, version, nil
		}
		blocks = append(blocks, next)
		b, err := f.readDirBlock(in, next, dbIndex)
		if err != nil {
			return nil, 0, 0, err
		}
		fr = dxFrame{b: b, co: 8}
		if limit := int(binary.LittleEndian.Uint16(b[8:])); limit != f.dxNodeLimit() {
			return nil, 0, 0, badDx("node %d limit %d", next, limit)
		}
	}
}

// dxNext is ext4_htree_next_block: it moves frames to the next leaf. With
// an even hash (a lookup) it goes on only when that leaf continues a run
// of that hash; with an odd one (readdir) always. It returns whether there
// is a next leaf and that leaf's starting hash (hashEOF if there is none).
func (f *FS) dxNext(in *inode, frames []dxFrame, hash uint32) (bool, uint32, error) {
	i := len(frames) - 1
	for {
		frames[i].at++
		if frames[i].at < frames[i].count {
			break
		}
		if i == 0 {
			return false, hashEOF, nil
		}
		i--
	}
	bhash := frames[i].hash(frames[i].at)
	if hash&1 == 0 && bhash&^1 != hash {
		return false, bhash, nil
	}
	for j := i + 1; j < len(frames); j++ {
		b, err := f.readDirBlock(in, frames[j-1].block(frames[j-1].at), dbIndex)
		if err != nil {
			return false, bhash, err
		}
		frames[j] = dxFrame{b: b, co: 8}
		frames[j].setCount()
	}
	return true, bhash, nil
}

// dxFind is ext4_dx_find_entry: 0 when name is absent; errBadDx when the
// index is malformed or the entry found is damaged.
func (f *FS) dxFind(in *inode, name []byte) (uint64, error) {
	frames, hash, _, err := f.dxProbe(in, name, 0)
	if err != nil {
		return 0, err
	}
	for {
		last := &frames[len(frames)-1]
		b, err := f.readDirBlock(in, last.block(last.at), dbLeaf)
		if err != nil {
			return 0, err
		}
		ino, err := f.searchDir(b, name)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errBadDx, err)
		}
		if ino != 0 {
			return ino, nil
		}
		more, _, err := f.dxNext(in, frames, hash)
		if !more || err != nil {
			return 0, err
		}
	}
}

// dxName is one entry gathered by a readdir pass over the index; name
// points into a cached block (cached blocks are never reused).
type dxName struct {
	hash, minor uint32
	name        []byte
	ino         uint32
	ft          uint8
}

// dxReadDir is ext4_dx_readdir: passes over the index, each starting at
// the hash where the previous one stopped, each giving its entries in hash
// order. A malformed index met on the first pass returns errBadDx (the
// caller then reads the blocks in turn, as ext4_readdir does); met later,
// it ends the listing, as the kernel's fallback then starts at a hash
// position past the end of the directory.
func (f *FS) dxReadDir(in *inode, emit emitFunc) error {
	start := uint32(0)
	for pass := 0; ; pass++ {
		ents, count, next, err := f.dxFill(in, start)
		if errors.Is(err, errBadDx) && pass > 0 {
			f.warnOnce(fmt.Sprintf("baddx %d", in.ino), "ext4: a malformed htree index ends the listing, as it does in the kernel",
				"dir", in.ino, "reason", err)
			return nil
		}
		if err != nil {
			return err
		}
		sortByHash(ents)
		for _, e := range ents {
			if !emit(e.name, e.ino, e.ft) {
				return nil
			}
		}
		if count == 0 || next == hashEOF {
			return nil
		}
		if next <= start {
			// The kernel would list the same leaves again, endlessly.
			return fmt.Errorf("%w: htree index goes back from hash %#x to %#x", ErrCorrupt, start, next)
		}
		start = next
	}
}

// sortByHash puts entries in the kernel's readdir order: by hash, then
// minor hash; entries equal in both keep their order on disk (the kernel
// chains them in its rbtree as found).
func sortByHash(ents []dxName) {
	slices.SortStableFunc(ents, func(a, b dxName) int {
		if a.hash != b.hash {
			return cmpU32(a.hash, b.hash)
		}
		return cmpU32(a.minor, b.minor)
	})
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dxFill is ext4_htree_fill_tree: from the leaf holding start, it gathers
// the entries hashing at or above start, leaf after leaf until it has some
// and the next leaf does not continue a run of one hash. count includes
// "." and ".." of the root, given on the first pass; next is the hash of
// the following leaf.
func (f *FS) dxFill(in *inode, start uint32) (ents []dxName, count int, next uint32, err error) {
	frames, _, version, err := f.dxProbe(in, nil, start)
	if err != nil {
		return nil, 0, 0, err
	}
	if start <= 2 {
		// "." and ".." as the root's first two entries name them (hash 0 and 2).
		root := frames[0].b
		if start == 0 {
			ents, count = f.rootEntry(root, 0, ents), count+1
		}
		ents, count = f.rootEntry(root, f.recLen(binary.LittleEndian.Uint16(root[4:])), ents), count+1
	}
	for {
		last := &frames[len(frames)-1]
		lblk := last.block(last.at)
		b, err := f.readDirBlock(in, lblk, dbLeaf)
		if err != nil {
			return nil, 0, 0, err
		}
		n := len(ents)
		ents, err = f.leafNames(in, lblk, b, version, start, ents)
		if err != nil {
			return nil, 0, 0, err
		}
		count += len(ents) - n
		more, hashval, err := f.dxNext(in, frames, 1)
		if err != nil {
			return nil, 0, 0, err
		}
		if !more || count > 0 && hashval&1 == 0 {
			return ents, count, hashval, nil
		}
	}
}

// rootEntry adds the root's entry at off as the kernel stores it for
// readdir, name and all (its checksum does not cover a damaged name on a
// filesystem without metadata_csum).
func (f *FS) rootEntry(root []byte, off int, ents []dxName) []dxName {
	if off < 0 || off+8 > len(root) {
		return ents
	}
	nl := int(root[off+6])
	if off+8+nl > len(root) || binary.LittleEndian.Uint32(root[off:]) == 0 {
		return ents // getdents readers skip inode 0
	}
	return append(ents, dxName{name: root[off+8 : off+8+nl], ino: binary.LittleEndian.Uint32(root[off:]), ft: f.fileType(root[off+7])})
}

// leafNames is htree_dirblock_to_tree: the live entries of a leaf hashing
// at or above start, up to a damaged entry.
func (f *FS) leafNames(in *inode, lblk uint64, b []byte, version int, start uint32, ents []dxName) ([]dxName, error) {
	var herr error
	_, why, at := f.walkEntries(b, len(b)-8, func(name []byte, ino uint32, ft uint8) bool {
		h, minor, ok := dirHash(name, version, f.sb.sHashSeed)
		if !ok {
			herr = fmt.Errorf("%w: htree hash version %d", ErrUnsupported, version)
			return false
		}
		if h >= start {
			ents = append(ents, dxName{hash: h, minor: minor, name: name, ino: ino, ft: ft})
		}
		return true
	})
	f.badEntry(in.ino, lblk, why, at)
	return ents, herr
}
