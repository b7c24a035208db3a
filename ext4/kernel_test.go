package ext4_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testimg.Cleanup()
	os.Exit(code)
}

// imageFile opens img's file for the test, and its size.
func imageFile(t testing.TB, img testimg.Image) (*os.File, int64) {
	t.Helper()
	fh, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fh, st.Size()
}

func openImage(t testing.TB, img testimg.Image) *ext4.FS {
	t.Helper()
	fh, size := imageFile(t, img)
	fsys, err := ext4.Open(fh, size)
	if err != nil {
		t.Fatalf("ext4.Open(%s): %v", img.Variant.Name, err)
	}
	return fsys
}

// TestKernel compares every attribute the parser reports with the kernel's
// read-only mount of the same image, for every image variant.
func TestKernel(t *testing.T) {
	testimg.RequireRoot(t)
	for _, v := range testimg.Variants() {
		if v.NoKernel {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			t0 := time.Now()
			img := testimg.Build(t, v)
			t1 := time.Now()
			fsys := openImage(t, img)
			got, err := fstree.FromExt4(fsys)
			if err != nil {
				t.Fatalf("parser walk: %v", err)
			}
			t2 := time.Now()
			mnt := img.Mount(t)
			want, err := fstree.Snapshot(mnt)
			t.Logf("build %v parse %v kernel %v", t1.Sub(t0), t2.Sub(t1), time.Since(t2))
			if err != nil {
				t.Fatalf("kernel snapshot: %v", err)
			}
			if len(want) < 30 {
				t.Fatalf("kernel view has only %d paths", len(want))
			}
			for _, d := range fstree.Compare(want, got, fstree.Options{}) {
				t.Error(d)
			}
			checkKernelView(t, want, v)
			var ks unix.Statfs_t
			if err := unix.Statfs(mnt, &ks); err != nil {
				t.Fatal(err)
			}
			ps := fsys.Statfs()
			kw := ext4.Statfs{BlockSize: uint32(ks.Bsize), Blocks: ks.Blocks, BFree: ks.Bfree, BAvail: ks.Bavail,
				Files: ks.Files, FFree: ks.Ffree, NameLen: uint32(ks.Namelen)}
			if ps != kw {
				t.Errorf("statfs: kernel %+v, parser %+v", kw, ps)
			}
		})
	}
}

// checkKernelView spot-checks that the image really holds the odd cases
// (so that agreement above means something).
func checkKernelView(t *testing.T, want fstree.Tree, v testimg.Variant) {
	t.Helper()
	must := func(p string) *fstree.Entry {
		e, ok := want[p]
		if !ok {
			t.Fatalf("kernel view lacks %s", p)
		}
		return e
	}
	if e := must("dev/bignum"); e.Rdev != unix.Mkdev(300, 70000) {
		t.Errorf("dev/bignum rdev %#x", e.Rdev)
	}
	if e := must("own/u32"); e.Uid != 100000 || e.Gid != 4000000000 {
		t.Errorf("own/u32 ids %d:%d", e.Uid, e.Gid)
	}
	if e := must("links/a"); e.Nlink != 3 {
		t.Errorf("links/a nlink %d", e.Nlink)
	}
	if e := must("xattr/ns"); len(e.Xattrs) != 4 {
		t.Errorf("xattr/ns xattrs %v", e.Xattrs)
	}
	if e := must("acl/file"); e.Xattrs["system.posix_acl_access"] == "" {
		t.Errorf("acl/file has no ACL: %v", e.Xattrs)
	}
	if e := must("times/old1905"); time.Unix(e.Mtime.Sec, 0).UTC().Year() != 1905 && !strings.Contains(strings.Join(v.Mkfs, " "), "-I 128") {
		t.Errorf("times/old1905 mtime %v", e.Mtime)
	}
	if e := must("sym/verylong"); len(e.Target) != 900 {
		t.Errorf("sym/verylong target of %d bytes", len(e.Target))
	}
	n := v.LargeDir
	if n == 0 {
		n = 300
	}
	if e := must(testimg.LargeDirPath + "/target"); int(e.Nlink) != n+1 {
		t.Errorf("big/target nlink %d", e.Nlink)
	}
}
