package ext4_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// countingDevice counts device reads.
type countingDevice struct {
	*os.File
	reads atomic.Int64
}

func (d *countingDevice) ReadAt(p []byte, off int64) (int, error) {
	d.reads.Add(1)
	return d.File.ReadAt(p, off)
}

// TestInodeTableReadahead: stat'ing the entries of a directory of 3000
// files reads the inode table in runs (far fewer device reads than table
// blocks), and a second pass reads nothing: the tables stay cached.
func TestInodeTableReadahead(t *testing.T) {
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		if err := os.WriteFile(filepath.Join(src, "d", fmt.Sprintf("f%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fh, size := imageFile(t, testimg.FromDir(t, src, "-b", "4096", "-I", "256"))
	dev := &countingDevice{File: fh}
	f, err := ext4.Open(dev, size)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := f.ReadDir(lookupPath(t, f, "d"))
	if err != nil {
		t.Fatal(err)
	}
	inos := make([]uint64, len(ents))
	for i, e := range ents {
		inos[i] = e.Ino
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	// Inode-table blocks the entries live in (16 inodes of 256 bytes a
	// block, groups of a multiple of 16 inodes).
	blocks := map[uint64]bool{}
	for _, ino := range inos {
		blocks[(ino-1)/16] = true
	}
	stat := func() int64 {
		before := dev.reads.Load()
		for _, ino := range inos {
			if _, err := f.Stat(ino); err != nil {
				t.Fatal(err)
			}
		}
		return dev.reads.Load() - before
	}
	if n := stat(); n == 0 || n > int64(len(blocks))/8 {
		t.Errorf("first pass: %d device reads for %d inode-table blocks, want a read per run of up to 32", n, len(blocks))
	}
	if n := stat(); n != 0 {
		t.Errorf("second pass: %d device reads, want none (cached)", n)
	}
}
