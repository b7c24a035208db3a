package ext4_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/ext4"
)

// seeds returns the images made by testdata/mkseeds.sh, decompressed.
func seeds(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/seeds/*.img.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seed images (run testdata/mkseeds.sh): %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, 4<<20))
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// walkAll exercises every read path on every reachable inode within a
// budget, returning the first error.
func walkAll(f *ext4.FS, budget int) error {
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	f.Statfs()
	seen := map[uint64]bool{}
	var walk func(ino uint64, depth int)
	walk = func(ino uint64, depth int) {
		if budget <= 0 || depth > 32 || seen[ino] {
			return
		}
		budget--
		seen[ino] = true
		st, err := f.Stat(ino)
		if err != nil {
			note(err)
			return
		}
		names, err := f.ListXattr(ino)
		note(err)
		for _, n := range names {
			_, err := f.GetXattr(ino, n)
			note(err)
		}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			ents, err := f.ReadDir(ino)
			note(err)
			for _, e := range ents {
				got, err := f.Lookup(ino, e.Name)
				note(err)
				if err == nil && got != e.Ino {
					note(errors.New("lookup and readdir disagree on " + e.Name))
				}
				walk(e.Ino, depth+1)
			}
			_, err = f.Lookup(ino, "..")
			note(err)
		case syscall.S_IFREG:
			buf := make([]byte, 64<<10)
			_, err := f.ReadAt(ino, buf, 0)
			if err != io.EOF {
				note(err)
			}
			if st.Size > 100 {
				_, err = f.ReadAt(ino, buf[:100], int64(st.Size-100))
				if err != io.EOF {
					note(err)
				}
			}
		case syscall.S_IFLNK:
			_, err := f.Readlink(ino)
			note(err)
		}
	}
	walk(ext4.RootIno, 0)
	return first
}

// TestSeeds checks the committed seed images read without any error.
func TestSeeds(t *testing.T) {
	for name, img := range seeds(t) {
		t.Run(name, func(t *testing.T) {
			f, err := ext4.Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if err := walkAll(f, 1000); err != nil {
				t.Fatal(err)
			}
			x := f.IOFS()
			if b, err := x.ReadFile("tiny"); err != nil || string(b) != "hello\n" {
				t.Fatalf("tiny: %q %v", b, err)
			}
			if b, err := x.ReadFile("dir/sub/hard"); err != nil || string(b) != "hello\n" {
				t.Fatalf("hard link: %q %v", b, err)
			}
			ents, err := x.ReadDir("dir")
			if err != nil || len(ents) != 81 {
				t.Fatalf("dir: %d entries, %v", len(ents), err)
			}
			if b, err := x.ReadFile("sparse"); err != nil || len(b) != 40001 || b[40000] != 'z' || b[100] != 0 {
				t.Fatalf("sparse: %d bytes, %v", len(b), err)
			}
		})
	}
}

// FuzzOpen feeds damaged images to the parser and walks everything: any
// panic, hang or runaway allocation is a failure; errors are fine.
func FuzzOpen(f *testing.F) {
	for _, img := range seeds(f) {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys, err := ext4.Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		walkAll(fsys, 300)
		checkLayout(t, fsys)
		x := fsys.IOFS()
		x.ReadDir(".")
		x.Stat("short")
		if fl, err := x.Open("dir/sub/hard"); err == nil {
			io.ReadAll(io.LimitReader(fl, 1<<20))
			fl.Close()
		}
	})
}

// FuzzPatch is FuzzOpen with small inputs, which the fuzzing engine
// handles far faster than whole images: the input picks a seed image and
// lists (offset, xor) patches to apply to its first 64 KiB, where the
// metadata lives.
func FuzzPatch(f *testing.F) {
	m := seeds(f)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	imgs := make([][]byte, len(names))
	for i, k := range names {
		imgs[i] = m[k]
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0x38, 0x04, 0x01}) // superblock magic
		f.Add(uint8(i), []byte{0x00, 0x14, 0xff}) // group descriptors (1 KiB blocks)
	}
	f.Fuzz(func(t *testing.T, which uint8, patch []byte) {
		base := imgs[int(which)%len(imgs)]
		img := bytes.Clone(base)
		for ; len(patch) >= 3; patch = patch[3:] {
			off := int(binary.LittleEndian.Uint16(patch)) % min(len(img), 64<<10)
			img[off] ^= patch[2]
		}
		fsys, err := ext4.Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		walkAll(fsys, 300)
		checkLayout(t, fsys)
	})
}

// checkLayout runs what a mount prefetches over a damaged image: no panic,
// no hang, and ranges a source can read (a negative offset or length would
// make the prefetch read nonsense).
func checkLayout(t *testing.T, fsys *ext4.FS) {
	t.Helper()
	check := func(what string, rs [][2]int64) {
		for _, r := range rs {
			if r[0] < 0 || r[1] <= 0 {
				t.Fatalf("%s: range %v", what, r)
			}
		}
	}
	check("inode tables", fsys.InodeTableRanges())
	dirs, _ := fsys.DirectoryRangesFetch(1<<20, func(idx [][2]int64) { check("index blocks", idx) })
	check("directories", dirs)
}

// FuzzResolve resolves arbitrary paths in the seed images: no panic or
// hang, and a path that resolves names a readable inode.
func FuzzResolve(f *testing.F) {
	m := seeds(f)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	fss := make([]*ext4.FS, len(names))
	for i, k := range names {
		fsys, err := ext4.Open(bytes.NewReader(m[k]), int64(len(m[k])))
		if err != nil {
			f.Fatal(err)
		}
		fss[i] = fsys
	}
	for _, p := range []string{"short", "/short/", "dir/sub/../sub/hard", "../../tiny", "long/x", "dir/./sub//hard/"} {
		f.Add(uint8(0), p, false)
	}
	f.Fuzz(func(t *testing.T, which uint8, p string, nofollow bool) {
		fsys := fss[int(which)%len(fss)]
		mode := ext4.Follow
		if nofollow {
			mode = ext4.NoFollow
		}
		ino, err := fsys.Resolve(p, mode)
		if err != nil {
			return
		}
		if _, err := fsys.Stat(ino); err != nil {
			t.Fatalf("Resolve(%q) = %d, which Stat refuses: %v", p, ino, err)
		}
	})
}
