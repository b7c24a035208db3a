package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/chestfs/chestfs/blockdev"
)

// jbd2 (the ext4 journal) is big-endian. A filesystem with needs_recovery
// set has committed transactions in its journal that were not yet written
// to their home locations; a read-only reader replays them by overlaying
// the journaled blocks in memory, as the kernel would before mounting.
const (
	jbdMagic = 0xC03B3998

	jbdDescriptor = 1
	jbdCommit     = 2
	jbdRevoke     = 5

	jbdFeatureRevoke = 0x1
	jbdFeature64bit  = 0x2
	jbdFeatureCsumV2 = 0x8
	jbdFeatureCsumV3 = 0x10

	jbdFlagEscape   = 0x1
	jbdFlagSameUUID = 0x2
	jbdFlagLastTag  = 0x8
)

// journalSrc is where the current content of a filesystem block lives in
// the journal.
type journalSrc struct {
	phys   uint64 // physical block (of the journal inode's data)
	escape bool   // the block started with the jbd2 magic, zeroed in the log
}

// overlay serves reads from the device, replacing journaled blocks.
type overlay struct {
	base   io.ReaderAt
	bits   uint
	blocks []uint64 // sorted filesystem block numbers in src
	src    map[uint64]journalSrc
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	return o.ReadAtRun(p, off, 0)
}

// ReadAtRun passes a file read's extent end on to the device (see
// blockdev.RunReader).
func (o *overlay) ReadAtRun(p []byte, off, end int64) (int, error) {
	n, err := blockdev.ReadAtRun(o.base, p, off, end)
	if n == 0 {
		return n, err
	}
	first := uint64(off) >> o.bits
	last := (uint64(off) + uint64(n) - 1) >> o.bits
	bs := int64(1) << o.bits
	i := sort.Search(len(o.blocks), func(i int) bool { return o.blocks[i] >= first })
	for ; i < len(o.blocks) && o.blocks[i] <= last; i++ {
		b := o.blocks[i]
		s := o.src[b]
		buf := make([]byte, bs)
		if k, rerr := o.base.ReadAt(buf, int64(s.phys)<<o.bits); k < len(buf) {
			if rerr == nil {
				rerr = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("ext4: journal block %d: %w", s.phys, rerr)
		}
		if s.escape {
			binary.BigEndian.PutUint32(buf, jbdMagic)
		}
		// Copy the overlap of block b with [off, off+n).
		bstart := int64(b) << o.bits
		lo := max(bstart, off)
		hi := min(bstart+bs, off+int64(n))
		copy(p[lo-off:hi-off], buf[lo-bstart:hi-bstart])
	}
	return n, err
}

// replayJournal scans the internal journal and returns the overlay of
// committed, unrevoked blocks (nil if there is nothing to replay).
func (f *FS) replayJournal() (*overlay, error) {
	if !f.sb.compat(compatHasJournal) || f.sb.sJournalInum == 0 {
		return nil, fmt.Errorf("%w: needs_recovery without an internal journal", ErrUnsupported)
	}
	jin, err := f.inode(uint64(f.sb.sJournalInum))
	if err != nil {
		return nil, err
	}
	readLog := func(lblk uint64, buf []byte) (uint64, error) {
		phys, _, err := f.mapBlock(jin, lblk)
		if err != nil {
			return 0, err
		}
		if phys == 0 {
			return 0, fmt.Errorf("%w: hole in the journal at block %d", ErrCorrupt, lblk)
		}
		return phys, f.readDev(buf, phys)
	}
	sbuf := make([]byte, f.bs)
	if _, err := readLog(0, sbuf); err != nil {
		return nil, err
	}
	be32 := func(b []byte, o int) uint32 { return binary.BigEndian.Uint32(b[o:]) }
	if be32(sbuf, 0) != jbdMagic || (be32(sbuf, 4) != 3 && be32(sbuf, 4) != 4) {
		return nil, fmt.Errorf("%w: journal superblock magic", ErrCorrupt)
	}
	if uint64(be32(sbuf, 0xC)) != f.bs {
		return nil, fmt.Errorf("%w: journal block size %d", ErrUnsupported, be32(sbuf, 0xC))
	}
	maxlen := uint64(be32(sbuf, 0x10))
	first := uint64(be32(sbuf, 0x14))
	seq := be32(sbuf, 0x18)
	start := uint64(be32(sbuf, 0x1C))
	var incompat uint32
	if be32(sbuf, 4) == 4 {
		incompat = be32(sbuf, 0x28)
	}
	if start == 0 {
		return nil, nil // the journal is empty: nothing to replay
	}
	if first == 0 || first >= maxlen || start < first || start >= maxlen || maxlen > jin.iSize>>f.bits ||
		maxlen > f.sb.sBlocksCount {
		return nil, fmt.Errorf("%w: journal geometry first %d start %d length %d", ErrCorrupt, first, start, maxlen)
	}
	is64 := incompat&jbdFeature64bit != 0
	csum3 := incompat&jbdFeatureCsumV3 != 0
	csum2 := incompat&jbdFeatureCsumV2 != 0
	tagBytes := 12
	if csum3 {
		tagBytes = 16
	} else {
		if csum2 {
			tagBytes += 2
		}
		if !is64 {
			tagBytes -= 4
		}
	}
	tail := 0
	var jseed uint32
	if csum2 || csum3 {
		tail = 4
		jseed = crc32c(^uint32(0), sbuf[0x30:0x40]) // over the journal's UUID
	}
	// blockCsumOK checks a descriptor or revoke block's tail, or a commit
	// block's h_chksum[0], each crc32c over the block with the field zeroed.
	blockCsumOK := func(b []byte, at int) bool {
		if tail == 0 {
			return true
		}
		want := be32(b, at)
		c := crc32c(jseed, b[:at])
		c = crc32c(c, []byte{0, 0, 0, 0})
		c = crc32c(c, b[at+4:])
		return c == want
	}
	next := func(b uint64) uint64 {
		b++
		if b >= maxlen {
			b = first
		}
		return b
	}

	type tag struct {
		fsblk uint64
		log   uint64 // physical block of the data
		esc   bool
	}
	type txn struct {
		seq  uint32
		tags []tag
	}
	var txns []txn
	revoked := map[uint64]uint32{} // fs block -> highest revoking sequence
	var pendTags []tag
	var pendRevoke []uint64
	buf := make([]byte, f.bs)
	blk := start
	for steps := uint64(0); steps < maxlen; steps++ {
		if _, err := readLog(blk, buf); err != nil {
			return nil, err
		}
		if be32(buf, 0) != jbdMagic || be32(buf, 8) != seq {
			break // the end of the log
		}
		switch be32(buf, 4) {
		case jbdDescriptor:
			if !blockCsumOK(buf, len(buf)-4) {
				steps = maxlen // a torn or damaged descriptor ends the log
				continue
			}
			end := len(buf) - tail
			for off := 12; off+tagBytes <= end; {
				var fsblk uint64
				var flags, tagCsum uint32
				if csum3 {
					fsblk = uint64(be32(buf, off))
					flags = be32(buf, off+4)
					tagCsum = be32(buf, off+12)
					if is64 {
						fsblk |= uint64(be32(buf, off+8)) << 32
					}
				} else {
					fsblk = uint64(be32(buf, off))
					flags = uint32(binary.BigEndian.Uint16(buf[off+6:]))
					tagCsum = uint32(binary.BigEndian.Uint16(buf[off+4:]))
					if is64 {
						fsblk |= uint64(be32(buf, off+8)) << 32
					}
				}
				blk = next(blk)
				steps++
				phys, _, err := f.mapBlock(jin, blk)
				if err != nil {
					return nil, err
				}
				if phys == 0 || fsblk >= f.sb.sBlocksCount {
					return nil, fmt.Errorf("%w: journal tag for block %d", ErrCorrupt, fsblk)
				}
				tg := tag{fsblk, phys, flags&jbdFlagEscape != 0}
				if tail != 0 {
					// The data block's checksum covers the sequence and the
					// block as logged; a mismatch skips that block, as the
					// kernel does.
					data := make([]byte, f.bs)
					if err := f.readDev(data, phys); err != nil {
						return nil, err
					}
					c := crc32c(crc32c(jseed, binary.BigEndian.AppendUint32(nil, seq)), data)
					if csum2 {
						c &= 0xFFFF
					}
					if c != tagCsum {
						tg.fsblk = ^uint64(0)
					}
				}
				pendTags = append(pendTags, tg)
				off += tagBytes
				if flags&jbdFlagSameUUID == 0 {
					off += 16
				}
				if flags&jbdFlagLastTag != 0 {
					break
				}
			}
		case jbdRevoke:
			if incompat&jbdFeatureRevoke == 0 && be32(sbuf, 4) == 4 {
				break
			}
			count := int(be32(buf, 12))
			rs := 4
			if is64 {
				rs = 8
			}
			if count > len(buf)-tail {
				return nil, fmt.Errorf("%w: journal revoke block of %d bytes", ErrCorrupt, count)
			}
			for off := 16; off+rs <= count; off += rs {
				if is64 {
					pendRevoke = append(pendRevoke, binary.BigEndian.Uint64(buf[off:]))
				} else {
					pendRevoke = append(pendRevoke, uint64(be32(buf, off)))
				}
			}
		case jbdCommit:
			if !blockCsumOK(buf, 16) {
				steps = maxlen // an uncommitted (torn) transaction ends the log
				continue
			}
			txns = append(txns, txn{seq, pendTags})
			for _, r := range pendRevoke {
				if s, ok := revoked[r]; !ok || int32(seq-s) > 0 {
					revoked[r] = seq
				}
			}
			pendTags, pendRevoke = nil, nil
			seq++
		default:
			steps = maxlen // an unknown block type ends the log
			continue
		}
		blk = next(blk)
	}
	if len(txns) == 0 {
		return nil, nil
	}
	o := &overlay{base: f.r, bits: f.bits, src: map[uint64]journalSrc{}}
	for _, t := range txns {
		for _, tg := range t.tags {
			if tg.fsblk == ^uint64(0) {
				continue // failed its checksum
			}
			if s, ok := revoked[tg.fsblk]; ok && int32(s-t.seq) >= 0 {
				continue
			}
			o.src[tg.fsblk] = journalSrc{phys: tg.log, escape: tg.esc}
		}
	}
	for b := range o.src {
		o.blocks = append(o.blocks, b)
	}
	sort.Slice(o.blocks, func(i, j int) bool { return o.blocks[i] < o.blocks[j] })
	return o, nil
}
