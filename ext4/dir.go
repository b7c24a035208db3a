package ext4

import (
	"bytes"
	"encoding/binary"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io/fs"
)

// ftToDT maps ext4 dirent file types to syscall.DT_* values.
var ftToDT = [8]uint8{syscall.DT_UNKNOWN, syscall.DT_REG, syscall.DT_DIR, syscall.DT_CHR,
	syscall.DT_BLK, syscall.DT_FIFO, syscall.DT_SOCK, syscall.DT_LNK}

const dirTailFT = 0xDE // file_type of the checksum tail's fake entry

// recLen decodes rec_len; 64 KiB blocks store 65536 as 0 or 65535.
func (f *FS) recLen(v uint16) int {
	if f.bs < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return int(f.bs)
	}
	return int(v&65532) | int(v&3)<<16
}

// minRecLen is the shortest directory entry: 8 header bytes and a name of
// one byte, rounded to 4 (ext4_dir_rec_len(1)).
const minRecLen = 12

// checkDirEntry applies the kernel's __ext4_check_dir_entry to the entry
// at off in b (a whole directory block, or an inline directory area): it
// returns the entry's rec_len, and why the entry is bad ("" if it is not).
func (f *FS) checkDirEntry(b []byte, off int) (int, string) {
	size := len(b)
	if off+8 > size {
		return 0, "directory entry truncated"
	}
	rl := f.recLen(binary.LittleEndian.Uint16(b[off+4:]))
	nl := int(b[off+6])
	next := off + rl
	switch {
	case rl < minRecLen:
		return rl, "rec_len is smaller than minimal"
	case rl%4 != 0:
		return rl, "rec_len % 4 != 0"
	case rl < (nl+8+3)&^3:
		return rl, "rec_len is too small for name_len"
	case next > size:
		return rl, "directory entry overrun"
	case next > size-minRecLen && next != size:
		return rl, "directory entry too close to block end"
	case uint64(binary.LittleEndian.Uint32(b[off:])) > uint64(f.sb.sInodesCount):
		return rl, "inode out of bounds"
	case next == size && nl == 1 && b[off+8] == '.':
		return rl, "'.' directory cannot be the last in data block"
	}
	return rl, ""
}

// walkEntries calls fn for each live entry (inode != 0) in a chain of
// directory entries filling b; fn returns false to stop. At a damaged
// entry it stops and says why: the kernel's readdir skips the rest of the
// block (and its lookups meet the same entries), so callers do the same.
func (f *FS) walkEntries(b []byte, fn func(name []byte, ino uint32, ft uint8) bool) (bad string, at int) {
	for off := 0; off < len(b); {
		rl, why := f.checkDirEntry(b, off)
		if why != "" {
			return why, off
		}
		ino := binary.LittleEndian.Uint32(b[off:])
		nl := int(b[off+6])
		ft := b[off+7]
		if ino != 0 && nl > 0 {
			if !f.sb.incompat(incompatFiletype) {
				ft = 0
			}
			if !fn(b[off+8:off+8+nl], ino, ft) {
				return "", 0
			}
		}
		off += rl
	}
	return "", 0
}

// badEntry logs a damaged directory entry that cut a block short, once per
// directory block: not the name, which stays private.
func (f *FS) badEntry(dir, lblk uint64, why string, at int) {
	if why == "" {
		return
	}
	key := fmt.Sprintf("dirent %d/%d", dir, lblk)
	f.warnOnce(key, "ext4: skipping the rest of a directory block after a bad entry, as the kernel does",
		"dir", dir, "block", lblk, "offset", at, "reason", why)
}

// dirBlock reads logical block lblk of a block-mapped directory, unwritten
// extents included (see mapBlockRaw).
func (f *FS) dirBlock(in *inode, lblk uint64) ([]byte, uint64, error) {
	phys, _, _, err := f.mapBlockRaw(in, lblk)
	if err != nil {
		return nil, 0, err
	}
	if phys == 0 {
		return nil, 0, fmt.Errorf("%w: directory has a hole at block %d", ErrCorrupt, lblk)
	}
	b, err := f.block(phys)
	return b, phys, err
}

// leafEntries checks a leaf block's checksum tail and returns the block
// to walk: the whole block, as the kernel checks entries against it (the
// tail is an entry of inode 0, skipped).
func (f *FS) leafEntries(in *inode, b []byte) ([]byte, error) {
	if !f.csum {
		return b, nil
	}
	t := len(b) - 12
	if binary.LittleEndian.Uint32(b[t:]) != 0 || binary.LittleEndian.Uint16(b[t+4:]) != 12 ||
		b[t+6] != 0 || b[t+7] != dirTailFT {
		return nil, fmt.Errorf("%w: directory block without checksum tail", ErrChecksum)
	}
	if want, got := binary.LittleEndian.Uint32(b[t+8:]), crc32c(in.csumSeed, b[:t]); want != got {
		return nil, fmt.Errorf("%w: directory block checksum %#x, computed %#x", ErrChecksum, want, got)
	}
	return b, nil
}

// isIndexed reports whether the directory uses an htree index.
func (f *FS) isIndexed(in *inode) bool {
	return in.iFlags&flagIndex != 0 && f.sb.compat(compatDirIndex) && in.iFlags&flagInlineData == 0
}

// isDxNode reports whether b is an htree interior node: one empty entry
// spanning the whole block.
func (f *FS) isDxNode(b []byte) bool {
	return binary.LittleEndian.Uint32(b) == 0 && f.recLen(binary.LittleEndian.Uint16(b[4:])) == len(b) && b[6] == 0
}

// dxCount returns limit and count of an index node at co, verifying the
// dx tail checksum.
func (f *FS) dxCount(in *inode, b []byte, co int) (limit, count int, err error) {
	limit = int(binary.LittleEndian.Uint16(b[co:]))
	count = int(binary.LittleEndian.Uint16(b[co+2:]))
	end := co + 8*limit
	if f.csum {
		end += 8
	}
	if count == 0 || count > limit || end > len(b) {
		return 0, 0, fmt.Errorf("%w: htree node limit %d count %d", ErrCorrupt, limit, count)
	}
	if f.csum {
		t := co + 8*limit
		c := crc32c(in.csumSeed, b[:co+8*count])
		c = crc32c(c, b[t:t+4])
		c = crc32c(c, []byte{0, 0, 0, 0})
		if want := binary.LittleEndian.Uint32(b[t+4:]); want != c {
			return 0, 0, fmt.Errorf("%w: htree node checksum %#x, computed %#x", ErrChecksum, want, c)
		}
	}
	return limit, count, nil
}

// forEachEntry calls fn for every entry of directory in, except "." and
// "..", in on-disk order.
func (f *FS) forEachEntry(in *inode, fn func(name []byte, ino uint32, ft uint8) bool) error {
	if !in.isDir() {
		return ErrNotDir
	}
	stopped := false
	wrap := func(name []byte, ino uint32, ft uint8) bool {
		if string(name) == "." || string(name) == ".." {
			return true
		}
		if !fn(name, ino, ft) {
			stopped = true
			return false
		}
		return true
	}
	if in.iFlags&flagInlineData != 0 {
		d, err := f.inlineData(in)
		if err != nil {
			return err
		}
		why, at := f.walkEntries(d[4:60], wrap)
		f.badEntry(in.ino, 0, why, at)
		if stopped {
			return nil
		}
		why, at = f.walkEntries(d[60:], wrap)
		f.badEntry(in.ino, 1, why, at)
		return nil
	}
	nblk := min(in.iSize>>f.bits, f.sb.sBlocksCount)
	indexed := f.isIndexed(in)
	for lblk := uint64(0); lblk < nblk && !stopped; lblk++ {
		phys, run, _, err := f.mapBlockRaw(in, lblk)
		if err != nil {
			return err
		}
		if phys == 0 {
			// Linux (since 5.1) tolerates holes in directories and skips them.
			lblk += run - 1
			continue
		}
		b, err := f.block(phys)
		if err != nil {
			return err
		}
		if indexed && lblk == 0 {
			continue // the htree root: only "." and ".."
		}
		if f.isDxNode(b) {
			continue // an htree interior node, or an empty leaf without a tail
		}
		ents, err := f.leafEntries(in, b)
		if err != nil {
			return fmt.Errorf("directory block %d: %w", lblk, err)
		}
		why, at := f.walkEntries(ents, wrap)
		f.badEntry(in.ino, lblk, why, at)
	}
	return nil
}

// ReadDir returns all entries of directory dir except "." and "..".
func (f *FS) ReadDir(dir uint64) ([]DirEntry, error) {
	in, err := f.inode(dir)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	err = f.forEachEntry(in, func(name []byte, ino uint32, ft uint8) bool {
		out = append(out, DirEntry{Name: string(name), Ino: uint64(ino), Type: ftToDT[ft&7]})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("ext4: directory %d: %w", dir, err)
	}
	for i := range out {
		if out[i].Type == syscall.DT_UNKNOWN {
			if st, err := f.Stat(out[i].Ino); err == nil {
				out[i].Type = uint8(st.Mode >> 12)
			}
		}
	}
	return out, nil
}

// Lookup returns the inode number of name in directory dir, using the
// htree index when there is one (falling back to a scan if it is corrupt).
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	in, err := f.inode(dir)
	if err != nil {
		return 0, err
	}
	if !in.isDir() {
		return 0, fmt.Errorf("ext4: inode %d: %w", dir, ErrNotDir)
	}
	if name == "" || len(name) > 255 {
		return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, fs.ErrNotExist)
	}
	if name == "." {
		return dir, nil
	}
	if name == ".." {
		p, err := f.parent(in)
		if err != nil {
			return 0, fmt.Errorf("ext4: directory %d: %w", dir, err)
		}
		return p, nil
	}
	nb := []byte(name)
	if f.isIndexed(in) {
		ino, err := f.dxLookup(in, nb)
		if err == nil {
			if ino == 0 {
				return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, fs.ErrNotExist)
			}
			return ino, nil
		}
		// A damaged index: the leaves may still be fine, scan them.
	}
	var found uint64
	err = f.forEachEntry(in, func(n []byte, ino uint32, _ uint8) bool {
		if bytes.Equal(n, nb) {
			found = uint64(ino)
			return false
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("ext4: directory %d: %w", dir, err)
	}
	if found == 0 {
		return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, fs.ErrNotExist)
	}
	return found, nil
}

// parent returns the ".." inode of a directory: the entry after "." in
// block 0, or the 4-byte header of an inline directory.
func (f *FS) parent(in *inode) (uint64, error) {
	if in.iFlags&flagInlineData != 0 {
		d, err := f.inlineData(in)
		if err != nil {
			return 0, err
		}
		return uint64(binary.LittleEndian.Uint32(d)), nil
	}
	b, _, err := f.dirBlock(in, 0)
	if err != nil {
		return 0, err
	}
	r0 := f.recLen(binary.LittleEndian.Uint16(b[4:]))
	if r0 < 12 || r0+12 > len(b) || b[r0+6] != 2 || string(b[r0+8:r0+10]) != ".." {
		return 0, fmt.Errorf("%w: directory %d has no \"..\"", ErrCorrupt, in.ino)
	}
	p := uint64(binary.LittleEndian.Uint32(b[r0:]))
	if p == 0 || p > uint64(f.sb.sInodesCount) {
		return 0, fmt.Errorf("%w: directory %d: \"..\" is inode %d", ErrCorrupt, in.ino, p)
	}
	return p, nil
}

type dxFrame struct {
	b     []byte
	co    int // offset of limit/count
	count int
	at    int // current entry index
}

func (fr *dxFrame) hash(i int) uint32 { return binary.LittleEndian.Uint32(fr.b[fr.co+8*i:]) }
func (fr *dxFrame) block(i int) uint32 {
	return binary.LittleEndian.Uint32(fr.b[fr.co+8*i+4:])
}

// dxLookup finds name through the htree index. It returns 0 with a nil
// error when the name is absent, and an error when the index is unusable.
func (f *FS) dxLookup(in *inode, name []byte) (uint64, error) {
	hash, levels, err := f.dxRoot(in, name)
	if err != nil {
		return 0, err
	}
	nblk := min(in.iSize>>f.bits, f.sb.sBlocksCount)
	frames, err := f.dxDescend(in, hash, levels, nblk)
	if err != nil {
		return 0, err
	}
	for steps := uint64(0); steps <= nblk; steps++ {
		last := &frames[len(frames)-1]
		found, err := f.dxSearchLeaf(in, uint64(last.block(last.at)), nblk, name)
		if found != 0 || err != nil {
			return found, err
		}
		more, err := f.dxNextLeaf(in, frames, hash, nblk)
		if !more || err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w: htree walk does not end", ErrCorrupt)
}

// dxRoot checks the htree root of a directory and returns name's hash and
// the index depth.
func (f *FS) dxRoot(in *inode, name []byte) (hash uint32, levels int, err error) {
	root, _, err := f.dirBlock(in, 0)
	if err != nil {
		return 0, 0, err
	}
	if len(root) < 0x28 || binary.LittleEndian.Uint32(root[0x18:]) != 0 || root[0x1D] != 8 {
		return 0, 0, fmt.Errorf("%w: htree root info", ErrCorrupt)
	}
	version := int(root[0x1C])
	levels = int(root[0x1E])
	maxLevels := 2
	if f.sb.incompat(incompatLargeDir) {
		maxLevels = 3
	}
	if levels >= maxLevels {
		return 0, 0, fmt.Errorf("%w: htree depth %d", ErrCorrupt, levels)
	}
	if version <= hashTea && !f.hashSign {
		version += 3
	}
	hash, ok := dirHash(name, version, f.sb.sHashSeed)
	if !ok {
		return 0, 0, fmt.Errorf("%w: htree hash version %d", ErrUnsupported, version)
	}
	return hash, levels, nil
}

// dxDescend walks from the root to the leaf level, at each node choosing
// the last entry whose hash is <= hash; it returns the path of frames.
func (f *FS) dxDescend(in *inode, hash uint32, levels int, nblk uint64) ([]dxFrame, error) {
	root, _, err := f.dirBlock(in, 0)
	if err != nil {
		return nil, err
	}
	frames := make([]dxFrame, 0, levels+1)
	fr := dxFrame{b: root, co: 0x20}
	for level := 0; ; level++ {
		if _, fr.count, err = f.dxCount(in, fr.b, fr.co); err != nil {
			return nil, err
		}
		fr.at = fr.search(hash)
		frames = append(frames, fr)
		if level == levels {
			return frames, nil
		}
		if fr, err = f.dxNode(in, uint64(fr.block(fr.at)), nblk); err != nil {
			return nil, err
		}
	}
}

// search returns the index of the last entry whose hash is <= hash (entry
// 0 has no hash and covers everything below entry 1's).
func (fr *dxFrame) search(hash uint32) int {
	lo, hi := 1, fr.count
	for lo < hi {
		m := (lo + hi) / 2
		if fr.hash(m) <= hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// dxNode reads the interior index node at logical block next.
func (f *FS) dxNode(in *inode, next, nblk uint64) (dxFrame, error) {
	if next == 0 || next >= nblk {
		return dxFrame{}, fmt.Errorf("%w: htree points to block %d", ErrCorrupt, next)
	}
	b, _, err := f.dirBlock(in, next)
	if err != nil {
		return dxFrame{}, err
	}
	if !f.isDxNode(b) {
		return dxFrame{}, fmt.Errorf("%w: htree node %d", ErrCorrupt, next)
	}
	return dxFrame{b: b, co: 8}, nil
}

// dxSearchLeaf looks for name in the leaf at logical block leaf (0: absent).
func (f *FS) dxSearchLeaf(in *inode, leaf, nblk uint64, name []byte) (uint64, error) {
	if leaf == 0 || leaf >= nblk {
		return 0, fmt.Errorf("%w: htree points to block %d", ErrCorrupt, leaf)
	}
	b, _, err := f.dirBlock(in, leaf)
	if err != nil {
		return 0, err
	}
	ents, err := f.leafEntries(in, b)
	if err != nil {
		return 0, err
	}
	var found uint64
	why, at := f.walkEntries(ents, func(n []byte, ino uint32, _ uint8) bool {
		if bytes.Equal(n, name) {
			found = uint64(ino)
			return false
		}
		return true
	})
	f.badEntry(in.ino, leaf, why, at)
	return found, nil
}

// dxNextLeaf advances frames to the next leaf when a hash collision may
// continue there, marked by the low bit of that leaf's starting hash
// (ext4_htree_next_block). It reports false when the search is over.
func (f *FS) dxNextLeaf(in *inode, frames []dxFrame, hash uint32, nblk uint64) (bool, error) {
	i := len(frames) - 1
	for ; i >= 0; i-- {
		frames[i].at++
		if frames[i].at < frames[i].count {
			break
		}
	}
	if i < 0 || frames[i].hash(frames[i].at)&^1 != hash {
		return false, nil
	}
	for j := i + 1; j < len(frames); j++ {
		fr, err := f.dxNode(in, uint64(frames[j-1].block(frames[j-1].at)), nblk)
		if err != nil {
			return false, err
		}
		if _, fr.count, err = f.dxCount(in, fr.b, fr.co); err != nil {
			return false, err
		}
		frames[j] = fr
	}
	return true, nil
}
