package ext4_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// runRecorder is a device that records the run ends readers pass down.
type runRecorder struct {
	io.ReaderAt
	mu   sync.Mutex
	ends map[int64]int64 // read offset -> run end
}

func (r *runRecorder) ReadAtRun(p []byte, off, end int64) (int, error) {
	r.mu.Lock()
	r.ends[off] = end
	r.mu.Unlock()
	return r.ReadAt(p, off)
}

// TestReadRunSpansContiguousExtents: a file the kernel wrote in extents
// that follow each other on the device (32768 blocks is an extent's
// most) is one run for the readahead below: a read in the second extent
// reports the end of the third, not its own.
func TestReadRunSpansContiguousExtents(t *testing.T) {
	// 1 KiB blocks and no backup superblocks: the 80 MiB file lies in
	// extents of 32768 blocks, back to back.
	img := testimg.Mkfs(t, t.TempDir(), 128, "-b", "1024", "-O", "sparse_super2,^resize_inode", "-E", "num_backup_sb=0")
	data := make([]byte, 80<<20)
	rand.Read(data)
	testimg.DirtyCopy(t, img, func(mnt string) error { return os.WriteFile(filepath.Join(mnt, "f"), data, 0o644) })
	ex := testimg.Debugfs(t, img, false, "ex /f")
	// "0/ 0   2/  3 32768 - 65535  53249 -  86016  32768": logical, physical, length.
	type extent struct{ lstart, pstart, pend int64 }
	var exts []extent
	for _, l := range strings.Split(ex, "\n") {
		var lv, ld, i, n, ls, le, ps, pe, ln int64
		if k, _ := fmt.Sscanf(strings.TrimSpace(l), "%d/ %d %d/ %d %d - %d %d - %d %d", &lv, &ld, &i, &n, &ls, &le, &ps, &pe, &ln); k == 9 {
			exts = append(exts, extent{ls, ps, pe + 1})
		}
	}
	if len(exts) < 3 || exts[1].pend != exts[2].pstart {
		t.Fatalf("the kernel did not lay the file out in contiguous extents, the case under test:\n%s", ex)
	}
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	rec := &runRecorder{ReaderAt: fh, ends: map[int64]int64{}}
	f, err := ext4.Open(rec, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	ino, err := f.Resolve("f", ext4.Follow)
	if err != nil {
		t.Fatal(err)
	}
	off := (exts[1].lstart + 100) << 10
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(ino, buf, off); err != nil {
		t.Fatal(err)
	}
	if string(buf) != string(data[off:off+4096]) {
		t.Fatal("read the wrong bytes")
	}
	dev := (exts[1].pstart + 100) << 10
	got, ok := rec.ends[dev]
	if !ok {
		t.Fatalf("no read at device offset %d: %v", dev, rec.ends)
	}
	if want := exts[2].pend << 10; got < want {
		t.Errorf("run end %d, want at least %d (the third extent's end; the second ends at %d)", got, want, exts[1].pend<<10)
	}
}
