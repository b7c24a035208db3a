package diskcache

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/verity"
)

// With the cache below the verity check (blob -> diskcache -> verity), a
// forged entry that passes the cache's own CRC (someone with write access
// to the directory recomputed it) is still caught: cached blocks are
// verified like network bytes.
func TestVerityCatchesForgedEntry(t *testing.T) {
	const dataSize = 3 << 20
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data(21, dataSize)); err != nil {
		t.Fatal(err)
	}
	p, root, err := verity.FormatAppended(f, dataSize, verity.FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	open := func() (*Source, io.ReaderAt) {
		_, s := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
		data, err := blockdev.NewSection(s, 0, dataSize)
		if err != nil {
			t.Fatal(err)
		}
		v, err := verity.Open(data, s, p.HashOffset, root, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, v
	}
	_, v := open()
	buf := make([]byte, dataSize)
	if _, err := v.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, img[:dataSize]) {
		t.Fatalf("verified read through the cache: %v", err)
	}
	// Forge chunk 1 with a valid CRC.
	s, v := open()
	forged := make([]byte, 1<<20)
	copy(forged, img[1<<20:2<<20])
	forged[5000] ^= 0xff
	s.store(1, append(make([]byte, 0, len(forged)+trailerLen), forged...))
	if _, err := v.ReadAt(buf[:4096], 1<<20+4096); !errors.Is(err, verity.ErrMismatch) {
		t.Fatalf("forged cached block read: %v, want a verity mismatch", err)
	}
	if st := s.Stats(); st.Hits == 0 || st.Corrupt != 0 {
		t.Fatalf("the forged entry did not come from the cache: %+v", st)
	}
}
