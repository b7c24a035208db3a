package verity

import (
	"io"
	"sort"
)

// blockSizes are the block sizes a tree is searched for at, the default
// first.
var blockSizes = []uint32{4096, 512, 1024, 2048}

// LocateAppended finds the superblock of a tree appended to its own image
// (veritysetup format --hash-offset=N --data-blocks=N/bs on one file, as
// pack --verity and `chestfs verity format IMAGE` write it) in an image of
// size bytes. Such a superblock sits right after the data blocks it covers,
// and the tree ends the file, so for each block size and digest size the
// place is fixed: the largest data area that leaves room for its tree. The
// digest size is the root hash's length; 0 tries every algorithm. It returns
// the superblock's offset, or an error when no candidate holds a superblock
// that covers exactly the bytes before it.
func LocateAppended(img io.ReaderAt, size int64, digestSize int) (int64, error) {
	seen := map[int64]bool{}
	var bad error // a superblock found where one belongs, but unreadable
	for _, bs := range blockSizes {
		for _, alg := range algorithmsOfSize(digestSize) {
			off, ok := appendedOffset(size, bs, alg)
			if !ok || seen[off] {
				continue
			}
			seen[off] = true
			p, err := readSuperblock(img, off)
			if err == nil && p.DataBlockSize == bs && int64(p.DataBlocks)*int64(bs) == off {
				return off, nil
			}
			if err != nil && bad == nil && hasSignature(img, off) {
				bad = err
			}
		}
	}
	if bad != nil {
		return 0, prefix(bad)
	}
	return 0, errorf(ErrFormat, "verity: no hash tree appended to the image (no superblock right after the data it covers); give --verity-hash for a separate tree")
}

// algorithmsOfSize lists the algorithms whose digests have n bytes (all for 0).
func algorithmsOfSize(n int) []string {
	var out []string
	for name, a := range algorithms {
		if n == 0 || a.size == n {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// appendedOffset is where the superblock of a tree appended to size bytes
// would be: n data blocks of bs bytes, the largest n whose tree still fits.
func appendedOffset(size int64, bs uint32, alg string) (int64, bool) {
	fits := func(n uint64) bool {
		p := &Params{HashType: 1, Algorithm: alg, DataBlockSize: bs, HashBlockSize: bs, DataBlocks: n,
			HashOffset: int64(n) * int64(bs)}
		g, err := newGeometry(p)
		return err == nil && g.layout().HashDeviceSize <= size
	}
	lo, hi := uint64(1), uint64(size/int64(bs))
	if hi < 1 || !fits(lo) {
		return 0, false
	}
	for lo < hi { // the largest n that fits
		mid := lo + (hi-lo+1)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return int64(lo) * int64(bs), true
}

// hasSignature reports whether a verity superblock signature is at off.
func hasSignature(img io.ReaderAt, off int64) bool {
	b := make([]byte, len(Signature))
	_, err := img.ReadAt(b, off)
	return err == nil && [8]byte(b) == Signature
}
