package verity

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestLocateAppended finds trees appended to their image, by Format and by
// veritysetup, for several sizes, algorithms and block sizes, and refuses
// an image without one.
func TestLocateAppended(t *testing.T) {
	for _, tc := range []struct {
		blocks int
		alg    string
		bs     uint32
	}{{1, "sha256", 4096}, {2, "sha256", 4096}, {129, "sha256", 4096}, {5000, "sha256", 4096},
		{5000, "sha512", 4096}, {777, "sha256", 512}, {16385, "sha1", 4096}} {
		data := randomBytes(uint64(tc.blocks), tc.blocks*int(tc.bs))
		f := &memFile{b: bytes.Clone(data)}
		off := AppendedHashOffset(int64(len(data)), tc.bs)
		p, root, err := Format(f, f, FormatOptions{Algorithm: tc.alg, DataBlockSize: tc.bs, HashBlockSize: tc.bs,
			HashOffset: off, DataBlocks: uint64(tc.blocks)})
		if err != nil {
			t.Fatal(err)
		}
		for _, ds := range []int{len(root), 0} {
			got, err := LocateAppended(f, f.Size(), ds)
			if err != nil || got != off {
				t.Errorf("%+v digest %d: located %d, %v; want %d", tc, ds, got, err, off)
			}
		}
		if r, err := Open(f, f, off, root, nil); err != nil || r.Params().DataBlocks != p.DataBlocks {
			t.Errorf("%+v: open at the located offset: %v", tc, err)
		}
	}
	plain := &memFile{b: randomBytes(9, 1<<20)}
	if _, err := LocateAppended(plain, plain.Size(), 32); err == nil {
		t.Error("an image without a tree: located one")
	}
}

// TestLocateVeritysetupAppended: veritysetup format with --hash-offset on
// the image itself makes the layout LocateAppended looks for.
func TestLocateVeritysetupAppended(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	data := randomBytes(3, 3000*4096)
	path := writeFile(t, dir, "img", data)
	off := int64(len(data))
	out := veritysetup(t, "format", "--hash-offset="+strconv.FormatInt(off, 10), "--data-blocks=3000", path, path)
	root := rootFrom(t, out)
	img, err := os.Open(filepath.Join(dir, "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	st, _ := img.Stat()
	got, err := LocateAppended(img, st.Size(), len(root))
	if err != nil || got != off {
		t.Fatalf("located %d, %v; want %d", got, err, off)
	}
}
