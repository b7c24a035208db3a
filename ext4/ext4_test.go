package ext4_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
)

func variant(t testing.TB, name string) testimg.Image {
	t.Helper()
	v, ok := testimg.Lookup(name)
	if !ok {
		t.Fatalf("no variant %s", name)
	}
	return testimg.Build(t, v)
}

func lookupPath(t testing.TB, f *ext4.FS, p string) uint64 {
	t.Helper()
	ino := uint64(ext4.RootIno)
	for _, c := range strings.Split(p, "/") {
		var err error
		if ino, err = f.Lookup(ino, c); err != nil {
			t.Fatalf("lookup %s: %v", p, err)
		}
	}
	return ino
}

// TestContent checks known file contents and shapes in every variant,
// including those the kernel cannot mount (64 KiB blocks).
func TestContent(t *testing.T) {
	for _, v := range testimg.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			img := testimg.Build(t, v)
			f := openImage(t, img)
			x := f.IOFS()
			check := func(name string, want []byte) {
				t.Helper()
				got, err := x.ReadFile(name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: content differs (%d bytes, want %d)", name, len(got), len(want))
				}
			}
			check("tiny", []byte("hello\n"))
			check("empty", nil)
			check("small100", testimg.Pattern(1, 100))
			check("medium", testimg.Pattern(2, 5000))
			check("bigfile", testimg.Pattern(3, 1<<20))
			check("links/c", []byte("linked\n"))
			check("sym/short", []byte("hello\n")) // through the symlink
			sparse := make([]byte, 5<<20)
			copy(sparse, testimg.Pattern(4, 10))
			copy(sparse[3<<20+7:], testimg.Pattern(5, 10))
			if img.Kernel {
				check("sparse", sparse)
			} else if got, err := x.ReadFile("sparse"); err != nil || len(got) < 3<<20+17 || !bytes.Equal(got, sparse[:len(got)]) {
				// mkfs -d (1.47.0) with inline_data drops the trailing hole.
				t.Errorf("sparse: %d bytes, %v", len(got), err)
			}

			// Reads across extent boundaries of the fragmented file.
			bs := int64(f.BlockSize())
			ino := lookupPath(t, f, "frag")
			buf := make([]byte, 3*bs+5)
			for _, i := range []int64{0, 1, 7, 40, 300, 1000} {
				off := 2*i*bs + i%7
				n, err := f.ReadAt(ino, buf, off)
				st, _ := f.Stat(ino)
				if off >= int64(st.Size) {
					if n != 0 || err != io.EOF {
						t.Errorf("frag read past EOF at %d: %d %v", off, n, err)
					}
					continue
				}
				if err != nil && err != io.EOF {
					t.Fatalf("frag read at %d: %v", off, err)
				}
				if !bytes.Equal(buf[:3], testimg.Pattern(uint32(i), 3)) {
					t.Errorf("frag block %d: got %x", 2*i, buf[:3])
				}
				if n > int(bs) && !bytes.Equal(buf[3:bs], make([]byte, bs-3)) {
					t.Errorf("frag hole after block %d not zero", 2*i)
				}
			}
			if got, err := x.ReadLink("sym/verylong"); err != nil || got != strings.Repeat("L", 900) {
				t.Errorf("sym/verylong: %q %v", got, err)
			}
			if got, err := x.ReadLink("sym/fiftynine"); err != nil || got != strings.Repeat("y", 59) {
				t.Errorf("sym/fiftynine: %q %v", got, err)
			}
			ents, err := x.ReadDir(testimg.LargeDirPath)
			if err != nil {
				t.Fatal(err)
			}
			n := v.LargeDir
			if n == 0 {
				n = 300
			}
			if len(ents) != n+1+testimg.LargeDirExtra {
				t.Errorf("%s has %d entries, want %d", testimg.LargeDirPath, len(ents), n+1+testimg.LargeDirExtra)
			}
			fi, err := x.Stat("times/y2300")
			if err != nil {
				t.Fatal(err)
			}
			// The kernel clamps to 2038 with 128-byte inodes; mkfs -d keeps
			// only 32 bits of seconds.
			if y := fi.ModTime().UTC().Year(); img.Kernel && y != 2300 && !(y == 2038 && strings.Contains(strings.Join(v.Mkfs, " "), "-I 128")) {
				t.Errorf("times/y2300 mtime %v", fi.ModTime())
			}
			if _, err := x.Stat("no/such/file"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing path: %v", err)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	f := openImage(t, variant(t, "default1k"))
	in := f.Info()
	if in.UUID != "6b1c7a3e-5a43-4c0e-9d0b-2f1e0d3c4b5a" || in.Label != "default1k" || in.BlockSize != 1024 {
		t.Errorf("info %+v", in)
	}
	if !slices.Contains(in.Features, "metadata_csum") || !slices.Contains(in.Features, "extent") || in.JournalReplayed {
		t.Errorf("features %v", in.Features)
	}
}

// TestLookupAll resolves every path of the walked tree by hashed lookup
// and checks it reaches the inode ReadDir reported.
func TestLookupAll(t *testing.T) {
	for _, name := range []string{"default4k", "default1k", "nocsum32", "legacyhash2k", "unsigned", "largedir", "ext2nofiletype", "inline"} {
		t.Run(name, func(t *testing.T) {
			f := openImage(t, variant(t, name))
			tree, err := fstree.FromExt4(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tree.Paths() {
				if p == "." {
					continue
				}
				if got := lookupPath(t, f, p); got != tree[p].Ino {
					t.Fatalf("%s: lookup gives inode %d, readdir %d", p, got, tree[p].Ino)
				}
			}
			if _, err := f.Lookup(ext4.RootIno, "entry-999999-nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("absent name: %v", err)
			}
			big := lookupPath(t, f, testimg.LargeDirPath)
			if p, err := f.Lookup(big, ".."); err != nil || p != ext4.RootIno {
				t.Errorf("..: %d %v", p, err)
			}
		})
	}
}

// countingReader counts ReadAt calls.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(1)
	return c.r.ReadAt(p, off)
}

// TestHtreeLookupIsHashed checks that lookups in large indexed
// directories read a handful of blocks, not the whole directory, for every
// hash flavour (half_md4, tea, legacy, unsigned, two-level, large_dir).
func TestHtreeLookupIsHashed(t *testing.T) {
	for _, v := range testimg.Variants() {
		if v.LargeDir < 1000 {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			img := testimg.Build(t, v)
			fh, err := os.Open(img.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			cr := &countingReader{r: fh}
			f, err := ext4.Open(cr, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			big, err := f.Lookup(ext4.RootIno, testimg.LargeDirPath)
			if err != nil {
				t.Fatal(err)
			}
			dst, _ := f.Stat(big)
			dirBlocks := int64(dst.Size) / int64(f.BlockSize())
			if dirBlocks < 16 {
				t.Fatalf("directory has only %d blocks", dirBlocks)
			}
			target, err := f.Lookup(big, "target")
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{0, 1, 777, v.LargeDir / 2, v.LargeDir - 1} {
				before := cr.n.Load()
				ino, err := f.Lookup(big, testimg.LargeDirName(i))
				if err != nil || ino != target {
					t.Fatalf("lookup %d: %d %v", i, ino, err)
				}
				if reads := cr.n.Load() - before; reads > 8 {
					t.Errorf("lookup %d read %d blocks of a %d-block directory", i, reads, dirBlocks)
				}
			}
			for i := 0; i < testimg.LargeDirExtra; i++ {
				before := cr.n.Load()
				if _, err := f.Lookup(big, testimg.LargeDirExtraName(i)); err != nil {
					t.Fatalf("lookup %q: %v", testimg.LargeDirExtraName(i), err)
				}
				if reads := cr.n.Load() - before; reads > 8 {
					t.Errorf("lookup %q read %d blocks", testimg.LargeDirExtraName(i), reads)
				}
			}
		})
	}
}

// TestIOFS runs the standard library's io/fs conformance checks.
func TestIOFS(t *testing.T) {
	f := openImage(t, variant(t, "inline"))
	x := f.IOFS()
	// fstest opens every name it lists, so keep it to subtrees without
	// dangling symlinks or special files.
	for dir, files := range map[string][]string{
		"dirs":   {"a/b/c/d/e/deep", "small/one"},
		"inline": {"f60", "f200", "subdir/x"},
		"links":  {"a", "b", "c"},
	} {
		sub, err := fs.Sub(x, dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(sub, files...); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
	fi, err := x.Lstat("sym/short")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("lstat symlink: %v %v", fi, err)
	}
	if _, ok := fi.Sys().(*ext4.Stat); !ok {
		t.Fatalf("Sys() is %T", fi.Sys())
	}
}

// TestConcurrent reads from many goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	f := openImage(t, variant(t, "default1k"))
	x := f.IOFS()
	want := testimg.Pattern(3, 1<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				got, err := x.ReadFile("bigfile")
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("bigfile: %v", err)
					return
				}
				if _, err := x.ReadDir(testimg.LargeDirPath); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// copyImage copies an image so a test can damage it.
func copyImage(t testing.TB, img testimg.Image) string {
	t.Helper()
	b, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	p := t.TempDir() + "/img"
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func debugfs(t testing.TB, img, cmd string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", cmd, img).CombinedOutput()
	if err != nil {
		t.Skipf("debugfs %q: %v: %s", cmd, err, out)
	}
	return string(out)
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 1)
	if _, err := fh.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func openPath(t testing.TB, p string) (*ext4.FS, error) {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, _ := fh.Stat()
	return ext4.Open(fh, st.Size())
}

var reNum = regexp.MustCompile(`(?:located at block|File ACL:) (\d+)(?:, offset 0x([0-9a-f]+))?`)

// TestCorruptChecksums damages single objects and checks that only they
// fail, with ErrChecksum, while the rest of the filesystem reads fine.
func TestCorruptChecksums(t *testing.T) {
	img := variant(t, "default1k")
	bs := int64(1024)

	t.Run("inode", func(t *testing.T) {
		p := copyImage(t, img)
		m := reNum.FindStringSubmatch(debugfs(t, p, "imap /tiny"))
		if m == nil || m[2] == "" {
			t.Skip("debugfs imap output not understood")
		}
		blk, _ := strconv.ParseInt(m[1], 10, 64)
		off, _ := strconv.ParseInt(m[2], 16, 64)
		flipByte(t, p, blk*bs+off+0x10) // i_mtime
		f, err := openPath(t, p)
		if err != nil {
			t.Fatal(err)
		}
		tiny, err := f.Lookup(ext4.RootIno, "tiny")
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Stat(tiny)
		if !errors.Is(err, ext4.ErrChecksum) || !errors.Is(err, ext4.ErrCorrupt) {
			t.Fatalf("stat of damaged inode: %v", err)
		}
		prefixedOnce(t, err)
		if _, err := f.IOFS().ReadFile("medium"); err != nil {
			t.Fatalf("other file: %v", err)
		}
		if _, err := f.ReadDir(ext4.RootIno); err != nil {
			t.Fatalf("root dir: %v", err)
		}
	})
	t.Run("xattrblock", func(t *testing.T) {
		p := copyImage(t, img)
		m := reNum.FindStringSubmatch(debugfs(t, p, "stat /xattr/many"))
		if m == nil || m[1] == "0" {
			t.Skip("no xattr block (not built by the kernel?)")
		}
		blk, _ := strconv.ParseInt(m[1], 10, 64)
		flipByte(t, p, blk*bs+100)
		f, err := openPath(t, p)
		if err != nil {
			t.Fatal(err)
		}
		ino := lookupPath(t, f, "xattr/many")
		_, err = f.ListXattr(ino)
		if !errors.Is(err, ext4.ErrChecksum) {
			t.Fatalf("listxattr: %v", err)
		}
		prefixedOnce(t, err)
		if _, err := f.Stat(ino); err != nil {
			t.Fatalf("stat still works: %v", err)
		}
		if _, err := f.GetXattr(lookupPath(t, f, "xattr/ns"), "user.u"); err != nil {
			t.Fatalf("other xattrs: %v", err)
		}
	})
	t.Run("dirblock", func(t *testing.T) {
		p := copyImage(t, img)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// The first leaf block of big/ (a leaf starts with a live entry).
		var blk int64
		for i := 1; i < 20 && blk == 0; i++ {
			out := strings.TrimSpace(debugfs(t, p, fmt.Sprintf("bmap /big %d", i)))
			b, err := strconv.ParseInt(out[strings.LastIndex(out, "\n")+1:], 10, 64)
			if err != nil || b == 0 || (b+1)*bs > int64(len(raw)) {
				continue
			}
			if raw[b*bs] != 0 || raw[b*bs+1] != 0 {
				blk = b
			}
		}
		if blk == 0 {
			t.Skip("no leaf block found")
		}
		flipByte(t, p, blk*bs+20)
		f, err := openPath(t, p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadDir(lookupPath(t, f, "big"))
		if !errors.Is(err, ext4.ErrChecksum) {
			t.Fatalf("readdir of damaged block: %v", err)
		}
		prefixedOnce(t, err)
		if _, err := f.ReadDir(lookupPath(t, f, "dirs/small")); err != nil {
			t.Fatalf("other dir: %v", err)
		}
	})
	t.Run("htreeroot", func(t *testing.T) {
		p := copyImage(t, img)
		out := debugfs(t, p, "bmap /big 0")
		blk, err := strconv.ParseInt(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), 10, 64)
		if err != nil {
			t.Skipf("bmap output %q", out)
		}
		flipByte(t, p, blk*bs+0x28+4) // an index entry's hash
		f, err := openPath(t, p)
		if err != nil {
			t.Fatal(err)
		}
		big := lookupPath(t, f, "big")
		// As in the kernel (dx_probe's ext4_read_dirblock), an index block
		// failing its checksum fails lookups and readdir (EBADMSG); only a
		// malformed index sends them to a linear scan.
		for _, i := range []int{0, 1500, 2999} {
			if _, err := f.Lookup(big, testimg.LargeDirName(i)); !errors.Is(err, ext4.ErrChecksum) {
				t.Fatalf("lookup with damaged index: %v", err)
			}
		}
		if ents, err := f.ReadDir(big); !errors.Is(err, ext4.ErrChecksum) || len(ents) != 0 {
			t.Fatalf("readdir with damaged index: %d entries, %v", len(ents), err)
		}
		if !testimg.IsRoot() {
			return // the kernel's view needs a loop mount
		}
		mnt, err := testimg.TryMount(t, testimg.CopyFile(t, p), false)
		if err != nil {
			t.Fatalf("the kernel refuses the image: %v", err)
		}
		if _, err := os.ReadDir(filepath.Join(mnt, "big")); !errors.Is(err, syscall.EBADMSG) {
			t.Errorf("the kernel's readdir: %v, want EBADMSG", err)
		}
		if _, err := os.Lstat(filepath.Join(mnt, "big", testimg.LargeDirName(1500))); !errors.Is(err, syscall.EBADMSG) {
			t.Errorf("the kernel's lookup: %v, want EBADMSG", err)
		}
	})
}

// TestOpenRefuses checks the clear errors for bad or unsupported images.
func TestOpenRefuses(t *testing.T) {
	img := variant(t, "default1k")
	t.Run("magic", func(t *testing.T) {
		p := copyImage(t, img)
		flipByte(t, p, 1024+0x38)
		_, err := openPath(t, p)
		// Not an ext4 filesystem (a wrong key), not a damaged one.
		if !errors.Is(err, ext4.ErrNotExt4) || errors.Is(err, ext4.ErrCorrupt) {
			t.Fatalf("bad magic: %v", err)
		}
		prefixedOnce(t, err)
	})
	t.Run("tiny", func(t *testing.T) {
		p := t.TempDir() + "/img"
		if err := os.WriteFile(p, make([]byte, 1500), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openPath(t, p); !errors.Is(err, ext4.ErrNotExt4) {
			t.Fatalf("1500 bytes: %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		p := copyImage(t, img)
		if err := os.Truncate(p, 1<<20); err != nil {
			t.Fatal(err)
		}
		_, err := openPath(t, p)
		if !errors.Is(err, ext4.ErrCorrupt) || errors.Is(err, ext4.ErrNotExt4) {
			t.Fatalf("truncated: %v", err)
		}
		prefixedOnce(t, err)
	})
	t.Run("incompat", func(t *testing.T) {
		p := copyImage(t, img)
		flipByte(t, p, 1024+0x60+3) // high byte of s_feature_incompat
		_, err := openPath(t, p)
		if !errors.Is(err, ext4.ErrUnsupported) || !strings.Contains(err.Error(), "incompatible features") {
			t.Fatalf("unknown incompat: %v", err)
		}
	})
	t.Run("casefold", func(t *testing.T) {
		p := copyImage(t, img)
		debugfs(t, p, "stats") // skip without debugfs
		out, err := exec.Command("debugfs", "-w", "-R", "feature casefold", p).CombinedOutput()
		if err != nil {
			t.Skipf("debugfs: %v %s", err, out)
		}
		if _, err := openPath(t, p); !errors.Is(err, ext4.ErrUnsupported) || !strings.Contains(err.Error(), "casefold") {
			t.Fatalf("casefold: %v", err)
		}
	})
	t.Run("needs_recovery", func(t *testing.T) {
		p := copyImage(t, img)
		out, err := exec.Command("debugfs", "-w", "-R", "feature needs_recovery", p).CombinedOutput()
		if err != nil {
			t.Skipf("debugfs: %v %s", err, out)
		}
		// An empty journal: nothing to replay, the image reads as it is.
		f, err := openPath(t, p)
		if err != nil {
			t.Fatalf("needs_recovery with an empty journal: %v", err)
		}
		if _, err := f.IOFS().ReadFile("bigfile"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("needs_recovery-nojournal", func(t *testing.T) {
		p := copyImage(t, variant(t, "nocsum32"))
		out, err := exec.Command("debugfs", "-w", "-R", "feature needs_recovery", p).CombinedOutput()
		if err != nil {
			t.Skipf("debugfs: %v %s", err, out)
		}
		if _, err := openPath(t, p); !errors.Is(err, ext4.ErrUnsupported) || !strings.Contains(err.Error(), "journal") {
			t.Fatalf("needs_recovery without a journal: %v", err)
		}
	})
	t.Run("superblock-csum", func(t *testing.T) {
		p := copyImage(t, img)
		flipByte(t, p, 1024+0x78) // volume name, covered by the checksum
		// A superblock failing its checksum says "not ext4" (the hint a
		// wrong key needs) and is a checksum error, hence corruption too.
		_, err := openPath(t, p)
		if !errors.Is(err, ext4.ErrChecksum) || !errors.Is(err, ext4.ErrNotExt4) || !errors.Is(err, ext4.ErrCorrupt) {
			t.Fatalf("superblock checksum: %v", err)
		}
		prefixedOnce(t, err)
	})
}

// prefixedOnce checks that err names the package once, at the start.
func prefixedOnce(t testing.TB, err error) {
	t.Helper()
	if msg := err.Error(); !strings.HasPrefix(msg, "ext4: ") || strings.Count(msg, "ext4:") != 1 {
		t.Errorf("error %q: want the prefix \"ext4: \" once", msg)
	}
}

func TestChecksumIsCorrupt(t *testing.T) {
	if !errors.Is(ext4.ErrChecksum, ext4.ErrCorrupt) {
		t.Error("ErrChecksum does not match ErrCorrupt")
	}
	if errors.Is(ext4.ErrCorrupt, ext4.ErrChecksum) || errors.Is(ext4.ErrNotExt4, ext4.ErrCorrupt) ||
		errors.Is(ext4.ErrUnsupported, ext4.ErrCorrupt) {
		t.Error("sentinels match each other")
	}
	wrapped := fmt.Errorf("ctx: %w", ext4.ErrChecksum)
	if !errors.Is(wrapped, ext4.ErrCorrupt) || !errors.Is(wrapped, ext4.ErrChecksum) {
		t.Error("a wrapped ErrChecksum lost its kinds")
	}
}

func TestErrorsAreSentinels(t *testing.T) {
	img := variant(t, "default1k")
	f := openImage(t, img)
	tiny := lookupPath(t, f, "tiny")
	if _, err := f.ReadDir(tiny); !errors.Is(err, ext4.ErrNotDir) {
		t.Errorf("readdir of a file: %v", err)
	}
	if _, err := f.ReadAt(ext4.RootIno, make([]byte, 1), 0); !errors.Is(err, ext4.ErrIsDir) {
		t.Errorf("read of a dir: %v", err)
	}
	if _, err := f.GetXattr(tiny, "user.none"); !errors.Is(err, ext4.ErrNoXattr) {
		t.Errorf("missing xattr: %v", err)
	}
	if _, err := f.Readlink(tiny); err == nil {
		t.Error("readlink of a file succeeded")
	}
	if img.Kernel {
		fifo := lookupPath(t, f, "dev/fifo")
		if st, err := f.Stat(fifo); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			t.Errorf("fifo: mode %o, %v", st.Mode, err)
		}
		if _, err := f.ReadAt(fifo, make([]byte, 1), 0); err == nil {
			t.Error("read of a fifo succeeded")
		}
	}
	if _, err := f.Stat(1 << 40); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of an impossible inode: %v", err)
	}
	_, e1 := f.ReadDir(tiny)
	_, e2 := f.ReadAt(ext4.RootIno, make([]byte, 1), 0)
	_, e3 := f.GetXattr(tiny, "user.none")
	_, e4 := f.Readlink(tiny)
	_, e5 := f.Lookup(ext4.RootIno, "no-such-name")
	_, e6 := f.Lookup(tiny, "x")
	for _, err := range []error{e1, e2, e3, e4, e5, e6} {
		prefixedOnce(t, err)
	}
	if !errors.Is(e4, ext4.ErrNotSymlink) || !errors.Is(e5, fs.ErrNotExist) || !errors.Is(e6, ext4.ErrNotDir) {
		t.Errorf("readlink of a file: %v; missing name: %v; lookup in a file: %v", e4, e5, e6)
	}
}
