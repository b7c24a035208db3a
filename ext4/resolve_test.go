package ext4_test

import (
	"errors"
	"io"
	"io/fs"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

// symlinkImage builds testimg.SymlinkTree into an image.
func symlinkImage(t *testing.T) testimg.Image {
	t.Helper()
	src := t.TempDir()
	if err := testimg.SymlinkTree(src); err != nil {
		t.Fatal(err)
	}
	return testimg.FromDir(t, src)
}

// errnoOf maps Resolve's errors to what the kernel says.
func errnoOf(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ext4.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, ext4.ErrLoop):
		return syscall.ELOOP
	}
	return syscall.EIO
}

func resolveRead(f *ext4.FS, ino uint64) (string, error) {
	st, err := f.Stat(ino)
	if err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return "", err
	}
	b := make([]byte, st.Size)
	n, err := f.ReadAt(ino, b, 0)
	if err == io.EOF {
		err = nil
	}
	return string(b[:n]), err
}

// TestResolve checks the cases the issue names without a kernel to ask.
func TestResolve(t *testing.T) {
	img := symlinkImage(t)
	f := openImage(t, img)
	ax, err := f.Resolve("/a/x", ext4.Follow)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/b/link", "/a/b/link", "a/b/abs", "a/b/escape", "a/b/absescape", "chain1",
		"d/../x", "a/b/root/a/x", "c/up/a/b/link", "a/b/dotdot"} {
		if ino, err := f.Resolve(p, ext4.Follow); ino != ax || err != nil {
			t.Errorf("Resolve(%q) = %d, %v; want /a/x, inode %d", p, ino, err, ax)
		}
	}
	for _, p := range []string{"", ".", "/", "..", "/../..", "c/up", "a/b/root"} {
		if ino, err := f.Resolve(p, ext4.Follow); ino != ext4.RootIno || err != nil {
			t.Errorf("Resolve(%q) = %d, %v; want the root", p, ino, err)
		}
	}
	// ".." after a link to a directory is that directory's real parent:
	// d -> a/b, so d/.. is a.
	a, _ := f.Resolve("a", ext4.Follow)
	if ino, err := f.Resolve("a/b/updirlink", ext4.Follow); ino != a || err != nil {
		t.Errorf("a/b/updirlink (../../d/..) = %d, %v; want a, inode %d", ino, err, a)
	}
	link, err := f.Resolve("a/b/link", ext4.NoFollow)
	if err != nil || link == ax {
		t.Errorf("NoFollow a/b/link = %d, %v", link, err)
	} else if target, err := f.Readlink(link); target != "../x" || err != nil {
		t.Errorf("NoFollow a/b/link is not the link: %q %v", target, err)
	}
	if ino, err := f.Resolve("a/b/link/", ext4.NoFollow); !errors.Is(err, ext4.ErrNotDir) {
		t.Errorf("a/b/link/ (a file behind the link) = %d, %v; want ErrNotDir", ino, err)
	}
	for p, want := range map[string]error{
		"loop1": ext4.ErrLoop, "self": ext4.ErrLoop, "n00": ext4.ErrLoop,
		"throughfile": ext4.ErrNotDir, "a/x/": ext4.ErrNotDir, "a/b/fileslash": ext4.ErrNotDir,
		"dangling": fs.ErrNotExist, "dangling-abs": fs.ErrNotExist, "missing": fs.ErrNotExist,
	} {
		_, err := f.Resolve(p, ext4.Follow)
		if !errors.Is(err, want) {
			t.Errorf("Resolve(%q): %v, want %v", p, err, want)
		} else {
			prefixedOnce(t, err)
		}
	}
	if end, err := f.Resolve("n01", ext4.Follow); err != nil || end == 0 {
		t.Errorf("a chain of 40 links: %d, %v", end, err)
	}
	if _, err := f.Resolve("a", 0); err == nil {
		t.Error("no follow mode accepted")
	}
	x := f.IOFS()
	if b, err := x.ReadFile("a/b/link"); string(b) != "content of /a/x\n" || err != nil {
		t.Errorf("IOFS ReadFile a/b/link: %q %v", b, err)
	}
	if fi, err := x.Lstat("a/b/link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("IOFS Lstat a/b/link: %v %v", fi, err)
	}
	if fi, err := x.Stat("a/b/dirlink"); err != nil || !fi.IsDir() {
		t.Errorf("IOFS Stat a/b/dirlink: %v %v", fi, err)
	}
	if _, err := x.Open("loop1"); !errors.Is(err, ext4.ErrLoop) {
		t.Errorf("IOFS Open loop1: %v", err)
	}
}

// TestResolveKernel compares Resolve (and reading what it finds) with the
// kernel's path walk on a loop mount of the same image, the mount's root
// standing for the image root.
func TestResolveKernel(t *testing.T) {
	testimg.RequireRoot(t)
	img := symlinkImage(t)
	f := openImage(t, img)
	mnt := img.Mount(t)
	root, err := unix.Open(mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	for _, p := range testimg.SymlinkPaths {
		kp := p
		if p == "" {
			kp = "." // the kernel says ENOENT to ""; Resolve takes it for the root
		}
		for _, mode := range []ext4.FollowMode{ext4.Follow, ext4.NoFollow} {
			kino, kdata, kerr := testimg.OpenInRoot(root, kp, mode == ext4.Follow)
			ino, err := f.Resolve(p, mode)
			if errnoOf(err) != kerr || ino != kino {
				t.Errorf("%q mode %d: kernel inode %d errno %v; Resolve %d, %v", p, mode, kino, kerr, ino, err)
				continue
			}
			if err != nil {
				continue
			}
			data, err := resolveRead(f, ino)
			if err != nil || data != kdata {
				t.Errorf("%q mode %d: kernel reads %q, ext4 %q (%v)", p, mode, kdata, data, err)
			}
		}
	}
}
