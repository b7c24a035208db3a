package pack

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// mkfs.ext4 -d before e2fsprogs 1.47.1 stores whole seconds only. This pass
// walks DIR and the new file system side by side, by name, and sets each
// inode's atime and mtime with nanoseconds.

const (
	inodeFlags        = 0x20
	inodeBlock        = 0x28 // i_block, 60 bytes
	flagExtents       = 0x80000
	flagInlineData    = 0x10000000
	extentMagic       = 0xF30A
	maxExtentDepth    = 5
	direntHeaderSize  = 8
	extentEntrySize   = 12
	extentInitMaxLen  = 32768
	maxDirBlocksTotal = 1 << 22 // bounds memory on a corrupt tree
)

type ext4Image struct {
	f interface {
		io.ReaderAt
		io.WriterAt
	}
	size int64
	g    *ext4Geometry
	desc []byte
}

// inodeOffset is where inode ino sits in the image.
func (e *ext4Image) inodeOffset(ino uint32) (int64, error) {
	if ino == 0 || ino > e.g.inodesCount {
		return 0, fmt.Errorf("%w: inode %d out of range", ErrExt4Layout, ino)
	}
	grp, idx := (ino-1)/e.g.inodesPerGroup, (ino-1)%e.g.inodesPerGroup
	if _, err := e.f.ReadAt(e.desc, e.g.gdtOffset+int64(grp)*int64(e.g.descSize)); err != nil {
		return 0, fmt.Errorf("pack: ext4 group %d descriptor: %w", grp, err)
	}
	table := uint64(binary.LittleEndian.Uint32(e.desc[bgInodeTableLo:]))
	if e.g.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(e.desc[bgInodeTableHi:])) << 32
	}
	if table >= uint64(e.size)/uint64(e.g.blockSize) {
		return 0, fmt.Errorf("%w: group %d inode table beyond the image", ErrExt4Layout, grp)
	}
	off := int64(table)*e.g.blockSize + int64(idx)*int64(e.g.inodeSize)
	if off+int64(e.g.inodeSize) > e.size {
		return 0, fmt.Errorf("%w: inode %d beyond the image", ErrExt4Layout, ino)
	}
	return off, nil
}

// dirBlocks lists the physical blocks of a directory inode, in order.
func (e *ext4Image) dirBlocks(inode []byte) ([]uint64, error) {
	var blocks []uint64
	var walk func(node []byte, depth int) error
	walk = func(node []byte, depth int) error {
		if len(node) < extentEntrySize || binary.LittleEndian.Uint16(node) != extentMagic {
			return fmt.Errorf("%w: bad extent header", ErrExt4Layout)
		}
		n := int(binary.LittleEndian.Uint16(node[2:]))
		d := int(binary.LittleEndian.Uint16(node[6:]))
		if d != depth || depth > maxExtentDepth || extentEntrySize*(n+1) > len(node) {
			return fmt.Errorf("%w: bad extent node", ErrExt4Layout)
		}
		for i := 0; i < n; i++ {
			ent := node[extentEntrySize*(i+1):]
			if depth == 0 {
				length := uint64(binary.LittleEndian.Uint16(ent[4:]))
				if length > extentInitMaxLen {
					continue // unwritten: reads as zeros, holds no entries
				}
				start := uint64(binary.LittleEndian.Uint16(ent[6:]))<<32 | uint64(binary.LittleEndian.Uint32(ent[8:]))
				if start+length > uint64(e.size)/uint64(e.g.blockSize) || len(blocks)+int(length) > maxDirBlocksTotal {
					return fmt.Errorf("%w: directory extent beyond the image", ErrExt4Layout)
				}
				for b := uint64(0); b < length; b++ {
					blocks = append(blocks, start+b)
				}
				continue
			}
			leaf := uint64(binary.LittleEndian.Uint16(ent[8:]))<<32 | uint64(binary.LittleEndian.Uint32(ent[4:]))
			if leaf >= uint64(e.size)/uint64(e.g.blockSize) {
				return fmt.Errorf("%w: extent index beyond the image", ErrExt4Layout)
			}
			child := make([]byte, e.g.blockSize)
			if _, err := e.f.ReadAt(child, int64(leaf)*e.g.blockSize); err != nil {
				return fmt.Errorf("pack: ext4 extent block %d: %w", leaf, err)
			}
			if err := walk(child, depth-1); err != nil {
				return err
			}
		}
		return nil
	}
	root := inode[inodeBlock : inodeBlock+60]
	if len(root) < 8 {
		return nil, fmt.Errorf("%w: short i_block", ErrExt4Layout)
	}
	if err := walk(root, int(binary.LittleEndian.Uint16(root[6:]))); err != nil {
		return nil, err
	}
	return blocks, nil
}

// readDir maps the names in directory inode (raw bytes) to inode numbers.
// Entries of htree directories are read linearly: index blocks look like
// one empty entry. ok is false for directories it cannot read (no extents,
// inline data), which are then left alone.
func (e *ext4Image) readDir(inode []byte) (names map[string]uint32, ok bool, err error) {
	flags := binary.LittleEndian.Uint32(inode[inodeFlags:])
	if flags&flagExtents == 0 || flags&flagInlineData != 0 {
		return nil, false, nil
	}
	blocks, err := e.dirBlocks(inode)
	if err != nil {
		return nil, false, err
	}
	names = map[string]uint32{}
	buf := make([]byte, e.g.blockSize)
	for _, b := range blocks {
		if _, err := e.f.ReadAt(buf, int64(b)*e.g.blockSize); err != nil {
			return nil, false, fmt.Errorf("pack: ext4 directory block %d: %w", b, err)
		}
		for off := 0; off+direntHeaderSize <= len(buf); {
			ino := binary.LittleEndian.Uint32(buf[off:])
			recLen := int(binary.LittleEndian.Uint16(buf[off+4:]))
			nameLen := int(buf[off+6])
			if recLen < direntHeaderSize || off+recLen > len(buf) || direntHeaderSize+nameLen > recLen {
				return nil, false, fmt.Errorf("%w: bad directory entry in block %d", ErrExt4Layout, b)
			}
			name := string(buf[off+direntHeaderSize : off+direntHeaderSize+nameLen])
			if ino != 0 && name != "." && name != ".." {
				names[name] = ino
			}
			off += recLen
		}
	}
	return names, true, nil
}

// setTimes copies atime and mtime (with nanoseconds) from DIR's entries to
// the matching inodes, recursively.
func setTimes(ctx context.Context, f interface {
	io.ReaderAt
	io.WriterAt
}, size int64, dir string) error {
	g, err := readGeometry(f, size)
	if err != nil {
		return err
	}
	e := &ext4Image{f: f, size: size, g: g, desc: make([]byte, g.descSize)}
	inode := make([]byte, g.inodeSize)
	visited := 0
	var walk func(path string, dirIno uint32, depth int) error
	walk = func(path string, dirIno uint32, depth int) error {
		if depth > 4096 {
			return fmt.Errorf("%w: directories nested too deep", ErrExt4Layout)
		}
		off, err := e.inodeOffset(dirIno)
		if err != nil {
			return err
		}
		if _, err := f.ReadAt(inode, off); err != nil {
			return fmt.Errorf("pack: ext4 inode %d: %w", dirIno, err)
		}
		names, ok, err := e.readDir(inode)
		if err != nil || !ok {
			return err
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		for _, de := range ents {
			if visited++; visited%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			ino, found := names[de.Name()]
			if !found {
				continue // not copied by mkfs.ext4 (a socket, for one)
			}
			p := filepath.Join(path, de.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				return fmt.Errorf("pack: %w", err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				continue
			}
			if err := e.updateInode(ino, inode, func(b []byte) {
				extra := int(binary.LittleEndian.Uint16(b[inodeExtraIsize:]))
				setTime(b, extra, inodeMtime, inodeMtimeExtra, &timeSpec{st.Mtim.Sec, st.Mtim.Nsec})
				setTime(b, extra, inodeAtime, inodeAtimeExtra, &timeSpec{st.Atim.Sec, st.Atim.Nsec})
			}); err != nil {
				return err
			}
			if de.IsDir() {
				if err := walk(p, ino, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if g.inodeSize <= goodOldInodeSize {
		return nil // no room for nanoseconds
	}
	return walk(dir, rootIno, 0)
}

// updateInode reads inode ino into buf, applies change and writes it back
// with its checksum redone.
func (e *ext4Image) updateInode(ino uint32, buf []byte, change func([]byte)) error {
	off, err := e.inodeOffset(ino)
	if err != nil {
		return err
	}
	if _, err := e.f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
	}
	change(buf)
	if e.g.csum {
		setInodeChecksum(buf, e.g.csumSeed, ino)
	}
	if _, err := e.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("pack: ext4 inode %d: %w", ino, err)
	}
	return nil
}
