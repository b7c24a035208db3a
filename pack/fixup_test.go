package pack

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memImage is an in-memory ext4 image for patchTree.
type memImage []byte

func (m memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) || int64(len(p)) > int64(len(m))-off {
		return 0, os.ErrInvalid
	}
	return copy(p, m[off:]), nil
}

func (m memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) || int64(len(p)) > int64(len(m))-off {
		return 0, os.ErrInvalid
	}
	return copy(m[off:], p), nil
}

// smallExt4 makes a real ext4 image of size bytes holding a few files.
func smallExt4(t testing.TB, size int64, files int) (img, src string) {
	t.Helper()
	mkfs, err := findMkfs("")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	for i := 0; i < files; i++ {
		p := filepath.Join(src, "d", strings.Repeat("n", i%7+1)+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(p), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if files == 0 {
		os.Mkdir(src, 0o755)
	}
	img = filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runMkfs(ctx, mkfs, src, img, size, 0); err != nil {
		t.Fatal(err)
	}
	return img, src
}

// fixTree runs patchTree over the image file img with src as DIR.
func fixTree(t *testing.T, img, src string, owner *[2]uint32) error {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	size, _ := fh.Seek(0, io.SeekEnd)
	return patchTree(context.Background(), fh, size, src, mustStat(t, src), owner)
}

func mustStat(t testing.TB, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestPatchRootAndOwners changes the root directory and all owners of a
// real ext4 and checks the result with e2fsprogs (e2fsck verifies every
// inode checksum).
func TestPatchRootAndOwners(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs")
	img, src := smallExt4(t, 40<<20, 300)
	if err := syscall.Chmod(src, 0o1750); err != nil { // os.Chmod takes fs.ModeSticky, not 0o1000
		t.Fatal(err)
	}
	// after 2038: needs the epoch bits
	if err := os.Chtimes(src, time.Unix(1000, 5), time.Unix(1<<32, 123456789)); err != nil {
		t.Fatal(err)
	}
	if err := fixTree(t, img, src, &[2]uint32{70000, 80000}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "e2fsck", "-fn", img)
	root := mustRun(t, "debugfs", "-R", "stat /", img)
	for _, want := range []string{"Mode:  01750", "User: 70000   Group: 80000", "mtime: 0x00000000:1d6f3455 -- Sun Feb  7 06:28:16 2106"} {
		if !strings.Contains(root, want) {
			t.Errorf("root inode lacks %q:\n%s", want, root)
		}
	}
	for _, p := range []string{"/d/naa", "/lost+found"} {
		if out := mustRun(t, "debugfs", "-R", "stat "+p, img); !strings.Contains(out, "User: 70000   Group: 80000") {
			t.Errorf("%s: owner not mapped:\n%s", p, out)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[1024+0x38] ^= 0xff // the superblock magic
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fixTree(t, img, src, nil); err == nil {
		t.Error("no error for a missing superblock magic")
	}
}

func FuzzPatchTree(f *testing.F) {
	img, src := smallExt4(f, 256<<10, 3)
	fi := mustStat(f, src)
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		patchTree(context.Background(), memImage(b), int64(len(b)), src, fi, &[2]uint32{3, 4})
	})
}

// TestSetTimes gives 300 files (a directory of several blocks) and their
// directories nanosecond times; e2fsck checks the inode checksums.
func TestSetTimes(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs")
	img, src := smallExt4(t, 40<<20, 300)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		tm := time.Unix(1600000000, 987654321)
		return os.Chtimes(p, tm, tm)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fixTree(t, img, src, nil); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "e2fsck", "-fn", img)
	// 987654321 << 2 = 0xeb79a2c4 (no epoch bits before 2038)
	for _, p := range []string{"/", "/d", "/d/naa", "/d/nnnnuf", "/d/nnnnnnnl"} {
		out := mustRun(t, "debugfs", "-R", "stat "+p, img)
		if !strings.Contains(out, "mtime: 0x5f5e1000:eb79a2c4") || !strings.Contains(out, "atime: 0x5f5e1000:eb79a2c4") {
			t.Errorf("%s: times not set:\n%s", p, out)
		}
	}
}

// TestPackManyFiles: 3000 empty files need more inodes than the
// default ratio of a small file system gives; the estimate must ask for them.
func TestPackManyFiles(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck")
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	for d := 0; d < 30; d++ {
		dd := filepath.Join(src, strings.Repeat("d", d%5+1)+string(rune('a'+d)))
		if err := os.MkdirAll(dd, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			f, err := os.Create(filepath.Join(dd, strings.Repeat("f", i%40+1)+string(rune('a'+i%26))+string(rune('a'+i/26))))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	est, err := estimate(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if est.inodes != 3031 || est.entries != 3030 {
		t.Errorf("estimate counted %d inodes, %d entries", est.inodes, est.entries)
	}
	image := filepath.Join(tmp, "img")
	opts := testOptions(src, image, []byte("k"))
	opts.Headroom = "0" // so that the inode count, not spare space, decides
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(image); err != nil || fi.Size() > HeaderSize+64<<20 {
		t.Fatalf("image: %v (size %d)", err, fi.Size())
	}
}
