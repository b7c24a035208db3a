package ext4_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// manyFilesImage is a kernel-made image of 100k files: 60000 in 1200
// directories and 40000 in one, made once per CHESTFS_TESTIMG_DIR (or
// per run without it), or the image CHESTFS_BENCH_EXT4_IMAGE names.
func manyFilesImage(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("CHESTFS_BENCH_EXT4_IMAGE"); p != "" {
		return p
	}
	testimg.RequireRoot(b)
	dir := os.Getenv("CHESTFS_TESTIMG_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	img := filepath.Join(dir, "many100k-v1.img")
	if _, err := os.Stat(img); err == nil {
		return img
	}
	tmp := img + ".tmp"
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	os.Remove(tmp)
	run("truncate", "-s", "512M", tmp)
	run("mkfs.ext4", "-q", "-F", "-b", "4096", "-N", "200000", tmp)
	mnt := b.TempDir()
	run("mount", "-o", "loop", tmp, mnt)
	defer exec.Command("umount", mnt).Run()
	for d := range 1200 {
		p := filepath.Join(mnt, fmt.Sprintf("pkg%03d", d/10), fmt.Sprintf("mod%02d", d%10))
		if err := os.MkdirAll(p, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 50 {
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("file%03d.py", i)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	os.Mkdir(filepath.Join(mnt, "many"), 0o755)
	for i := range 40000 {
		if err := os.WriteFile(filepath.Join(mnt, "many", fmt.Sprintf("f%06d", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	run("umount", mnt)
	if err := os.Rename(tmp, img); err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkDirectoryRanges scans the inode tables of a 100k-file image
// for its directories' blocks (the mount-time metadata prefetch).
func BenchmarkDirectoryRanges(b *testing.B) {
	img := manyFilesImage(b)
	fh, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	for b.Loop() {
		// A fresh FS each time: the mount scans once, with cold caches.
		fsys, err := ext4.Open(fh, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		rs, err := fsys.DirectoryRanges(1 << 30)
		if err != nil || len(rs) == 0 {
			b.Fatal(rs, err)
		}
		var n int64
		for _, r := range rs {
			n += r[1]
		}
		b.ReportMetric(float64(len(rs)), "ranges")
		b.ReportMetric(float64(n), "bytes")
	}
}
