package diskcache

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
)

// counting is a source that counts the reads that reach it, plain or vector.
type counting struct {
	blockdev.Bytes
	reads, vecs atomic.Int64
}

func (c *counting) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return c.Bytes.ReadAt(p, off)
}

func (c *counting) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	c.vecs.Add(1)
	n := 0
	for _, b := range bufs {
		k, err := c.Bytes.ReadAt(b, off+int64(n))
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *counting) total() int64 { return c.reads.Load() + c.vecs.Load() }

func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wrap(t *testing.T, dir string, max int64, src blockdev.Source, etag string) (*Cache, *Source) {
	t.Helper()
	c, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Wrap(src, "https://acct.blob.core.windows.net/c/img", etag)
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

func readCheck(t *testing.T, s io.ReaderAt, want []byte, off int64, n int) {
	t.Helper()
	p := make([]byte, n)
	k, err := s.ReadAt(p, off)
	end := min(off+int64(n), int64(len(want)))
	if int64(k) != end-off || (err != nil && err != io.EOF) {
		t.Fatalf("read %d at %d: %d, %v", n, off, k, err)
	}
	if !bytes.Equal(p[:k], want[off:end]) {
		t.Fatalf("read %d at %d: wrong bytes", n, off)
	}
}

// A restarted cache (a new Open of the same directory, a new source) reads
// what was read before with no request to the source.
func TestRestartReadsNothing(t *testing.T) {
	dir := t.TempDir()
	img := data(1, 5<<20+1234)
	src := &counting{Bytes: img}
	_, s := wrap(t, dir, 64<<20, src, "0x1")
	ranges := [][2]int64{{0, 4096}, {1<<20 - 10, 20}, {3 << 20, 2 << 20}, {5 << 20, 1234}}
	for _, r := range ranges {
		readCheck(t, s, img, r[0], int(r[1]))
	}
	if src.total() == 0 || s.Stats().Misses != 5 {
		t.Fatalf("cold reads: %d source reads, stats %+v; want 5 chunks fetched", src.total(), s.Stats())
	}
	src2 := &counting{Bytes: img}
	_, s2 := wrap(t, dir, 64<<20, src2, "0x1")
	for _, r := range ranges {
		readCheck(t, s2, img, r[0], int(r[1]))
	}
	if n := src2.total(); n != 0 {
		t.Fatalf("restart: %d source reads, want 0", n)
	}
	if st := s2.Stats(); st.Hits != 6 || st.Misses != 0 { // chunk 0 is read twice
		t.Fatalf("restart stats %+v", st)
	}
}

// A new ETag (the blob was overwritten) never serves the old bytes, and the
// old version's entries are removed.
func TestNewETagInvalidates(t *testing.T) {
	dir := t.TempDir()
	old, cur := data(1, 3<<20), data(2, 3<<20)
	c, s := wrap(t, dir, 64<<20, &counting{Bytes: old}, "0x1")
	readCheck(t, s, old, 0, 3<<20)
	src := &counting{Bytes: cur}
	s2, err := c.Wrap(src, "https://acct.blob.core.windows.net/c/img", "0x2")
	if err != nil {
		t.Fatal(err)
	}
	readCheck(t, s2, cur, 0, 3<<20)
	if src.total() == 0 {
		t.Fatal("a new ETag was served from the old entries")
	}
	if used := c.Used(); used != 3*(1<<20+trailerLen) {
		t.Fatalf("used %d after invalidation, want only the new version's 3 chunks", used)
	}
	// A fresh Open sees the same.
	_, s3 := wrap(t, dir, 64<<20, &counting{Bytes: cur}, "0x2")
	readCheck(t, s3, cur, 0, 3<<20)
	if s3.Stats().Misses != 0 {
		t.Fatalf("restart on the new ETag fetched: %+v", s3.Stats())
	}
}

// entryFiles lists the entries (path -> content) under dir.
func entryFiles(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A torn (short), flipped or zeroed entry is detected, dropped and fetched
// again; the read returns the right bytes.
func TestDamagedEntryRefetched(t *testing.T) {
	img := data(3, 2<<20)
	damage := map[string]func(p string) error{
		"torn": func(p string) error { return os.Truncate(p, 1000) },
		"flip": func(p string) error {
			b, _ := os.ReadFile(p)
			b[777] ^= 1
			return os.WriteFile(p, b, 0o600)
		},
		"zeroed": func(p string) error {
			b, _ := os.ReadFile(p)
			return os.WriteFile(p, make([]byte, len(b)), 0o600)
		},
		"longer": func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			f.Write([]byte{0})
			return f.Close()
		},
	}
	for name, hurt := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, s := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
			readCheck(t, s, img, 0, 1<<20)
			files := entryFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d entries, want 1", len(files))
			}
			if err := hurt(files[0]); err != nil {
				t.Fatal(err)
			}
			src := &counting{Bytes: img}
			_, s2 := wrap(t, dir, 64<<20, src, "e")
			readCheck(t, s2, img, 100, 5000)
			if st := s2.Stats(); st.Corrupt != 1 || st.Misses != 1 || src.total() != 1 {
				t.Fatalf("stats %+v, %d source reads; want the damaged entry refetched once", st, src.total())
			}
			// And rewritten: the next restart hits.
			_, s3 := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
			readCheck(t, s3, img, 0, 1<<20)
			if st := s3.Stats(); st.Hits != 1 || st.Corrupt != 0 {
				t.Fatalf("after refetch: %+v", st)
			}
		})
	}
}

// An entry copied over another chunk's (valid CRC of its own, wrong place)
// is rejected: the CRC covers the chunk's index and the source's identity.
func TestMovedEntryRejected(t *testing.T) {
	dir := t.TempDir()
	img := data(4, 2<<20)
	_, s := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
	readCheck(t, s, img, 0, 2<<20)
	d := filepath.Join(dir, s.dir)
	b, err := os.ReadFile(filepath.Join(d, "0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "1"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, s2 := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
	readCheck(t, s2, img, 1<<20, 1<<20)
	if st := s2.Stats(); st.Corrupt != 1 {
		t.Fatalf("moved entry not detected: %+v", st)
	}
}

// The directory never holds more than its bound, across restarts too, and
// the most recently used entries are the ones kept.
func TestBound(t *testing.T) {
	dir := t.TempDir()
	img := data(5, 10<<20)
	const max = 3*(1<<20+trailerLen) + 100
	c, s := wrap(t, dir, max, &counting{Bytes: img}, "e")
	for i := int64(0); i < 10; i++ {
		readCheck(t, s, img, i<<20, 1<<20)
		if c.Used() > max {
			t.Fatalf("used %d > bound %d", c.Used(), max)
		}
	}
	var onDisk int64
	for _, p := range entryFiles(t, dir) {
		fi, _ := os.Stat(p)
		onDisk += fi.Size()
	}
	if onDisk > max || onDisk != c.Used() {
		t.Fatalf("%d bytes on disk, accounted %d, bound %d", onDisk, c.Used(), max)
	}
	if c.Evictions() != 7 {
		t.Fatalf("%d evictions, want 7", c.Evictions())
	}
	// The last three chunks are kept.
	src := &counting{Bytes: img}
	_, s2 := wrap(t, dir, max, src, "e")
	readCheck(t, s2, img, 7<<20, 3<<20)
	if src.total() != 0 {
		t.Fatalf("the 3 most recent chunks were not kept: %d source reads", src.total())
	}
	// A smaller bound at Open trims the directory at once.
	c3, _ := wrap(t, dir, 1<<20+trailerLen, &counting{Bytes: img}, "e")
	if c3.Used() > 1<<20+trailerLen {
		t.Fatalf("reopened with a smaller bound: %d bytes kept", c3.Used())
	}
	if _, err := Open(dir, 1000); err == nil {
		t.Fatal("a bound below one chunk was accepted")
	}
}

// A vector read of several missing chunks is one request to the source,
// and reads of any shape return the source's bytes.
func TestVecAndShapes(t *testing.T) {
	dir := t.TempDir()
	img := data(6, 6<<20+77)
	src := &counting{Bytes: img}
	_, s := wrap(t, dir, 64<<20, src, "e")
	bufs := [][]byte{make([]byte, 1<<20), make([]byte, 1<<20), make([]byte, 1<<20), make([]byte, 1<<20)}
	n, err := s.ReadVecAtContext(context.Background(), bufs, 1<<20)
	if err != nil || n != 4<<20 || !bytes.Equal(bytes.Join(bufs, nil), img[1<<20:5<<20]) {
		t.Fatalf("vec read: %d, %v", n, err)
	}
	if src.vecs.Load() != 1 || src.reads.Load() != 0 {
		t.Fatalf("4 chunks took %d vector and %d plain reads, want 1 vector", src.vecs.Load(), src.reads.Load())
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 200; i++ {
		off := r.Int64N(int64(len(img)) + 10)
		n := r.IntN(3 << 20)
		p := make([]byte, n)
		k, err := s.ReadAt(p, off)
		want := blockdev.Bytes(img)
		q := make([]byte, n)
		wk, werr := want.ReadAt(q, off)
		if k != wk || (err == nil) != (werr == nil) || !bytes.Equal(p[:k], q[:wk]) {
			t.Fatalf("read %d at %d: %d, %v; want %d, %v", n, off, k, err, wk, werr)
		}
	}
	if _, err := s.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("negative offset accepted")
	}
}

// A directory that cannot be written does not fail reads.
func TestUnwritableDirStillReads(t *testing.T) {
	dir := t.TempDir()
	img := data(8, 1<<20)
	_, s := wrap(t, dir, 64<<20, &counting{Bytes: img}, "e")
	// A file where the blob's entry directory was: no entry can be written
	// there, not even by root (a mode would not stop root).
	entries := filepath.Join(dir, s.dir)
	if err := os.RemoveAll(entries); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entries, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readCheck(t, s, img, 0, 1<<20)
	if s.Stats().WriteErrors != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

// A source error is passed on and nothing is stored.
func TestSourceErrorNotCached(t *testing.T) {
	dir := t.TempDir()
	c, s := wrap(t, dir, 64<<20, failing{}, "e")
	if _, err := s.ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatal("no error from a failing source")
	}
	if c.Used() != 0 {
		t.Fatalf("%d bytes stored from a failed read", c.Used())
	}
}

type failing struct{}

func (failing) ReadAt(p []byte, off int64) (int, error) { return 0, io.ErrUnexpectedEOF }
func (failing) Size() int64                             { return 4 << 20 }
