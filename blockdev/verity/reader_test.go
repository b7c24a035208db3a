package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
)

func TestSuperblockLayout(t *testing.T) {
	if n := binary.Size(Superblock{}); n != SuperblockSize {
		t.Fatalf("Superblock is %d bytes, want %d", n, SuperblockSize)
	}
}

// TestVeritysetupSuperblock decodes a superblock veritysetup wrote, encodes
// it back byte for byte, and dumps it as veritysetup did.
func TestVeritysetupSuperblock(t *testing.T) {
	raw := readFileT(t, "testdata/veritysetup-sb.bin")
	p, err := DecodeSuperblock(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Algorithm != "sha256" || p.HashType != 1 || p.DataBlocks != 300 || p.DataBlockSize != 4096 || p.HashBlockSize != 4096 ||
		UUIDString(p.UUID) != "2e77db18-dc5a-4c03-91ca-336662031bcd" ||
		hex.EncodeToString(p.Salt) != "eb573064b46b209d44d0fcb6affe1433eb394c99fba012093940b332601afda2" {
		t.Fatalf("decoded %+v", p)
	}
	enc, err := p.Encode()
	if err != nil || !bytes.Equal(enc, raw) {
		t.Fatalf("re-encoded superblock differs (%v) at %d", err, firstDiff(enc, raw))
	}
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	info.WriteText(&got, "hash")
	if want := string(readFileT(t, "testdata/veritysetup-sb.dump")); got.String() != want {
		t.Fatalf("dump:\n%s\nveritysetup:\n%s", got.String(), want)
	}
	js, err := json.Marshal(info)
	if err != nil || !strings.Contains(string(js), `"hash_algorithm":"sha256"`) || !strings.Contains(string(js), `"hash_blocks":4`) {
		t.Fatalf("JSON %s, %v", js, err)
	}
	u, err := ParseUUID(UUIDString(p.UUID))
	if err != nil || u != p.UUID {
		t.Fatalf("ParseUUID round trip: %v %x", err, u)
	}
}

// TestVeritysetupFixture opens a tree veritysetup made (sha512, 512-byte
// blocks, two levels), committed so that it runs without veritysetup.
func TestVeritysetupFixture(t *testing.T) {
	data := readFileT(t, "testdata/small.data")
	hash := blockdev.Bytes(readFileT(t, "testdata/small.hash"))
	root, err := hex.DecodeString(strings.TrimSpace(string(readFileT(t, "testdata/small.root"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(blockdev.Bytes(data), hash, 0, root, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	r, err := Open(blockdev.Bytes(data), hash, 0, root, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := readAll(t, r, 1536); !bytes.Equal(got, data) {
		t.Fatal("verified read differs from the data")
	}
	p := r.Params()
	d, h, _, ours := newTree(t, bytes.Clone(data), FormatOptions{Algorithm: "sha512", DataBlockSize: 512, HashBlockSize: 512, Salt: p.Salt, UUID: p.UUID})
	if !bytes.Equal(ours, root) || !bytes.Equal(h.b, hash) || d.Size() != int64(len(data)) {
		t.Fatalf("our tree over the fixture differs: root %x, want %x; first difference at %d", ours, root, firstDiff(h.b, hash))
	}
}

// TestLayoutTiB lays out the tree of a 1 TiB image: 2^28 data blocks, so
// levels of 2^21, 2^14, 2^7 and 1 hash blocks after the superblock's block.
func TestLayoutTiB(t *testing.T) {
	o := FormatOptions{DataBlocks: 1 << 28, HashOffset: AppendedHashOffset(1<<40, 4096)}
	p, err := o.Params(-1)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := p.Layout()
	want := Layout{Levels: 4, TreeOffset: 1<<40 + 4096, TreeBlocks: 1<<21 + 1<<14 + 1<<7 + 1}
	want.HashDeviceSize = want.TreeOffset + int64(want.TreeBlocks)*4096
	if err != nil || lay != want {
		t.Fatalf("layout %+v, %v; want %+v", lay, err, want)
	}
	g, _ := newGeometry(p)
	c := newBlockCache(g, 16<<20)
	if c.pinFrom != 2 || c.max != 4096 {
		t.Fatalf("a 1 TiB tree pins levels from %d (want 2: 129 blocks) and caches %d more blocks (want 4096)", c.pinFrom, c.max)
	}
}

func TestAppendedLayout(t *testing.T) {
	data := randomBytes(1, 1000*4096+123)
	off := AppendedHashOffset(int64(len(data)), 4096)
	if off != 1001*4096 {
		t.Fatalf("AppendedHashOffset = %d", off)
	}
	// The image is padded with zeros to the hash offset, as pack does.
	f := &memFile{b: append(bytes.Clone(data), make([]byte, off-int64(len(data)))...)}
	p, root, err := Format(f, f, FormatOptions{DataBlocks: uint64(off / 4096), HashOffset: off})
	if err != nil {
		t.Fatal(err)
	}
	lay, err := p.Layout()
	if err != nil {
		t.Fatal(err)
	}
	// 1001 blocks: 8 level-0 blocks and the top, after the superblock's block.
	if lay.HashDeviceSize != f.Size() || lay.TreeBlocks != 9 || lay.TreeOffset != off+4096 {
		t.Fatalf("layout %+v, file of %d bytes", lay, f.Size())
	}
	r, err := Open(f, f, off, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data), make([]byte, off-int64(len(data)))...)
	if got := readAll(t, r, 1<<20); !bytes.Equal(got, want) {
		t.Fatal("verified read of an appended tree differs")
	}
}

// tamperTree is 12288 blocks of 512 bytes with 16 sha256 digests per hash
// block: levels of 768, 48, 3 and 1 blocks, each with a middle block that
// lies on the path of neither the first nor the last data block.
func tamperTree(t *testing.T) ([]byte, *memFile, *memFile, *Params, []byte) {
	data := randomBytes(7, 12288*512)
	d, h, p, root := newTree(t, bytes.Clone(data), FormatOptions{DataBlockSize: 512, HashBlockSize: 512})
	return data, d, h, p, root
}

// quiet discards the warnings of tests that expect them.
var quiet = &Options{Logger: slog.New(slog.DiscardHandler)}

func wantEIO(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrMismatch) {
		t.Fatalf("error %v: want EIO and ErrMismatch", err)
	}
}

func TestTamperedDataBlock(t *testing.T) {
	data, d, h, _, root := tamperTree(t)
	const bad = 4000
	d.b[bad*512+77] ^= 1
	var log bytes.Buffer
	r, err := Open(d, h, 0, root, &Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xAA}, 512)
	n, err := r.ReadAt(buf, bad*512)
	wantEIO(t, err)
	if n != 0 || !bytes.Equal(buf, make([]byte, 512)) {
		t.Fatalf("read of the bad block returned %d bytes, buffer not zeroed", n)
	}
	// A read spanning it returns the good blocks before it, unaligned too.
	buf = bytes.Repeat([]byte{0xAA}, 10*512)
	off := int64(bad-6)*512 + 100
	n, err = r.ReadAt(buf, off)
	wantEIO(t, err)
	if n != bad*512-int(off) || !bytes.Equal(buf[:n], data[off:off+int64(n)]) || !bytes.Equal(buf[n:], make([]byte, len(buf)-n)) {
		t.Fatalf("spanning read: n=%d, want %d good bytes and zeros after", n, bad*512-int(off))
	}
	for _, b := range []int64{bad - 1, bad + 1, 0, 12287} {
		if n, err := r.ReadAt(buf[:512], b*512); err != nil || n != 512 || !bytes.Equal(buf[:512], data[b*512:(b+1)*512]) {
			t.Fatalf("block %d beside the bad one: %d, %v", b, n, err)
		}
	}
	if lines := strings.Split(strings.TrimSpace(log.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "data_block=4000") {
		t.Fatalf("want one warning naming data block 4000 for two bad reads, got:\n%s", log.String())
	}
	var me *MismatchError
	if err := Verify(d, h, 0, root, nil); !errors.As(err, &me) || me.Level != -1 || me.Block != bad {
		t.Fatalf("Verify: %v, want data block %d", err, bad)
	}
}

func TestTamperedHashBlocks(t *testing.T) {
	data, d, h0, p, root := tamperTree(t)
	g, err := newGeometry(p)
	if err != nil {
		t.Fatal(err)
	}
	mid := []uint64{400, 20, 1}
	for level := 0; level < g.levels; level++ {
		h := &memFile{b: bytes.Clone(h0.b)}
		idx := uint64(0)
		if level < len(mid) {
			idx = mid[level]
		}
		h.b[g.hashOffset(level, idx)+3*32+5] ^= 0x80 // the fourth child's digest
		r, err := Open(d, h, 0, root, quiet)
		if level == g.levels-1 {
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "root hash") {
				t.Fatalf("top level tampered: Open: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("level %d tampered: Open: %v", level, err)
		}
		span := int64(1) << (g.bits * uint(level+1)) // data blocks under one block of this level
		inside, outside := int64(idx)*span+span/2, int64(idx+1)*span+1
		buf := make([]byte, 512)
		_, err = r.ReadAt(buf, inside*512)
		wantEIO(t, err)
		if n, err := r.ReadAt(buf, outside*512); err != nil || n != 512 || !bytes.Equal(buf, data[outside*512:(outside+1)*512]) {
			t.Fatalf("level %d: block %d outside the tampered hash block: %v", level, outside, err)
		}
		if err := Verify(d, h, 0, root, nil); !errors.Is(err, ErrMismatch) {
			t.Fatalf("level %d: Verify: %v", level, err)
		}
	}
}

func TestTamperedPadding(t *testing.T) {
	// sha1 digests are padded from 20 to 32 bytes.
	data := randomBytes(3, 300*4096)
	d, h, p, root := newTree(t, data, FormatOptions{Algorithm: "sha1"})
	g, _ := newGeometry(p)
	h.b[g.hashOffset(0, 1)+25] = 1
	if err := Verify(d, h, 0, root, nil); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "padding") {
		t.Fatalf("Verify: %v", err)
	}
	r, err := Open(d, h, 0, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadAt(make([]byte, 4096), 4096*130)
	wantEIO(t, err)
}

// patchSB rewrites the superblock of a copy of h.
func patchSB(h *memFile, patch func(sb *Superblock)) *memFile {
	var sb Superblock
	binary.Read(bytes.NewReader(h.b), binary.LittleEndian, &sb)
	patch(&sb)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, &sb)
	return &memFile{b: append(buf.Bytes(), h.b[SuperblockSize:]...)}
}

func TestOpenRefuses(t *testing.T) {
	data := randomBytes(5, 300*4096)
	d, h, p, root := newTree(t, data, FormatOptions{})
	other := randomBytes(6, 300*4096)
	noSB := &memFile{}
	pNoSB := *p
	pNoSB.NoSuperblock = true
	rootNoSB, err := FormatParams(d, noSB, &pNoSB)
	if err != nil {
		t.Fatal(err)
	}
	wrongSalt := pNoSB
	wrongSalt.Salt = bytes.Clone(p.Salt)
	wrongSalt.Salt[0] ^= 1
	cases := []struct {
		name     string
		data     blockdev.Source
		hash     blockdev.Source
		root     []byte
		opts     *Options
		want     error
		contains string
	}{
		{"wrong root", d, h, randomBytes(9, 32), nil, ErrMismatch, "does not match the root hash"},
		{"root of wrong length", d, h, root[:31], nil, ErrFormat, "root hash of 31 bytes, sha256 needs 32"},
		{"truncated tree", d, &memFile{b: h.b[:len(h.b)-4096]}, root, nil, ErrFormat, "truncated"},
		{"truncated superblock", d, &memFile{b: h.b[:100]}, root, nil, ErrFormat, "no verity superblock"},
		{"wrong salt in superblock", d, patchSB(h, func(sb *Superblock) { sb.Salt[3] ^= 1 }), root, nil, ErrMismatch, "root hash"},
		{"wrong salt given", d, noSB, rootNoSB, &Options{Params: &wrongSalt}, ErrMismatch, "root hash"},
		{"smaller image", &memFile{b: data[:299*4096]}, h, root, nil, ErrFormat, "another image"},
		{"another image", &memFile{b: other}, h, root, nil, ErrMismatch, "another image"},
		{"unknown algorithm", d, patchSB(h, func(sb *Superblock) { copy(sb.Algorithm[:], "whirlpool\x00") }), root, nil, ErrUnsupported, `"whirlpool"`},
		{"bad block size", d, patchSB(h, func(sb *Superblock) { sb.DataBlockSize = 3000 }), root, nil, ErrFormat, "block size 3000"},
		{"not a superblock", d, patchSB(h, func(sb *Superblock) { sb.Signature[0] = 'X' }), root, nil, ErrFormat, "no verity superblock"},
		{"version 2", d, patchSB(h, func(sb *Superblock) { sb.Version = 2 }), root, nil, ErrUnsupported, "version 2"},
		{"hash type 2", d, patchSB(h, func(sb *Superblock) { sb.HashType = 2 }), root, nil, ErrUnsupported, "hash type 2"},
		{"salt size", d, patchSB(h, func(sb *Superblock) { sb.SaltSize = 300 }), root, nil, ErrFormat, "salt size 300"},
		{"no data blocks", d, patchSB(h, func(sb *Superblock) { sb.DataBlocks = 0 }), root, nil, ErrFormat, "no data blocks"},
	}
	for _, c := range cases {
		_, err := Open(c.data, c.hash, 0, c.root, c.opts)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.contains) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Open: %v; want %v containing %q, one line", c.name, err, c.want, c.contains)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if _, err := Open(d, noSB, 0, rootNoSB, &Options{Params: &pNoSB}); err != nil {
		t.Fatalf("tree without superblock: %v", err)
	}
}

func TestFormatRefuses(t *testing.T) {
	d := &memFile{b: make([]byte, 8192)}
	cases := []struct {
		o        FormatOptions
		contains string
	}{
		{FormatOptions{Algorithm: "md5"}, `hash algorithm "md5"`},
		{FormatOptions{DataBlockSize: 1000}, "data block size 1000"},
		{FormatOptions{HashBlockSize: 1 << 20}, "hash block size 1048576"},
		{FormatOptions{HashOffset: 100}, "not a multiple of 512"},
		{FormatOptions{Salt: make([]byte, 257)}, "salt of 257 bytes"},
		{FormatOptions{DataBlocks: 3}, "read data blocks 0-2"},
	}
	for _, c := range cases {
		_, _, err := Format(d, &memFile{}, c.o)
		if err == nil || !strings.Contains(err.Error(), c.contains) {
			t.Errorf("Format(%+v): %v, want %q", c.o, err, c.contains)
		}
	}
}

func TestReaderRandomReads(t *testing.T) {
	data := randomBytes(11, 2000*4096)
	d, h, _, root := newTree(t, data, FormatOptions{})
	r, err := Open(d, h, 0, root, &Options{CacheBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 200 {
				off := rng.Int64N(int64(len(data)))
				buf := make([]byte, rng.IntN(300000))
				n, err := r.ReadAt(buf, off)
				want := data[off:min(off+int64(len(buf)), int64(len(data)))]
				if (err != nil && !(err == io.EOF && n < len(buf))) || !bytes.Equal(buf[:n], want) {
					t.Errorf("ReadAt(%d, %d) = %d, %v", len(buf), off, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, err := r.ReadAt(make([]byte, 1), int64(len(data))); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	pinned, lru := r.cache.len()
	if pinned != 1 || lru > r.cache.max || r.cache.max != 8 {
		t.Fatalf("cache holds %d pinned and %d LRU blocks (capacity %d)", pinned, lru, r.cache.max)
	}
}

// recorder counts reads of a source and keeps the last run end.
type recorder struct {
	blockdev.Source
	mu    sync.Mutex
	reads int
	end   int64
}

func (s *recorder) ReadAt(p []byte, off int64) (int, error) { return s.ReadAtRun(p, off, -1) }

func (s *recorder) ReadAtRun(p []byte, off, end int64) (int, error) {
	s.mu.Lock()
	s.reads++
	s.end = end
	s.mu.Unlock()
	return s.Source.ReadAt(p, off)
}

func TestReaderOneSourceReadPerRead(t *testing.T) {
	data := randomBytes(12, 1000*4096)
	d, h, _, root := newTree(t, data, FormatOptions{})
	rec := &recorder{Source: d}
	r, err := Open(rec, h, 0, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.reads = 0
	buf := make([]byte, 1<<20)
	if _, err := r.ReadAtRun(buf[:1<<20-5000], 4096*10+1000, 900*4096); err != nil {
		t.Fatal(err)
	}
	if rec.reads != 1 || rec.end != 900*4096 {
		t.Fatalf("%d reads of the data source, end %d; want 1 read with end %d", rec.reads, rec.end, 900*4096)
	}
	if _, err := r.ReadAt(buf, 0); err != nil || rec.reads != 2 || rec.end != 0 {
		t.Fatalf("plain ReadAt: %v, %d reads, end %d", err, rec.reads, rec.end)
	}
	if !bytes.Equal(buf, data[:1<<20]) {
		t.Fatal("data differs")
	}
}

// TestFormatFile writes a tree with the data's own size and checks the
// result with Verify through files, as the CLI will.
func TestFormatFile(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(13, 77*4096+10)
	path := writeFile(t, dir, "img", data)
	hashPath := writeFile(t, dir, "img.hash", nil)
	p, root := formatFile(t, path, hashPath, FormatOptions{})
	if p.DataBlocks != 77 || len(p.Salt) != 32 || p.UUID[6]>>4 != 4 {
		t.Fatalf("params %+v", p)
	}
	f, _ := os.Open(path)
	defer f.Close()
	hf, _ := os.Open(hashPath)
	defer hf.Close()
	if err := Verify(f, hf, 0, root, nil); err != nil {
		t.Fatal(err)
	}
}

func TestFormatAppended(t *testing.T) {
	data := randomBytes(23, 1000*4096+123)
	f := &memFile{b: bytes.Clone(data)}
	p, root, err := FormatAppended(f, int64(len(data)), FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size, err := AppendedSize(int64(len(data)), FormatOptions{})
	if err != nil || size != f.Size() {
		t.Fatalf("AppendedSize %d (%v), file of %d bytes", size, err, f.Size())
	}
	r, err := Open(f, f, p.HashOffset, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, 1<<20); !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], make([]byte, len(got)-len(data))) {
		t.Fatal("verified read of FormatAppended's image differs from the zero-padded data")
	}
	if _, _, err := FormatAppended(f, int64(len(data)), FormatOptions{DataBlocks: 5}); err == nil || !strings.Contains(err.Error(), "appended") {
		t.Fatalf("inconsistent data blocks: %v", err)
	}
}
