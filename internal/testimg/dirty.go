package testimg

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BuildDirty returns a copy of v's image taken while it was mounted
// read-write, after further changes and a sync: the copy has needs_recovery
// set and committed transactions in its journal, like an image
// snapshotted from a live system. Root only; the file is in t.TempDir().
func BuildDirty(t testing.TB, v Variant) string {
	t.Helper()
	RequireRoot(t)
	img := Build(t, v)
	base := filepath.Join(t.TempDir(), "base.img")
	if err := copyFile(img.Path, base); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dirty.img")
	err := withMount(base, false, func(mnt string) error {
		p := &populator{root: mnt}
		p.mkdir("journaled", 0o755)
		for i := 0; i < 30; i++ {
			p.write(fmt.Sprintf("journaled/file-%02d", i), Pattern(uint32(500+i), 100*i))
		}
		p.check("remove", os.Remove(p.path("medium")))
		p.check("rename", os.Rename(p.path("small100"), p.path("renamed100")))
		p.check("chmod", os.Chmod(p.path("tiny"), 0o600))
		p.check("lchown", os.Lchown(p.path("links/a"), 1234, 5678))
		p.setx("empty", "user.late", []byte("added while mounted"))
		if p.err != nil {
			return p.err
		}
		unix.Sync()
		return copyFile(base, out)
	})
	if err != nil {
		t.Fatalf("testimg: dirty copy of %s: %v", v.Name, err)
	}
	return out
}

// MountReplay mounts an image file read-only through a writable loop
// device, so that the kernel replays a journal that needs recovery (it
// writes to the file). Unmounted in t.Cleanup.
func MountReplay(t testing.TB, path string) string {
	t.Helper()
	RequireRoot(t)
	mnt, err := os.MkdirTemp("", "chestfs-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	release, err := attachMountOpts(path, mnt, false, "ro")
	if err != nil {
		os.Remove(mnt)
		t.Fatalf("testimg: mount %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("testimg: unmount %s: %v", mnt, err)
		} else {
			os.Remove(mnt)
		}
	})
	return mnt
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
