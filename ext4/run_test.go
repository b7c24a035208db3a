package ext4_test

import (
	"os"
	"sync"
	"testing"

	"github.com/chestfs/chestfs/ext4"
)

// runDevice records the reads that say where their stretch ends.
type runDevice struct {
	*os.File
	mu   sync.Mutex
	runs [][3]int64 // off, len, end
}

func (d *runDevice) ReadAtRun(p []byte, off, end int64) (int, error) {
	d.mu.Lock()
	d.runs = append(d.runs, [3]int64{off, int64(len(p)), end})
	d.mu.Unlock()
	return d.ReadAt(p, off)
}

// File data reads tell the device where the extent they read from ends, so
// that a remote source's readahead can stop at the end of the file.
func TestDataReadsCarryExtentEnd(t *testing.T) {
	fh, size := imageFile(t, variant(t, "default4k"))
	dev := &runDevice{File: fh}
	f, err := ext4.Open(dev, size)
	if err != nil {
		t.Fatal(err)
	}
	ino := lookupPath(t, f, "bigfile") // 1 MiB
	dev.runs = nil
	buf := make([]byte, 64<<10)
	if _, err := f.ReadAt(ino, buf, 0); err != nil {
		t.Fatal(err)
	}
	if len(dev.runs) == 0 {
		t.Fatal("a file read passed no extent end to the device")
	}
	for _, r := range dev.runs {
		off, n, end := r[0], r[1], r[2]
		// The extent holds the read and, for a 1 MiB file, not much more.
		if end < off+n || end > off+(1<<20) {
			t.Errorf("read [%d,+%d) says its extent ends at %d", off, n, end)
		}
	}
}
