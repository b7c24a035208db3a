package verity

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// ReadSuperblock reads and checks the superblock at hashOffset.
func ReadSuperblock(hash io.ReaderAt, hashOffset int64) (*Params, error) {
	p, err := readSuperblock(hash, hashOffset)
	return p, prefix(err)
}

func readSuperblock(hash io.ReaderAt, hashOffset int64) (*Params, error) {
	if hashOffset < 0 || hashOffset%512 != 0 {
		return nil, errorf(ErrFormat, "hash offset %d is not a multiple of 512", hashOffset)
	}
	b := make([]byte, SuperblockSize)
	if err := readFull(hash, b, hashOffset); err != nil {
		return nil, errorf(ErrFormat, "no verity superblock at offset %d: %v", hashOffset, err)
	}
	return decodeSuperblock(b, hashOffset)
}

// Options are the parameters of Verify and Open beyond the devices.
type Options struct {
	// Params describes a tree without superblock (veritysetup
	// --no-superblock; its HashOffset and NoSuperblock are ignored: the tree
	// starts at the hash offset given); nil reads the superblock there.
	Params *Params
	// CacheBytes bounds the memory for verified hash blocks in a Reader
	// (default 16 MiB; the top levels are kept besides).
	CacheBytes int64
	// HashReadahead is the number of consecutive hash blocks a Reader reads
	// at once on a miss (default 16).
	HashReadahead int
	// Logger gets one warning per bad block a Reader finds (rate-limited);
	// nil: slog.Default().
	Logger *slog.Logger
}

// params returns the tree's parameters: opts.Params or the superblock's.
func (o *Options) params(hash io.ReaderAt, hashOffset int64) (*Params, error) {
	if o != nil && o.Params != nil {
		p := *o.Params
		p.HashOffset = hashOffset
		p.NoSuperblock = true
		return &p, p.check()
	}
	return readSuperblock(hash, hashOffset)
}

// checkRoot refuses a root hash of the wrong length for the tree's algorithm.
func checkRoot(p *Params, root []byte) error {
	n, err := digestSize(p.Algorithm)
	if err != nil {
		return err
	}
	if len(root) != n {
		return errorf(ErrFormat, "root hash of %d bytes, %s needs %d", len(root), p.Algorithm, n)
	}
	return nil
}

// Verify checks a whole image offline, as `veritysetup verify` does: it
// recomputes the tree from the data, compares every hash block (and its
// zero padding) with the stored one, and the top with root. It returns nil
// or an error naming the first bad block (a *MismatchError for a mismatch).
func Verify(data, hash io.ReaderAt, hashOffset int64, root []byte, opts *Options) error {
	p, err := opts.params(hash, hashOffset)
	if err != nil {
		return fmt.Errorf("verity: verify: %w", err)
	}
	if err := checkRoot(p, root); err != nil {
		return fmt.Errorf("verity: verify: %w", err)
	}
	g, err := newGeometry(p)
	if err != nil {
		return fmt.Errorf("verity: verify: %w", err)
	}
	if s, ok := hash.(sizer); ok && s.Size() < g.layout().HashDeviceSize {
		return errorf(ErrFormat, "verity: verify: hash device of %d bytes is too short for the tree (needs %d): truncated", s.Size(), g.layout().HashDeviceSize)
	}
	if s, ok := data.(sizer); ok && s.Size() < p.DataSize() {
		return errorf(ErrFormat, "verity: verify: the tree covers %d blocks of %d bytes (%d bytes) but the image has %d bytes: a tree made for another image", p.DataBlocks, p.DataBlockSize, p.DataSize(), s.Size())
	}
	c := &treeChecker{g: g, src: hash, stored: make([][]byte, g.levels), first: make([]uint64, g.levels)}
	got, err := g.build(data, c.check)
	if err != nil {
		return fmt.Errorf("verity: verify: %w", err)
	}
	if subtle.ConstantTimeCompare(got, root) != 1 {
		return fmt.Errorf("verity: verify: %w", &MismatchError{Root: true})
	}
	return nil
}

// treeChecker compares computed hash blocks with the stored ones, reading
// the stored tree in batches.
type treeChecker struct {
	g      *geometry
	src    io.ReaderAt
	stored [][]byte // per level, a batch of stored blocks
	first  []uint64 // per level, index of stored[l]'s first block
}

func (c *treeChecker) check(level int, idx uint64, block []byte) error {
	hbs := uint64(c.g.p.HashBlockSize)
	buf := c.stored[level]
	if idx < c.first[level] || idx >= c.first[level]+uint64(len(buf))/hbs {
		n := min(writeBatch, c.g.levelSize[level]-idx)
		buf = make([]byte, n*hbs)
		if err := readFull(c.src, buf, c.g.hashOffset(level, idx)); err != nil {
			return fmt.Errorf("read hash level %d: %w", level, err)
		}
		c.stored[level], c.first[level] = buf, idx
	}
	off := (idx - c.first[level]) * hbs
	stored := buf[off : off+hbs]
	if bytes.Equal(stored, block) {
		return nil
	}
	return c.mismatch(level, idx, stored, block)
}

// mismatch names the first child whose digest differs; a difference only
// in the padding names the hash block itself.
func (c *treeChecker) mismatch(level int, idx uint64, stored, computed []byte) error {
	g := c.g
	children := g.p.DataBlocks
	if level > 0 {
		children = g.levelSize[level-1]
	}
	for i := uint64(0); i < g.perBlock() && idx<<g.bits+i < children; i++ {
		child := idx<<g.bits + i
		if !bytes.Equal(g.entry(stored, child), g.entry(computed, child)) {
			if level == 0 {
				return &MismatchError{Level: -1, Block: child}
			}
			return &MismatchError{Level: level - 1, Block: child}
		}
	}
	return errorf(ErrFormat, "hash block %d of level %d has non-zero padding", idx, level)
}
