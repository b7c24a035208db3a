package ext4_test

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
)

// TestRandomCorruption flips bytes of the seed images in metadata-dense
// regions (deterministic PRNG) and walks each result: errors are fine,
// panics are not (a panic fails the test binary).
func TestRandomCorruption(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 30
	}
	imgs := seeds(t)
	names := make([]string, 0, len(imgs))
	for k := range imgs {
		names = append(names, k)
	}
	sort.Strings(names)
	rng := rand.New(rand.NewSource(1))
	var slowest time.Duration
	for _, name := range names {
		img := imgs[name]
		// Metadata sits in the first blocks: superblock, descriptors,
		// bitmaps, inode table, directory and extent blocks.
		hot := min(len(img), 64<<10)
		for i := 0; i < n; i++ {
			b := bytes.Clone(img)
			for k := 1 + rng.Intn(8); k > 0; k-- {
				off := rng.Intn(hot)
				if rng.Intn(4) == 0 {
					off = 1024 + rng.Intn(1024) // the superblock
				}
				b[off] ^= byte(1 << rng.Intn(8))
			}
			start := time.Now()
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s mutation %d: panic: %v", name, i, r)
					}
				}()
				f, err := ext4.Open(bytes.NewReader(b), int64(len(b)))
				if err != nil {
					return
				}
				walkAll(f, 300)
				x := f.IOFS()
				x.ReadDir("dir")
				x.ReadFile("medium")
			}()
			slowest = max(slowest, time.Since(start))
		}
	}
	t.Logf("slowest walk of a damaged image: %v", slowest)
}

// recordingReader remembers the ranges of small reads: the metadata blocks
// a walk touches.
type recordingReader struct {
	r    io.ReaderAt
	mu   sync.Mutex
	offs [][2]int64
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) <= 4096 {
		r.mu.Lock()
		r.offs = append(r.offs, [2]int64{off, int64(len(p))})
		r.mu.Unlock()
	}
	return r.r.ReadAt(p, off)
}

// flipReader is an image with some bytes XORed.
type flipReader struct {
	r     io.ReaderAt
	flips map[int64]byte
}

func (r *flipReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	for o, x := range r.flips {
		if o >= off && o < off+int64(n) {
			p[o-off] ^= x
		}
	}
	return n, err
}

// TestRandomMetadataCorruption damages the metadata blocks that a walk of
// each kernel-built image actually reads (inode tables, directory, index,
// extent, xattr blocks), then walks the damaged image: errors are fine,
// panics and hangs are not.
func TestRandomMetadataCorruption(t *testing.T) {
	n := 40
	if testing.Short() {
		n = 10
	}
	if v, err := strconv.Atoi(os.Getenv("EXT4_MUTATIONS")); err == nil {
		n = v // longer local runs
	}
	for _, name := range []string{"default1k", "ext3", "unsigned", "nocsum32", "gdtcsum", "inline", "eainode", "bigalloc", "ext2nofiletype"} {
		t.Run(name, func(t *testing.T) {
			img := variant(t, name)
			fh, err := os.Open(img.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			rec := &recordingReader{r: fh}
			f, err := ext4.Open(rec, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if err := walkAll(f, 400); err != nil {
				t.Fatalf("clean image: %v", err)
			}
			regions := rec.offs
			rng := rand.New(rand.NewSource(int64(len(name))))
			var slowest time.Duration
			for i := 0; i < n; i++ {
				flips := map[int64]byte{}
				for k := 1 + rng.Intn(6); k > 0; k-- {
					reg := regions[rng.Intn(len(regions))]
					flips[reg[0]+rng.Int63n(reg[1])] = byte(1 << rng.Intn(8))
				}
				start := time.Now()
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("mutation %d (%v): panic: %v", i, flips, r)
						}
					}()
					f, err := ext4.Open(&flipReader{r: fh, flips: flips}, st.Size())
					if err != nil {
						return
					}
					walkAll(f, 300)
				}()
				slowest = max(slowest, time.Since(start))
			}
			t.Logf("%d metadata reads recorded; slowest damaged walk %v", len(regions), slowest)
		})
	}
}
