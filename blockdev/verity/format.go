package verity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// FormatOptions choose a new tree's parameters. Zero fields take
// veritysetup's defaults.
type FormatOptions struct {
	Algorithm     string // default sha256
	DataBlockSize uint32 // default 4096
	HashBlockSize uint32 // default 4096
	// DataBlocks is the number of data blocks to cover. 0: the data's size
	// (the data must then have a Size() int64 method) in whole blocks.
	DataBlocks uint64
	Salt       []byte // nil: 32 random bytes, as veritysetup
	NoSalt     bool   // no salt at all (veritysetup --salt=-)
	UUID       [16]byte
	// HashOffset is the byte offset of the superblock (or of the tree, with
	// NoSuperblock) on the hash device. See AppendedHashOffset.
	HashOffset   int64
	NoSuperblock bool
	HashType0    bool // hash type 0, the original Chrome OS format
}

// Params resolves o's defaults for data of dataSize bytes (-1: unknown),
// choosing a random salt and UUID where none is given.
func (o FormatOptions) Params(dataSize int64) (*Params, error) {
	p, err := o.resolve(dataSize)
	return p, prefix(err)
}

func (o FormatOptions) resolve(dataSize int64) (*Params, error) {
	p := o.defaults(dataSize)
	switch {
	case o.NoSalt:
		p.Salt = nil
	case p.Salt == nil:
		p.Salt = make([]byte, 32)
		if _, err := rand.Read(p.Salt); err != nil {
			return nil, fmt.Errorf("salt: %w", err)
		}
	}
	if p.UUID == ([16]byte{}) {
		if _, err := rand.Read(p.UUID[:]); err != nil {
			return nil, fmt.Errorf("uuid: %w", err)
		}
		p.UUID[6] = p.UUID[6]&0x0f | 0x40 // version 4
		p.UUID[8] = p.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	}
	return p, p.check()
}

// defaults fills in veritysetup's defaults, but neither salt nor UUID.
func (o FormatOptions) defaults(dataSize int64) *Params {
	p := &Params{
		HashType:      1,
		Algorithm:     o.Algorithm,
		DataBlockSize: o.DataBlockSize,
		HashBlockSize: o.HashBlockSize,
		DataBlocks:    o.DataBlocks,
		Salt:          o.Salt,
		UUID:          o.UUID,
		HashOffset:    o.HashOffset,
		NoSuperblock:  o.NoSuperblock,
	}
	if o.HashType0 {
		p.HashType = 0
	}
	if p.Algorithm == "" {
		p.Algorithm = "sha256"
	}
	if p.DataBlockSize == 0 {
		p.DataBlockSize = 4096
	}
	if p.HashBlockSize == 0 {
		p.HashBlockSize = 4096
	}
	if p.DataBlocks == 0 && dataSize >= 0 && checkBlockSize("data", p.DataBlockSize) == nil {
		p.DataBlocks = uint64(dataSize) / uint64(p.DataBlockSize)
	}
	return p
}

// appended sets o up for a tree appended to an image of dataSize bytes.
func (o FormatOptions) appended(dataSize int64) (FormatOptions, error) {
	bs := o.DataBlockSize
	if bs == 0 {
		bs = 4096
	}
	if err := checkBlockSize("data", bs); err != nil {
		return o, err
	}
	if dataSize <= 0 {
		return o, fmt.Errorf("image of %d bytes", dataSize)
	}
	off := AppendedHashOffset(dataSize, bs)
	if (o.DataBlocks != 0 && o.DataBlocks != uint64(off)/uint64(bs)) || (o.HashOffset != 0 && o.HashOffset != off) {
		return o, fmt.Errorf("data blocks %d and hash offset %d given for a tree appended to %d bytes (%d blocks of %d bytes at %d)", o.DataBlocks, o.HashOffset, dataSize, off/int64(bs), bs, off)
	}
	o.DataBlocks, o.HashOffset, o.NoSuperblock = uint64(off)/uint64(bs), off, false
	return o, nil
}

// AppendedSize is the size of an image of dataSize bytes with its tree
// appended (as FormatAppended writes it): what pack sizes the file to.
func AppendedSize(dataSize int64, o FormatOptions) (int64, error) {
	o, err := o.appended(dataSize)
	if err != nil {
		return 0, prefix(err)
	}
	g, err := newGeometry(o.defaults(dataSize))
	if err != nil {
		return 0, prefix(err)
	}
	return g.layout().HashDeviceSize, nil
}

// ReadWriterAt is a file that can be read and written at offsets, such as an *os.File.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// FormatAppended appends a tree to the image of dataSize bytes at the start
// of f, as `veritysetup format IMG IMG --data-blocks=B --hash-offset=B*bs`
// does: the image is padded with zeros to whole data blocks, which the tree
// covers, the superblock goes at the padded size and the tree after it.
// o.DataBlocks and o.HashOffset may be left zero.
func FormatAppended(f ReadWriterAt, dataSize int64, o FormatOptions) (*Params, []byte, error) {
	o, err := o.appended(dataSize)
	if err != nil {
		return nil, nil, fmt.Errorf("verity: format: %w", err)
	}
	if pad := o.HashOffset - dataSize; pad > 0 {
		if _, err := f.WriteAt(make([]byte, pad), dataSize); err != nil {
			return nil, nil, fmt.Errorf("verity: format: pad the image to whole blocks: %w", err)
		}
	}
	return Format(f, f, o)
}

type sizer interface{ Size() int64 }

// Format computes the hash tree of data and writes the superblock (unless
// NoSuperblock) and the tree to hash. data and hash may be the same file
// (the tree appended after the data). It returns the tree's parameters and
// its root hash.
func Format(data io.ReaderAt, hash io.WriterAt, o FormatOptions) (*Params, []byte, error) {
	size := int64(-1)
	if s, ok := data.(sizer); ok {
		size = s.Size()
	} else if o.DataBlocks == 0 {
		return nil, nil, errors.New("verity: format: the number of data blocks is needed for data of unknown size")
	}
	p, err := o.resolve(size)
	if err != nil {
		return nil, nil, fmt.Errorf("verity: format: %w", err)
	}
	root, err := FormatParams(data, hash, p)
	if err != nil {
		return nil, nil, err
	}
	return p, root, nil
}

// FormatParams is Format with fully resolved parameters.
func FormatParams(data io.ReaderAt, hash io.WriterAt, p *Params) ([]byte, error) {
	g, err := newGeometry(p)
	if err != nil {
		return nil, fmt.Errorf("verity: format: %w", err)
	}
	w := &treeWriter{g: g, dst: hash, pending: make([][]byte, g.levels), next: make([]uint64, g.levels)}
	root, err := g.build(data, w.put)
	if err == nil {
		err = w.flushAll()
	}
	if err != nil {
		return nil, fmt.Errorf("verity: format: %w", err)
	}
	if !p.NoSuperblock {
		sb, err := p.encode()
		if err != nil {
			return nil, fmt.Errorf("verity: format: %w", err)
		}
		// Zero the rest of the superblock's hash block too: the hash device
		// then has its full size even when the tree is empty (one data block).
		sb = append(sb, make([]byte, g.layout().TreeOffset-p.HashOffset-SuperblockSize)...)
		if _, err := hash.WriteAt(sb, p.HashOffset); err != nil {
			return nil, fmt.Errorf("verity: format: write superblock: %w", err)
		}
	}
	return root, nil
}

// treeWriter batches each level's consecutive hash blocks into one write.
type treeWriter struct {
	g       *geometry
	dst     io.WriterAt
	pending [][]byte // per level, blocks not yet written
	next    []uint64 // per level, index of the first pending block
}

const writeBatch = 64 // hash blocks per write

func (w *treeWriter) put(level int, idx uint64, block []byte) error {
	w.pending[level] = append(w.pending[level], block...)
	if len(w.pending[level]) >= writeBatch*int(w.g.p.HashBlockSize) {
		return w.flush(level)
	}
	return nil
}

func (w *treeWriter) flush(level int) error {
	buf := w.pending[level]
	if len(buf) == 0 {
		return nil
	}
	if _, err := w.dst.WriteAt(buf, w.g.hashOffset(level, w.next[level])); err != nil {
		return fmt.Errorf("write hash level %d: %w", level, err)
	}
	w.next[level] += uint64(len(buf)) / uint64(w.g.p.HashBlockSize)
	w.pending[level] = buf[:0]
	return nil
}

func (w *treeWriter) flushAll() error {
	for l := range w.pending {
		if err := w.flush(l); err != nil {
			return err
		}
	}
	return nil
}

// sinkFunc receives each finished hash block of the tree, in order within
// a level. The block is reused after the call returns.
type sinkFunc func(level int, idx uint64, block []byte) error

// build hashes all data blocks and the tree above them bottom-up, keeping
// one partial hash block per level: memory stays small for any image size.
// It returns the root hash.
func (g *geometry) build(data io.ReaderAt, sink sinkFunc) ([]byte, error) {
	b := &builder{g: g, sink: sink, bufs: make([][]byte, g.levels), fill: make([]uint64, g.levels), idx: make([]uint64, g.levels)}
	for l := range b.bufs {
		b.bufs[l] = make([]byte, g.p.HashBlockSize)
	}
	if err := b.hashData(data); err != nil {
		return nil, err
	}
	for l := 0; l < g.levels; l++ {
		if b.fill[l] > 0 {
			if err := b.finishBlock(l); err != nil {
				return nil, err
			}
		}
		if b.idx[l] != g.levelSize[l] {
			return nil, fmt.Errorf("internal error: level %d has %d blocks, expected %d", l, b.idx[l], g.levelSize[l])
		}
	}
	return b.root, nil
}

type builder struct {
	g    *geometry
	sink sinkFunc
	bufs [][]byte // per level, the hash block being filled
	fill []uint64 // per level, digests in bufs[l]
	idx  []uint64 // per level, index of bufs[l] within the level
	root []byte
}

// add appends a digest of a block of the level below to level l.
func (b *builder) add(l int, digest []byte) error {
	if l == b.g.levels {
		b.root = append([]byte{}, digest...)
		return nil
	}
	copy(b.bufs[l][int(b.fill[l])*b.g.entrySize:], digest)
	b.fill[l]++
	if b.fill[l] == b.g.perBlock() {
		return b.finishBlock(l)
	}
	return nil
}

func (b *builder) finishBlock(l int) error {
	block := b.bufs[l]
	if err := b.sink(l, b.idx[l], block); err != nil {
		return err
	}
	var d [64]byte
	if err := b.add(l+1, b.g.sum(d[:0], block)); err != nil {
		return err
	}
	clear(block)
	b.fill[l] = 0
	b.idx[l]++
	return nil
}

// formatChunk is how many data bytes Format reads and hashes at a time.
const formatChunk = 1 << 20

// hashData reads the data in large chunks, hashes the blocks of a chunk in
// parallel and feeds the digests to level 0 in order.
func (b *builder) hashData(data io.ReaderAt) error {
	g := b.g
	bs := int64(g.p.DataBlockSize)
	per := max(formatChunk/bs, 1)
	buf := make([]byte, per*bs)
	digests := make([]byte, per*int64(g.digestSize))
	for first := uint64(0); first < g.p.DataBlocks; first += uint64(per) {
		n := min(uint64(per), g.p.DataBlocks-first)
		chunk := buf[:int64(n)*bs]
		if err := readFull(data, chunk, int64(first)*bs); err != nil {
			return fmt.Errorf("read data blocks %d-%d of %d: %w", first, first+n-1, g.p.DataBlocks, err)
		}
		g.sumBlocks(digests, chunk, int(bs))
		for i := 0; i < int(n); i++ {
			if err := b.add(0, digests[i*g.digestSize:(i+1)*g.digestSize]); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%d of %d bytes at offset %d: %w", n, len(p), off, err)
}

// hashWorkers caps the goroutines that hash one read (0: GOMAXPROCS); the
// benchmarks set 1 to measure the serial rate.
var hashWorkers = 0

// parallelMin is the number of blocks below which hashing stays on the
// calling goroutine: starting workers costs more than it saves.
const parallelMin = 64

// sumBlocks writes the digest of each bs-byte block of data to digests,
// spreading large runs over the available CPUs.
func (g *geometry) sumBlocks(digests, data []byte, bs int) {
	n := len(data) / bs
	workers := runtime.GOMAXPROCS(0)
	if hashWorkers > 0 {
		workers = min(workers, hashWorkers)
	}
	workers = min(workers, n/(parallelMin/2))
	if n < parallelMin || workers < 2 {
		g.sumRange(digests, data, bs, 0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.sumRange(digests, data, bs, lo, hi)
		}()
	}
	wg.Wait()
}

func (g *geometry) sumRange(digests, data []byte, bs, lo, hi int) {
	ds := g.digestSize
	for i := lo; i < hi; i++ {
		g.sum(digests[i*ds:i*ds:(i+1)*ds], data[i*bs:(i+1)*bs])
	}
}
