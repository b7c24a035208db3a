package ext4_test

import (
	"bytes"
	"math/rand"
	"sort"
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
