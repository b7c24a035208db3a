package fusefs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

// TestSymlinksAsKernel: paths through the FUSE mount resolve as through
// the kernel's ext4 mount of the same image: `a/b/link -> ../x` reads
// /a/x, absolute links start at the mount's root, and loops, dangling
// links and links through files fail alike.
func TestSymlinksAsKernel(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	if err := testimg.SymlinkTree(src); err != nil {
		t.Fatal(err)
	}
	img := testimg.FromDir(t, src)
	fh, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	fsys, err := ext4.Open(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	kernel := img.Mount(t)
	mnt, _ := mountFUSE(t, fsys, Options{})

	got, err := os.ReadFile(filepath.Join(mnt, "a/b/link"))
	want, werr := os.ReadFile(filepath.Join(mnt, "a/x"))
	if err != nil || werr != nil || string(got) != string(want) || string(got) != "content of /a/x\n" {
		t.Fatalf("a/b/link through FUSE: %q %v; /a/x: %q %v", got, err, want, werr)
	}

	open := func(dir string) int {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	kroot, froot := open(kernel), open(mnt)
	for _, p := range testimg.SymlinkPaths {
		if p == "" {
			continue // openat2 refuses an empty path
		}
		for _, follow := range []bool{true, false} {
			kino, kdata, kerr := testimg.OpenInRoot(kroot, p, follow)
			fino, fdata, ferr := testimg.OpenInRoot(froot, p, follow)
			if kerr != ferr || kdata != fdata || (kino != fino && !(kino == ext4.RootIno && fino == 1)) {
				t.Errorf("%q follow %v: kernel inode %d %v %q; FUSE inode %d %v %q", p, follow, kino, kerr, kdata, fino, ferr, fdata)
			}
		}
	}
}
