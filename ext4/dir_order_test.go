package ext4_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// TestReadDirOrderKernel: a listing comes in the order the kernel's
// getdents gives it, not only with the same names. With dir_index the
// kernel lists a single-block directory in hash order too (is_dx_dir), so
// `ls -f`, find and tar see the same sequence on both mounts; without
// dir_index it is the order on disk.
func TestReadDirOrderKernel(t *testing.T) {
	for _, opts := range []string{"metadata_csum", "^metadata_csum", "^dir_index"} {
		t.Run(opts, func(t *testing.T) {
			p := htreeImage(t, opts)
			mnt, err := testimg.TryMount(t, p, false)
			if err != nil {
				t.Fatalf("kernel mount: %v", err)
			}
			f, err := openPath(t, p)
			if err != nil {
				t.Fatal(err)
			}
			// "/" and d/ fit one block; h/ is indexed (with dir_index).
			for _, dir := range []string{".", "d", "h"} {
				k := kernelOrder(t, filepath.Join(mnt, dir))
				ino, err := f.Resolve(dir, ext4.Follow)
				if err != nil {
					t.Fatal(err)
				}
				ents, err := f.ReadDir(ino)
				if err != nil {
					t.Fatalf("readdir %s: %v", dir, err)
				}
				var c []string
				for _, e := range ents {
					c = append(c, e.Name)
				}
				if !slices.Equal(c, k) {
					t.Errorf("%s: order differs from the kernel's\n chestfs %q\n kernel  %q", dir, c, k)
				}
			}
		})
	}
}

// kernelOrder is getdents' order of dir, without "." and "..".
func kernelOrder(t *testing.T, dir string) []string {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1) // as the kernel gives them, unsorted
	if err != nil {
		t.Fatal(err)
	}
	return names
}
