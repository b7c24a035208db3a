package ext4_test

import (
	"io"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// BenchmarkReadSequential reads the 1 MiB file in 128 KiB requests, as
// FUSE does.
func BenchmarkReadSequential(b *testing.B) {
	f := openImage(b, variant(b, "default4k"))
	ino := lookupPath(b, f, "bigfile")
	buf := make([]byte, 128<<10)
	b.SetBytes(1 << 20)
	for b.Loop() {
		for off := int64(0); ; off += int64(len(buf)) {
			_, err := f.ReadAt(ino, buf, off)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkReadFragmented reads single blocks across the depth-2 extent tree.
func BenchmarkReadFragmented(b *testing.B) {
	f := openImage(b, variant(b, "default4k"))
	ino := lookupPath(b, f, "frag")
	st, _ := f.Stat(ino)
	bs := int64(f.BlockSize())
	buf := make([]byte, bs)
	i := int64(0)
	for b.Loop() {
		off := (i * 7919 * bs) % int64(st.Size)
		if _, err := f.ReadAt(ino, buf, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookupLargeDir looks names up in the 20000-entry directory.
func BenchmarkLookupLargeDir(b *testing.B) {
	f := openImage(b, variant(b, "default4k"))
	big := lookupPath(b, f, testimg.LargeDirPath)
	i := 0
	for b.Loop() {
		if _, err := f.Lookup(big, testimg.LargeDirName(i%20000)); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}

func BenchmarkStat(b *testing.B) {
	f := openImage(b, variant(b, "default4k"))
	for b.Loop() {
		if _, err := f.Stat(ext4.RootIno); err != nil {
			b.Fatal(err)
		}
	}
}
