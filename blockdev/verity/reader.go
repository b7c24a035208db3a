package verity

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chestfs/chestfs/blockdev"
)

// Reader is a blockdev.Source over the data blocks of an image that checks
// every block against the hash tree before returning it. A block that does
// not match makes the read fail with an error matching both ErrMismatch and
// syscall.EIO; its bytes are never returned. Safe for concurrent use.
type Reader struct {
	g         *geometry
	data      blockdev.Source
	hash      blockdev.Source
	root      []byte
	cache     *blockCache
	readahead uint64
	log       *slog.Logger

	bufs sync.Pool // of *[]byte of bufSize bytes, for unaligned reads

	logMu  sync.Mutex
	logged map[uint64]time.Time // data block -> last warning, to rate-limit

	verified, mismatches atomic.Int64 // for Stats
}

var _ blockdev.Source = (*Reader)(nil)
var _ blockdev.RunReader = (*Reader)(nil)

// Open checks the tree on hash at hashOffset against root and returns a
// verified view of data. data and hash may be the same source (a tree
// appended after the image). Open refuses a root hash of the wrong length,
// a truncated tree, a tree whose top does not match root (another version
// of the image, a wrong salt), and a tree made for another image (by size,
// and by checking the first and last data blocks).
func Open(data, hash blockdev.Source, hashOffset int64, root []byte, opts *Options) (*Reader, error) {
	p, err := opts.params(hash, hashOffset)
	if err != nil {
		return nil, fmt.Errorf("verity: open: %w", err)
	}
	if err := checkRoot(p, root); err != nil {
		return nil, fmt.Errorf("verity: open: %w", err)
	}
	g, err := newGeometry(p)
	if err != nil {
		return nil, fmt.Errorf("verity: open: %w", err)
	}
	if need := g.layout().HashDeviceSize; hash.Size() < need {
		return nil, errorf(ErrFormat, "verity: open: hash device of %d bytes is too short for the tree (needs %d): truncated", hash.Size(), need)
	}
	if data.Size() < p.DataSize() {
		return nil, errorf(ErrFormat, "verity: open: the tree covers %d blocks of %d bytes (%d bytes) but the image has %d bytes: a tree made for another image", p.DataBlocks, p.DataBlockSize, p.DataSize(), data.Size())
	}
	r := &Reader{g: g, data: data, hash: hash, root: append([]byte{}, root...), logged: make(map[uint64]time.Time)}
	cacheBytes, ra := int64(16<<20), 16
	if opts != nil && opts.CacheBytes > 0 {
		cacheBytes = opts.CacheBytes
	}
	if opts != nil && opts.HashReadahead > 0 {
		ra = opts.HashReadahead
	}
	r.cache, r.readahead, r.log = newBlockCache(g, cacheBytes), uint64(ra), slog.Default()
	if opts != nil && opts.Logger != nil {
		r.log = opts.Logger
	}
	if g.levels > 0 {
		if _, err := r.hashBlock(g.levels-1, 0); err != nil {
			return nil, fmt.Errorf("verity: open: %w", err)
		}
	}
	if err := r.checkEnds(); err != nil {
		return nil, fmt.Errorf("verity: open: %w", err)
	}
	return r, nil
}

// checkEnds verifies the first and last data blocks, so that a tree made
// for another image (or an image changed at either end, such as its LUKS
// header) is refused at open rather than on some later read.
func (r *Reader) checkEnds() error {
	bs := int64(r.g.p.DataBlockSize)
	buf := make([]byte, bs)
	for _, b := range []uint64{0, r.g.p.DataBlocks - 1} {
		if err := readFull(r.data, buf, int64(b)*bs); err != nil {
			return fmt.Errorf("read data block %d: %w", b, err)
		}
		if bad, err := r.verifyBlocks(buf, b); bad >= 0 {
			var me *MismatchError
			if errors.As(err, &me) && me.Level < 0 {
				return fmt.Errorf("%w (a tree made for another image, or the image was changed)", err)
			}
			return err
		}
	}
	return nil
}

// Params returns the tree's parameters.
func (r *Reader) Params() Params { return *r.g.p }

// Size is the number of bytes the tree covers.
func (r *Reader) Size() int64 { return r.g.p.DataSize() }

func (r *Reader) ReadAt(p []byte, off int64) (int, error) { return r.ReadAtRun(p, off, 0) }

// ReadAtRun reads the data blocks enclosing [off, off+len(p)) in one read
// of the data source (passing end on), checks each, and copies out the
// requested bytes. On a mismatch it returns the verified bytes before the
// bad block and zeroes the rest of p.
func (r *Reader) ReadAtRun(p []byte, off, end int64) (int, error) {
	size := r.Size()
	if off < 0 {
		return 0, blockdev.ErrOutOfRange
	}
	if off >= size {
		if len(p) == 0 && off == size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p, eof = p[:size-off], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	bs := int64(r.g.p.DataBlockSize)
	first := off / bs
	last := (off + int64(len(p)) - 1) / bs
	buf, direct := p, off%bs == 0 && int64(len(p))%bs == 0
	if !direct {
		var release func()
		buf, release = r.getBuf(int((last - first + 1) * bs))
		defer release()
	}
	if end > 0 {
		end = min(max(end, (last+1)*bs), size)
	}
	if n, err := blockdev.ReadAtRun(r.data, buf, first*bs, end); n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		clear(p)
		return 0, fmt.Errorf("verity: read data at %d: %w", first*bs, err)
	}
	bad, err := r.verifyBlocks(buf, uint64(first))
	good := len(p)
	if bad >= 0 {
		good = int(max(min((first+int64(bad))*bs-off, int64(len(p))), 0))
		if errors.Is(err, ErrMismatch) {
			r.warn(uint64(first)+uint64(bad), err)
		}
	}
	if !direct {
		copy(p[:good], buf[off-first*bs:])
	}
	if bad >= 0 {
		clear(p[good:])
		return good, fmt.Errorf("verity: %w", err)
	}
	return len(p), eof
}

// bufSize is the size of the pooled buffers for unaligned reads: a FUSE
// read of up to 1 MiB plus the partial blocks at either end.
func (r *Reader) bufSize() int { return 1<<20 + 2*int(r.g.p.DataBlockSize) }

// getBuf returns a buffer of n bytes, pooled when n is at most bufSize,
// and the function that returns it to the pool.
func (r *Reader) getBuf(n int) ([]byte, func()) {
	if n > r.bufSize() {
		return make([]byte, n), func() {}
	}
	bp, _ := r.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, r.bufSize())
		bp = &b
	}
	return (*bp)[:n], func() { r.bufs.Put(bp) }
}

// verifyBlocks checks the data blocks in buf, the first of which is block
// first. It returns the index within buf of the first bad block and why, or
// -1 and nil. Each block is hashed exactly once.
func (r *Reader) verifyBlocks(buf []byte, first uint64) (int, error) {
	g := r.g
	bs := int(g.p.DataBlockSize)
	n := len(buf) / bs
	ds := g.digestSize
	digests := make([]byte, n*ds)
	g.sumBlocks(digests, buf, bs)
	var leaf []byte
	leafIdx := ^uint64(0)
	for i := 0; i < n; i++ {
		b := first + uint64(i)
		want := r.root
		if g.levels > 0 {
			if b>>g.bits != leafIdx {
				var err error
				if leaf, err = r.hashBlock(0, b>>g.bits); err != nil {
					return i, err
				}
				leafIdx = b >> g.bits
			}
			want = g.entry(leaf, b)
		}
		if subtle.ConstantTimeCompare(digests[i*ds:(i+1)*ds], want) != 1 {
			r.verified.Add(int64(i))
			return i, &MismatchError{Level: -1, Block: b}
		}
	}
	r.verified.Add(int64(n))
	return -1, nil
}

// hashBlock returns hash block idx of level, verified against its parent
// (or the root). On a miss it reads up to readahead consecutive blocks
// under the same parent in one read and keeps those that verify.
func (r *Reader) hashBlock(level int, idx uint64) ([]byte, error) {
	g := r.g
	k := blockKey{level, idx}
	if b := r.cache.get(k); b != nil {
		return b, nil
	}
	var parent []byte
	if level < g.levels-1 {
		var err error
		if parent, err = r.hashBlock(level+1, idx>>g.bits); err != nil {
			return nil, err
		}
	}
	end := min(idx+r.readahead, g.levelSize[level], (idx|(g.perBlock()-1))+1)
	hbs := int(g.p.HashBlockSize)
	buf := make([]byte, int(end-idx)*hbs)
	if err := readFull(r.hash, buf, g.hashOffset(level, idx)); err != nil {
		return nil, fmt.Errorf("read hash level %d block %d: %w", level, idx, err)
	}
	var got [64]byte
	var first []byte
	for i := idx; i < end; i++ {
		// Each cached block gets its own copy: a slice of buf would keep
		// the whole run in memory while any one of its blocks is cached.
		block := bytes.Clone(buf[int(i-idx)*hbs : int(i-idx+1)*hbs])
		want := r.root
		if parent != nil {
			want = g.entry(parent, i)
		}
		if subtle.ConstantTimeCompare(g.sum(got[:0], block), want) == 1 {
			r.cache.put(blockKey{level, i}, block)
			if i == idx {
				first = block
			}
		} else if i == idx {
			if parent == nil {
				return nil, &MismatchError{Root: true}
			}
			return nil, &MismatchError{Level: level, Block: idx}
		}
	}
	return first, nil
}

// logEvery rate-limits the warnings about one block.
const logEvery = time.Minute

// warn logs one line naming the bad block, at most once per logEvery per block.
func (r *Reader) warn(block uint64, err error) {
	r.mismatches.Add(1)
	now := time.Now()
	r.logMu.Lock()
	last, seen := r.logged[block]
	if seen && now.Sub(last) < logEvery {
		r.logMu.Unlock()
		return
	}
	if len(r.logged) >= 4096 {
		clear(r.logged)
	}
	r.logged[block] = now
	r.logMu.Unlock()
	r.log.Warn("verity: block does not match the hash tree; read fails with EIO",
		"data_block", block, "offset", int64(block)*int64(r.g.p.DataBlockSize), "err", err)
}
