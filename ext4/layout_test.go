package ext4_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// The ranges a mount prefetches cover every directory block debugfs lists
// (a large htree directory included) and the inode records of every file,
// and no data block of a regular file.
func TestMetadataRanges(t *testing.T) {
	src := t.TempDir()
	dirs := []string{"", "a", "a/b", "a/b/c", "many"}
	for _, d := range dirs[1:] {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1500 {
		os.WriteFile(filepath.Join(src, "many", fmt.Sprintf("entry-%05d-with-a-long-name", i)), nil, 0o644)
	}
	os.WriteFile(filepath.Join(src, "a/b/c/file"), make([]byte, 200<<10), 0o644)
	img := testimg.Mkfs(t, src, 64)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := ext4.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	bs := int64(fsys.BlockSize())
	in := func(rs [][2]int64, off int64) bool {
		for _, r := range rs {
			if off >= r[0] && off < r[0]+r[1] {
				return true
			}
		}
		return false
	}
	// debugfs's answer without its banner line.
	dbg := func(cmd string) string {
		var keep []string
		for _, l := range strings.Split(testimg.Debugfs(t, img, false, cmd), "\n") {
			if !strings.HasPrefix(l, "debugfs ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	blocks := func(path string) []int64 {
		var out []int64
		for _, w := range strings.Fields(dbg("blocks /" + path)) {
			n, err := strconv.ParseInt(w, 10, 64)
			if err != nil {
				t.Fatalf("debugfs blocks %s: %q", path, w)
			}
			out = append(out, n)
		}
		return out
	}
	dr, err := fsys.DirectoryRanges(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		bl := blocks(d)
		if len(bl) == 0 {
			t.Fatalf("debugfs lists no blocks for /%s", d)
		}
		for _, b := range bl {
			if !in(dr, b*bs) {
				t.Errorf("directory /%s: block %d not in DirectoryRanges %v", d, b, dr)
			}
		}
	}
	for _, b := range blocks("a/b/c/file") {
		if in(dr, b*bs) {
			t.Errorf("file data block %d in DirectoryRanges", b)
		}
	}
	it := fsys.InodeTableRanges()
	for _, name := range []string{"a/b/c/file", "many/entry-01499-with-a-long-name"} {
		out := testimg.Debugfs(t, img, false, "imap /"+name)
		var blk, off int64
		var ino int64
		if i := strings.Index(out, "Inode "); i >= 0 {
			fmt.Sscanf(out[i:], "Inode %d", &ino)
		}
		if i := strings.Index(out, "located at block "); i >= 0 {
			fmt.Sscanf(out[i:], "located at block %d, offset 0x%x", &blk, &off)
		}
		if blk == 0 || !in(it, blk*bs+off) {
			t.Errorf("%s (inode %d, %q): record not in InodeTableRanges %v", name, ino, out, it)
		}
	}
	// A small limit stops the scan early rather than failing it.
	if small, err := fsys.DirectoryRanges(bs); err != nil || len(small) == 0 || len(small) > len(dr) {
		t.Errorf("DirectoryRanges(one block): %v, %v", small, err)
	}
}

// readLog is a device that records the offsets read.
type readLog struct {
	io.ReaderAt
	mu   sync.Mutex
	offs []int64
}

func (r *readLog) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.offs = append(r.offs, off)
	r.mu.Unlock()
	return r.ReaderAt.ReadAt(p, off)
}

// TestDirectoryRangesFetch: directories whose extent trees have an index
// level (the kernel wrote two directories' blocks interleaved) hand their
// index blocks to fetch before anything reads them, so the walk that
// follows reads only blocks fetch was given, and the ranges are those of
// DirectoryRanges.
func TestDirectoryRangesFetch(t *testing.T) {
	img := testimg.Mkfs(t, t.TempDir(), 32, "-b", "1024")
	testimg.DirtyCopy(t, img, func(mnt string) error {
		for _, d := range []string{"a", "b"} {
			if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
				return err
			}
		}
		for i := range 1500 {
			for _, d := range []string{"a", "b"} {
				if err := os.WriteFile(filepath.Join(mnt, d, fmt.Sprintf("some-fairly-long-file-name-%d", i)), []byte("x"), 0o644); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if ex := testimg.Debugfs(t, img, false, "ex /a"); !strings.Contains(ex, " 0/ 1 ") {
		t.Fatalf("directory a has no index level, the case under test:\n%s", ex)
	}
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	want, err := func() ([][2]int64, error) {
		f, err := ext4.Open(fh, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		return f.DirectoryRanges(1 << 30)
	}()
	if err != nil {
		t.Fatal(err)
	}
	dev := &readLog{ReaderAt: fh}
	f, err := ext4.Open(dev, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var given [][2]int64
	mark := -1
	got, err := f.DirectoryRangesFetch(1<<30, func(idx [][2]int64) {
		given = idx
		dev.mu.Lock()
		mark = len(dev.offs)
		dev.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if mark < 0 || len(given) < 2 {
		t.Fatalf("fetch given %v", given)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ranges differ from DirectoryRanges:\n got %v\nwant %v", got, want)
	}
	if len(dev.offs) == mark {
		t.Fatal("the walk read no index block")
	}
	for _, off := range dev.offs[mark:] {
		in := false
		for _, r := range given {
			in = in || off >= r[0] && off < r[0]+r[1]
		}
		if !in {
			t.Errorf("the walk read %d, outside the index blocks fetch was given (%v)", off, given)
		}
	}
}
