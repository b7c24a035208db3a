package pack

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// contents is what a walk of DIR says the ext4 needs, in bytes and inodes.
type contents struct {
	data    int64 // file data blocks, holes excluded
	meta    int64 // directory, long-symlink and xattr blocks
	inodes  int64
	entries int64
}

type inodeKey struct{ dev, ino uint64 }

// estimate walks dir as mkfs.ext4 -d will copy it.
func estimate(ctx context.Context, dir string) (*contents, error) {
	c := &contents{inodes: 1, meta: 4096}
	seen := map[inodeKey]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		if c.entries%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if path == dir {
			return nil
		}
		c.entries++
		c.meta += 8 + (int64(len(d.Name()))+3)&^3 // the directory entry
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		st, _ := info.Sys().(*statT)
		if st != nil && st.Nlink > 1 && !info.IsDir() {
			k := inodeKey{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		c.inodes++
		c.meta += xattrBlocks(path)
		switch {
		case info.IsDir():
			c.meta += 4096
		case info.Mode()&fs.ModeSymlink != 0:
			if info.Size() >= 60 {
				c.meta += 4096
			}
		case info.Mode().IsRegular():
			c.data += fileData(path, info, st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// fileData is the data a regular file occupies in 4 KiB blocks, counting
// only its data extents when it looks sparse (mkfs.ext4 keeps holes), plus
// one extent block per 256 MiB as a margin for fragmented files.
func fileData(path string, info fs.FileInfo, st *statT) int64 {
	size := roundUp(info.Size(), 4096)
	extents := size / (256 << 20) * 4096
	if st == nil || st.Blocks*512 >= info.Size() {
		return size + extents
	}
	f, err := os.Open(path)
	if err != nil {
		return size + extents // mkfs will report the error
	}
	defer f.Close()
	var data, off int64
	for off < info.Size() {
		start, err := f.Seek(off, seekData)
		if err != nil {
			break // ENXIO: no more data
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return size + extents
		}
		data += roundUp(end, 4096) - start&^4095
		off = end
	}
	f.Seek(0, io.SeekStart)
	return data + extents
}

// fsSize turns the contents into an ext4 size and, when the default inode
// ratio would not give enough inodes, an inode count for mkfs -N (else 0).
func (c *contents) fsSize(h Headroom) (size, inodes int64) {
	content := c.data + c.meta + c.inodes*256
	base := content + int64(float64(content)*h.Fraction) + h.Bytes
	// mke2fs's inode ratio: 4096 bytes per inode below 512 MiB ("small"), else 16384.
	ratio := int64(16384)
	if base < 512<<20 {
		ratio = 4096
	}
	want := c.inodes + 16 + int64(float64(c.inodes)*h.Fraction)
	if want > base/ratio {
		inodes = want
	}
	size = base + base/ratio*256 + inodes*256 + base/64 + 2<<20
	size += journalSize(size)
	size = max(roundUp(size, 1<<20), minAutoExt4Size)
	return size, inodes
}

// journalSize is mke2fs's default journal for a file system of size bytes
// (ext2fs_default_journal_size, 4 KiB blocks).
func journalSize(size int64) int64 {
	blocks := size / 4096
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 4 << 20
	case blocks < 256*1024:
		return 16 << 20
	case blocks < 512*1024:
		return 32 << 20
	case blocks < 4096*1024:
		return 64 << 20
	case blocks < 8192*1024:
		return 128 << 20
	case blocks < 16384*1024:
		return 256 << 20
	case blocks < 32768*1024:
		return 512 << 20
	}
	return 1 << 30
}
