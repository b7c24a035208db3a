package fusefs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func dirImage(t *testing.T, src string) *ext4.FS {
	t.Helper()
	img := testimg.FromDir(t, src)
	fh, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, _ := fh.Stat()
	fsys, err := ext4.Open(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// An image without any xattr answers GETXATTR with ENOSYS once the scan is
// done; one xattr anywhere (in the inode, in a block, an ACL) keeps the
// ordinary answers.
func TestNoXattrsScan(t *testing.T) {
	plain := t.TempDir()
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(plain, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), []byte("x"), 0o644)
	}
	cases := map[string]func(dir string) error{
		"none": func(string) error { return nil },
		"small": func(dir string) error {
			return unix.Setxattr(filepath.Join(dir, "fzb"), "user.k", []byte("v"), 0)
		},
		// Too big for the inode: an xattr block.
		"block": func(dir string) error {
			return unix.Setxattr(filepath.Join(dir, "fab"), "user.big", make([]byte, 600), 0)
		},
	}
	for name, add := range cases {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			if err := exec.Command("cp", "-a", plain+"/.", src).Run(); err != nil {
				t.Fatal(err)
			}
			if err := add(src); err != nil {
				t.Skipf("the source tree takes no xattrs: %v", err)
			}
			fsys := dirImage(t, src)
			none, err := fsys.NoXattrs()
			if err != nil || none != (name == "none") {
				t.Fatalf("NoXattrs = %v, %v", none, err)
			}
			r := newRawFS(fsys)
			r.scanXattrs()
			_, st := r.GetXAttr(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, "security.selinux", make([]byte, 64))
			if want := map[bool]fuse.Status{true: fuse.ENOSYS, false: fuse.ENODATA}[name == "none"]; st != want {
				t.Fatalf("getxattr: %v, want %v", st, want)
			}
		})
	}
}

// Through a mount of an image without xattrs: getxattr fails with
// EOPNOTSUPP once the kernel was told ENOSYS, and files still open and read
// (no OPEN requests at all).
func TestNoXattrsMount(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := dirImage(t, src)
	var opens atomic.Int64
	mnt, _ := mountFUSE(t, fsys, Options{Observe: func(op string, d time.Duration, n int, err error) {
		if op == "open" {
			opens.Add(1)
		}
	}})
	p := filepath.Join(mnt, "a")
	var err error
	for i := 0; i < 200; i++ {
		if _, err = unix.Getxattr(p, "user.x", make([]byte, 16)); errors.Is(err, unix.EOPNOTSUPP) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the scan runs in the background
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("getxattr: %v, want EOPNOTSUPP after the scan", err)
	}
	for i := 0; i < 3; i++ {
		if b, err := os.ReadFile(p); err != nil || string(b) != "hello" {
			t.Fatalf("read: %q %v", b, err)
		}
	}
	if opens.Load() > 1 {
		t.Fatalf("%d OPEN requests for 3 opens; the first ENOSYS should end them", opens.Load())
	}
	if _, err := os.OpenFile(p, os.O_RDWR, 0); !errors.Is(err, unix.EROFS) {
		t.Fatalf("open for writing: %v, want EROFS", err)
	}
}
