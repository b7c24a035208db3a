package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io/fs"
)

// Directories are read the way the kernel reads them (fs/ext4/dir.c and
// namei.c), damaged ones included: readdir of an htree directory goes
// through the index in hash order (ext4_dx_readdir), of other directories
// block by block (ext4_readdir), and lookups go through the index with a
// linear scan only where the index is malformed (ext4_find_entry).

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

// emitFunc receives one live directory entry; it returns false to stop.
type emitFunc func(name []byte, ino uint32, ft uint8) bool

// walkEntries calls fn for each live entry (inode != 0) of the chain of
// directory entries in b that starts before end; fn returns false to
// stop. At a damaged entry it stops and says why: the kernel's readdir
// skips the rest of the block there. It reports whether fn stopped it.
func (f *FS) walkEntries(b []byte, end int, fn emitFunc) (stopped bool, bad string, at int) {
	for off := 0; off < end; {
		rl, why := f.checkDirEntry(b, off)
		if why != "" {
			return false, why, off
		}
		ino := binary.LittleEndian.Uint32(b[off:])
		nl := int(b[off+6])
		if ino != 0 && !fn(b[off+8:off+8+nl], ino, f.fileType(b[off+7])) {
			return true, "", 0
		}
		off += rl
	}
	return false, "", 0
}

// fileType is a dirent's file_type as get_dtype reads it: unknown without
// the filetype feature or beyond the known types.
func (f *FS) fileType(ft uint8) uint8 {
	if !f.sb.incompat(incompatFiletype) || ft >= 8 {
		return 0
	}
	return ft
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

// direntCsum checks a leaf block's checksum tail (ext4_dirblock_csum_verify).
func (f *FS) direntCsum(in *inode, b []byte) error {
	t := len(b) - 12
	if binary.LittleEndian.Uint32(b[t:]) != 0 || binary.LittleEndian.Uint16(b[t+4:]) != 12 ||
		b[t+6] != 0 || b[t+7] != dirTailFT {
		return fmt.Errorf("%w: directory block without checksum tail", ErrChecksum)
	}
	if want, got := binary.LittleEndian.Uint32(b[t+8:]), crc32c(in.csumSeed, b[:t]); want != got {
		return fmt.Errorf("%w: directory block checksum %#x, computed %#x", ErrChecksum, want, got)
	}
	return nil
}

// Kinds of directory block a reader expects (the kernel's dirblock_type_t).
const (
	dbIndex = iota // an htree root or interior node
	dbLeaf         // a leaf reached through the htree index
)

// readDirBlock reads a directory block as __ext4_read_dirblock does for
// the htree code: a hole is corruption, an index node must look like one
// and pass the index checksum, any other block the leaf checksum.
func (f *FS) readDirBlock(in *inode, lblk uint64, kind int) ([]byte, error) {
	b, _, err := f.dirBlock(in, lblk)
	if err != nil {
		return nil, fmt.Errorf("directory block %d: %w", lblk, err)
	}
	isDx := f.isDxBlock(in, lblk, b)
	if !isDx && kind == dbIndex {
		return nil, fmt.Errorf("%w: directory block %d: a leaf where the htree has an index node", ErrCorrupt, lblk)
	}
	if !f.csum {
		return b, nil
	}
	// An empty leaf looks like an index node: only a caller expecting an
	// index checks the index checksum, and such a block no checksum.
	if isDx && kind == dbIndex {
		err = f.dxCsum(in, b)
	} else if !isDx {
		err = f.direntCsum(in, b)
	}
	if err != nil {
		return nil, fmt.Errorf("directory block %d: %w", lblk, err)
	}
	return b, nil
}

// isDxBlock is the kernel's guess that a block of an indexed directory is
// an index block: block 0, or one entry spanning the block.
func (f *FS) isDxBlock(in *inode, lblk uint64, b []byte) bool {
	return f.isIndexed(in) && (lblk == 0 || f.recLen(binary.LittleEndian.Uint16(b[4:])) == len(b))
}

// isIndexed reports whether the directory uses an htree index (is_dx).
func (f *FS) isIndexed(in *inode) bool {
	return in.iFlags&flagIndex != 0 && f.sb.compat(compatDirIndex) && in.iFlags&flagInlineData == 0
}

// dirBlocks is the number of whole blocks in a directory's i_size, bounded
// by the filesystem's size so that a damaged i_size cannot make a scan
// endless.
func (f *FS) dirBlocks(in *inode) uint64 {
	return min(in.iSize>>f.bits, f.sb.sBlocksCount)
}

// ReadDir returns the entries of directory dir except "." and "..", in
// the order the kernel's readdir gives them (hash order for an htree
// directory). On an error it also returns the entries listed before it,
// as getdents(2) does.
func (f *FS) ReadDir(dir uint64) ([]DirEntry, error) {
	in, err := f.inode(dir)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	emit := func(name []byte, ino uint32, ft uint8) bool {
		if string(name) != "." && string(name) != ".." {
			out = append(out, DirEntry{Name: string(name), Ino: uint64(ino), Type: ftToDT[ft]})
		}
		return true
	}
	err = f.readDir(in, emit)
	for i := range out {
		if out[i].Type == syscall.DT_UNKNOWN {
			if st, err := f.Stat(out[i].Ino); err == nil {
				out[i].Type = uint8(st.Mode >> 12)
			}
		}
	}
	if err != nil {
		return out, fmt.Errorf("ext4: directory %d: %w", dir, err)
	}
	return out, nil
}

// readDir is ext4_readdir: the hash-ordered readdir for directories the
// kernel counts as indexed (is_dx_dir: the index flag, or a single block,
// with the dir_index feature), falling back to reading block by block
// when the index is malformed.
func (f *FS) readDir(in *inode, emit emitFunc) error {
	if !in.isDir() {
		return ErrNotDir
	}
	if in.iFlags&flagInlineData != 0 {
		return f.inlineReadDir(in, emit)
	}
	if f.sb.compat(compatDirIndex) {
		switch {
		case in.iFlags&flagIndex != 0:
			err := f.dxReadDir(in, emit)
			if !errors.Is(err, errBadDx) {
				return err
			}
			f.warnOnce(fmt.Sprintf("baddx %d", in.ino), "ext4: reading a directory with a malformed htree index block by block, as the kernel does",
				"dir", in.ino, "reason", err)
		case in.iSize>>f.bits == 1:
			return f.singleBlockReadDir(in, emit)
		}
	}
	return f.linearReadDir(in, emit)
}

// inlineReadDir lists an inline directory: the parent in the first four
// bytes of i_block, entries in the rest and in the system.data xattr.
func (f *FS) inlineReadDir(in *inode, emit emitFunc) error {
	d, err := f.inlineData(in)
	if err != nil {
		return err
	}
	stopped, why, at := f.walkEntries(d[4:60], 56, emit)
	f.badEntry(in.ino, 0, why, at)
	if !stopped {
		_, why, at = f.walkEntries(d[60:], len(d)-60, emit)
		f.badEntry(in.ino, 1, why, at)
	}
	return nil
}

// singleBlockReadDir is the kernel's hash-ordered readdir of a directory of
// one block without an index (htree_dirblock_to_tree on block 0): entries
// come in (hash, minor hash) order, not as stored, and unlike the
// block-by-block readdir, a bad checksum fails the listing.
func (f *FS) singleBlockReadDir(in *inode, emit emitFunc) error {
	b, err := f.readDirBlock(in, 0, dbLeaf)
	if err != nil {
		return err
	}
	version := int(f.sb.sDefHashVersion)
	if version <= hashTea && !f.hashSign {
		version += 3
	}
	if _, _, ok := dirHash(nil, version, f.sb.sHashSeed); !ok {
		return fmt.Errorf("%w: default hash version %d", ErrCorrupt, version)
	}
	ents, err := f.leafNames(in, 0, b, version, 0, nil)
	if err != nil {
		return err
	}
	sortByHash(ents)
	for _, e := range ents {
		if !emit(e.name, e.ino, e.ft) {
			return nil
		}
	}
	return nil
}

// linearReadDir is ext4_readdir's block-by-block loop: holes and blocks
// whose mapping is damaged are skipped, a block failing its checksum is
// skipped with a warning, a bad entry ends its block, and entries are read
// up to i_size even within a block.
func (f *FS) linearReadDir(in *inode, emit emitFunc) error {
	bs := uint64(f.bs)
	nblk := min((in.iSize+bs-1)>>f.bits, f.sb.sBlocksCount)
	for lblk := uint64(0); lblk < nblk; lblk++ {
		phys, run, _, err := f.mapBlockRaw(in, lblk)
		if errors.Is(err, ErrCorrupt) {
			// The kernel skips a block it cannot map, or stops past i_blocks.
			f.warnOnce(fmt.Sprintf("dirmap %d/%d", in.ino, lblk), "ext4: skipping a directory block that cannot be mapped, as the kernel does",
				"dir", in.ino, "block", lblk, "reason", err)
			if lblk*bs > in.iBlocks*512 {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("directory block %d: %w", lblk, err)
		}
		if phys == 0 {
			lblk += max(run, 1) - 1 // Linux (since 5.1) skips holes in directories
			continue
		}
		b, err := f.block(phys)
		if err != nil {
			return fmt.Errorf("directory block %d: %w", lblk, err)
		}
		if err := f.linearCsum(in, lblk, b); err != nil {
			f.warnOnce(fmt.Sprintf("dircsum %d/%d", in.ino, lblk), "ext4: skipping a directory block that fails its checksum, as the kernel does",
				"dir", in.ino, "block", lblk, "reason", err)
			continue
		}
		end := int(min(bs, in.iSize-lblk*bs))
		stopped, why, at := f.walkEntries(b, end, emit)
		f.badEntry(in.ino, lblk, why, at)
		if stopped {
			return nil
		}
	}
	return nil
}

// linearCsum checks a block met by a linear scan of a directory. The
// kernel checks the leaf checksum of blocks it has not verified before: an
// htree index block it has verified as such while probing the index (the
// fallback to a linear readdir happens only after that) is not checked
// again.
func (f *FS) linearCsum(in *inode, lblk uint64, b []byte) error {
	if !f.csum {
		return nil
	}
	err := f.direntCsum(in, b)
	if err != nil && f.isDxBlock(in, lblk, b) && f.dxCsum(in, b) == nil {
		return nil
	}
	return err
}

// Lookup returns the inode number of name in directory dir as the kernel's
// ext4_lookup finds it: through the htree index when there is one, by a
// linear scan when there is none or it is malformed.
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
	ino, err := f.findEntry(in, []byte(name))
	if err != nil {
		return 0, fmt.Errorf("ext4: directory %d: %w", dir, err)
	}
	switch {
	case ino == 0:
		return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, fs.ErrNotExist)
	case !f.validIno(ino):
		return 0, fmt.Errorf("ext4: %q in directory %d: %w: bad inode number %d", name, dir, ErrCorrupt, ino)
	case ino == dir:
		return 0, fmt.Errorf("ext4: %q in directory %d: %w: linked to its own directory", name, dir, ErrCorrupt)
	}
	return ino, nil
}

// validIno is ext4_valid_inum: the root, or a non-reserved inode.
func (f *FS) validIno(ino uint64) bool {
	return ino == RootIno || ino >= uint64(f.sb.sFirstIno) && ino <= uint64(f.sb.sInodesCount)
}

// findEntry is ext4_find_entry: 0 when name is absent.
func (f *FS) findEntry(in *inode, name []byte) (uint64, error) {
	if in.iFlags&flagInlineData != 0 {
		var found uint32
		err := f.inlineReadDir(in, func(n []byte, ino uint32, _ uint8) bool {
			if bytes.Equal(n, name) {
				found = ino
				return false
			}
			return true
		})
		return uint64(found), err
	}
	if f.isIndexed(in) {
		ino, err := f.dxFind(in, name)
		if !errors.Is(err, errBadDx) {
			return ino, err
		}
		// Only a malformed index (ERR_BAD_DX_DIR) sends the kernel to a
		// linear search; a checksum or read error fails the lookup.
		f.warnOnce(fmt.Sprintf("baddx %d", in.ino), "ext4: searching a directory with a malformed htree index block by block, as the kernel does",
			"dir", in.ino, "reason", err)
	}
	return f.linearFind(in, name)
}

// linearFind is ext4_find_entry's scan of every block: holes are skipped,
// a leaf failing its checksum fails the lookup.
func (f *FS) linearFind(in *inode, name []byte) (uint64, error) {
	nblk := f.dirBlocks(in)
	for lblk := uint64(0); lblk < nblk; lblk++ {
		phys, run, _, err := f.mapBlockRaw(in, lblk)
		if err != nil {
			return 0, fmt.Errorf("directory block %d: %w", lblk, err)
		}
		if phys == 0 {
			lblk += max(run, 1) - 1
			continue
		}
		b, err := f.block(phys)
		if err != nil {
			return 0, fmt.Errorf("directory block %d: %w", lblk, err)
		}
		if f.csum && !f.isDxInternal(in, lblk, b) {
			if err := f.direntCsum(in, b); err != nil {
				return 0, fmt.Errorf("directory block %d: %w", lblk, err)
			}
		}
		ino, err := f.searchDir(b, name)
		if ino != 0 || err != nil {
			return ino, err
		}
	}
	return 0, nil
}

// isDxInternal is the kernel's is_dx_internal_node: block 0 of an indexed
// directory, or one empty entry spanning the block.
func (f *FS) isDxInternal(in *inode, lblk uint64, b []byte) bool {
	return f.isIndexed(in) && (lblk == 0 ||
		binary.LittleEndian.Uint32(b) == 0 && f.recLen(binary.LittleEndian.Uint16(b[4:])) == len(b))
}

// errBadEntry marks a lookup that met its name in a damaged entry.
var errBadEntry = errors.New("the entry of the name is damaged")

// searchDir is ext4_search_dir: it follows the rec_len chain with only
// the checks the kernel makes there, so that a name after a damaged entry
// may still be found, and checks fully the entry that matches.
func (f *FS) searchDir(b, name []byte) (uint64, error) {
	for off := 0; off < len(b)-8; {
		nl := int(b[off+6])
		ino := binary.LittleEndian.Uint32(b[off:])
		if off+8+nl <= len(b) && ino != 0 && bytes.Equal(b[off+8:off+8+nl], name) {
			if _, why := f.checkDirEntry(b, off); why != "" {
				return 0, fmt.Errorf("%w: %w: %s", ErrCorrupt, errBadEntry, why)
			}
			return uint64(ino), nil
		}
		rl := f.recLen(binary.LittleEndian.Uint16(b[off+4:]))
		if rl <= 0 {
			return 0, fmt.Errorf("%w: %w: rec_len 0", ErrCorrupt, errBadEntry)
		}
		off += rl
	}
	return 0, nil
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
