package testimg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Helpers for tests that damage small images with the real tools and
// compare with what the kernel makes of them.

// Mkfs makes a small ext4 image of sizeMiB from the tree in src (mkfs.ext4
// -d) with extra mkfs arguments, in t.TempDir().
func Mkfs(t testing.TB, src string, sizeMiB int, args ...string) string {
	t.Helper()
	RequireTools(t)
	img := filepath.Join(t.TempDir(), "fs.img")
	a := append([]string{"-q", "-F", "-E", "root_owner=0:0"}, args...)
	a = append(a, "-d", src, img, fmt.Sprintf("%dM", sizeMiB))
	if out, err := exec.Command("mkfs.ext4", a...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	return img
}

// Debugfs runs debugfs -R cmd on img (-w when write) and returns its
// output; it fails the test when debugfs cannot run.
func Debugfs(t testing.TB, img string, write bool, cmd string) string {
	t.Helper()
	args := []string{"-R", cmd, img}
	if write {
		args = append([]string{"-w"}, args...)
	}
	out, err := exec.Command("debugfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %q: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// DirtyCopy mounts img read-write, lets change modify the mounted tree,
// syncs, and returns a copy of the image taken while it is still mounted:
// needs_recovery set, the changes committed in the journal (root only).
func DirtyCopy(t testing.TB, img string, change func(mnt string) error) string {
	t.Helper()
	RequireRoot(t)
	out := filepath.Join(t.TempDir(), "dirty.img")
	err := withMount(img, false, func(mnt string) error {
		if err := change(mnt); err != nil {
			return err
		}
		if _, err := runTimeout(60e9, "sync", "-f", mnt); err != nil {
			return err
		}
		return copyFile(img, out)
	})
	if err != nil {
		t.Fatalf("testimg: dirty copy of %s: %v", img, err)
	}
	return out
}

// TryMount mounts path read-only with the kernel, through a writable loop
// device when replay (so that a journal needing recovery is replayed, which
// writes to the file), and returns the mount point, unmounted in t.Cleanup,
// or the error of a mount the kernel refused.
func TryMount(t testing.TB, path string, replay bool) (string, error) {
	t.Helper()
	RequireRoot(t)
	mnt, err := os.MkdirTemp("", "chestfs-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	release, err := attachMountOpts(path, mnt, !replay, "ro")
	if err != nil {
		os.Remove(mnt)
		return "", err
	}
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("testimg: unmount %s: %v", mnt, err)
		} else {
			os.Remove(mnt)
		}
	})
	return mnt, nil
}

// PatchFile overwrites bytes of the file at off.
func PatchFile(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// CopyFile copies src to a new file in t.TempDir() and returns its path.
func CopyFile(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := copyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}
