package testimg

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// TestBuildMount builds the default image and checks the kernel sees the
// populated content through a read-only mount.
func TestBuildMount(t *testing.T) {
	RequireRoot(t)
	v, _ := Lookup("default1k")
	img := Build(t, v)
	mnt := img.Mount(t)
	b, err := os.ReadFile(filepath.Join(mnt, "tiny"))
	if err != nil || string(b) != "hello\n" {
		t.Fatalf("tiny: %q %v", b, err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, LargeDirPath))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != v.LargeDir+1+LargeDirExtra {
		t.Fatalf("big dir has %d entries, want %d", len(ents), v.LargeDir+1+LargeDirExtra)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "dev/bignum"), &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Rdev) != 300 || unix.Minor(st.Rdev) != 70000 {
		t.Fatalf("rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if err := os.WriteFile(filepath.Join(mnt, "x"), nil, 0o644); err == nil {
		t.Fatal("read-only mount accepted a write")
	}
	// Building again returns the cached image.
	if img2 := Build(t, v); img2.Path != img.Path {
		t.Fatalf("not cached: %s vs %s", img2.Path, img.Path)
	}
}

// TestAllVariantsBuild builds every standard variant.
func TestAllVariantsBuild(t *testing.T) {
	RequireTools(t)
	for _, v := range Variants() {
		t.Run(v.Name, func(t *testing.T) {
			img := Build(t, v)
			st, err := os.Stat(img.Path)
			if err != nil || st.Size() != int64(v.size())<<20 {
				t.Fatalf("image %s: %v %v", img.Path, st, err)
			}
		})
	}
}
