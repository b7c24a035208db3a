package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"syscall"

	"github.com/chestfs/chestfs/blockdev"
)

// A filesystem with needs_recovery set has committed transactions in its
// journal (jbd2, see jbd2.go) that were not yet written to their home
// locations; a read-only reader replays them by overlaying the journaled
// blocks in memory, as the kernel would before mounting.

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
			return 0, fmt.Errorf("journal block %d: %w", s.phys, rerr)
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
// committed, unrevoked blocks (nil if there is nothing to replay). It
// follows the kernel's jbd2 recovery (fs/jbd2/recovery.c): where that
// recovery fails, and with it the mount, so does Open.
func (f *FS) replayJournal() (*overlay, error) {
	sc, err := f.openJournal()
	if err != nil || sc == nil || sc.js.sStart == 0 {
		return nil, err
	}
	if sc.js.has(jbdFeatureFastCommit) {
		return nil, fmt.Errorf("%w: replaying a journal with fast commits", ErrUnsupported)
	}
	if err := sc.scan(); err != nil {
		return nil, err
	}
	return sc.overlay()
}

// checkJournal loads and checks the journal superblock of a journaled
// filesystem that needs no recovery: the kernel loads it at every mount
// and refuses the filesystem when the check fails.
func (f *FS) checkJournal() error {
	if !f.sb.compat(compatHasJournal) || f.sb.sJournalInum == 0 || f.sb.incompat(incompatJournalDev) {
		return nil
	}
	_, err := f.openJournal()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// journalScan is the state of one pass over the log.
type journalScan struct {
	f   *FS
	jin *inode
	js  journalSuperblock
	seq uint32 // commit ID of the transaction being read
	blk uint64 // current log block

	txns       []journalTxn
	revoked    map[uint64]uint32 // fs block -> highest revoking sequence
	pendTags   []loggedBlock     // of the open transaction
	pendRevoke []uint64
	revokeErr  error // a bad revoke record count in the open transaction

	// needCheck: a descriptor or revoke block failed its checksum, so the
	// next commit decides between a damaged log and stale blocks.
	needCheck  bool
	lastCommit uint64 // h_commit_sec of the last commit
}

// loggedBlock is a filesystem block's content in the log.
type loggedBlock struct {
	fsblk  uint64
	phys   uint64 // physical block of the data
	esc    bool
	csumOK bool // the tag's data checksum matches (or there is none)
}

type journalTxn struct {
	seq    uint32
	blocks []loggedBlock
}

// openJournal reads and checks the journal inode and superblock as the
// kernel does when it loads the journal (ext4_get_journal_inode,
// journal_check_superblock).
func (f *FS) openJournal() (*journalScan, error) {
	if !f.sb.compat(compatHasJournal) || f.sb.sJournalInum == 0 {
		return nil, fmt.Errorf("%w: needs_recovery without an internal journal", ErrUnsupported)
	}
	// readInode, not inode: Open adds the package prefix to errors.
	jin, err := f.readInode(uint64(f.sb.sJournalInum))
	if err != nil {
		return nil, fmt.Errorf("journal inode %d: %w", f.sb.sJournalInum, err)
	}
	if jin.iLinks == 0 || jin.fileType() != syscall.S_IFREG {
		return nil, fmt.Errorf("%w: journal inode %d: mode %#o, %d links", ErrCorrupt, jin.ino, jin.iMode, jin.iLinks)
	}
	sc := &journalScan{f: f, jin: jin, revoked: map[uint64]uint32{}}
	buf := make([]byte, f.bs)
	if _, err := sc.readLog(0, buf); err != nil {
		return nil, err
	}
	if sc.js, err = decodeJournalSuperblock(buf); err != nil {
		return nil, err
	}
	js := &sc.js
	if err := js.check(buf, f.bs, jin.iSize>>f.bits); err != nil {
		return nil, err
	}
	if js.sStart == 0 {
		return sc, nil // the journal is empty: nothing to replay
	}
	first, start, maxlen := uint64(js.sFirst), uint64(js.sStart), uint64(js.sMaxlen)
	if first >= maxlen || start < first || start >= maxlen || maxlen > f.sb.sBlocksCount {
		return nil, fmt.Errorf("%w: journal geometry first %d start %d length %d", ErrCorrupt, first, start, maxlen)
	}
	sc.seq, sc.blk = js.sSequence, start
	return sc, nil
}

// readLog reads log block lblk into buf and returns its physical block.
func (sc *journalScan) readLog(lblk uint64, buf []byte) (uint64, error) {
	phys, err := sc.logPhys(lblk)
	if err != nil {
		return 0, err
	}
	return phys, sc.f.readDev(buf, phys)
}

func (sc *journalScan) logPhys(lblk uint64) (uint64, error) {
	phys, _, err := sc.f.mapBlock(sc.jin, lblk)
	if err != nil {
		return 0, err
	}
	if phys == 0 {
		return 0, fmt.Errorf("%w: hole in the journal at block %d", ErrCorrupt, lblk)
	}
	return phys, nil
}

// next is the log block after b; the log wraps from s_maxlen to s_first.
func (sc *journalScan) next(b uint64) uint64 {
	b++
	if b >= uint64(sc.js.sMaxlen) {
		b = uint64(sc.js.sFirst)
	}
	return b
}

// scan reads the log from s_start until a block that is not the next one
// of the expected transaction, at most once around.
func (sc *journalScan) scan() error {
	buf := make([]byte, sc.f.bs)
	maxlen := uint64(sc.js.sMaxlen)
	for steps := uint64(0); steps < maxlen; steps++ {
		if _, err := sc.readLog(sc.blk, buf); err != nil {
			return err
		}
		h := decodeJournalHeader(buf)
		if h.hMagic != jbdMagic || h.hSequence != sc.seq {
			return nil // the end of the log
		}
		more, used, err := sc.block(h.hBlocktype, buf)
		if err != nil || !more {
			return err
		}
		steps += used
		sc.blk = sc.next(sc.blk)
	}
	return nil
}

// block handles one log block: it reports whether the log goes on and how
// many data blocks after it were consumed.
func (sc *journalScan) block(typ uint32, buf []byte) (more bool, used uint64, err error) {
	switch typ {
	case jbdDescriptor:
		if !sc.js.blockCsumOK(buf, len(buf)-4) {
			// Maybe a stale block: the commit decides (see commit). Its
			// tags are skipped, as the kernel's scan pass skips them.
			sc.needCheck = true
			n := uint64(len(decodeDescriptorTags(buf, &sc.js)))
			for i := uint64(0); i < n; i++ {
				sc.blk = sc.next(sc.blk)
			}
			return true, n, nil
		}
		used, err := sc.descriptor(buf)
		return err == nil, used, err
	case jbdRevoke:
		if !sc.js.blockCsumOK(buf, len(buf)-4) {
			sc.needCheck = true
		}
		if sc.js.sHeader.hBlocktype == jbdSuperblockV2 && !sc.js.has(jbdFeatureRevoke) {
			return true, 0, nil
		}
		blocks, err := decodeRevoke(buf, &sc.js)
		if err != nil && sc.revokeErr == nil {
			sc.revokeErr = err // fatal only if the transaction commits
		}
		sc.pendRevoke = append(sc.pendRevoke, blocks...)
		return true, 0, nil
	case jbdCommit:
		return sc.commitBlock(buf)
	}
	return false, 0, nil // an unknown block type ends the log
}

// commitBlock decides a commit block as the kernel's scan pass does: after
// a damaged descriptor or revoke block, or with a damaged commit block
// itself, a commit time older than the last one marks stale blocks of an
// earlier log (the log ends there), and a newer one a damaged transaction,
// for which the kernel refuses to mount. An intact commit closes the open
// transaction.
func (sc *journalScan) commitBlock(buf []byte) (bool, uint64, error) {
	t := commitTime(buf)
	switch {
	case sc.needCheck && t >= sc.lastCommit:
		return false, 0, fmt.Errorf("%w: journal transaction %d has a damaged descriptor or revoke block", ErrChecksum, sc.seq)
	case sc.needCheck:
		return false, 0, nil
	case !commitOK(buf, &sc.js) && t < sc.lastCommit:
		return false, 0, nil
	case !commitOK(buf, &sc.js) && sc.js.has(jbdFeatureAsyncCommit):
		return false, 0, nil // the transactions before it count
	case !commitOK(buf, &sc.js):
		return false, 0, fmt.Errorf("%w: journal transaction %d is corrupt (commit block checksum)", ErrChecksum, sc.seq)
	case sc.revokeErr != nil:
		return false, 0, fmt.Errorf("journal transaction %d: %w", sc.seq, sc.revokeErr)
	}
	sc.lastCommit = t
	sc.commit()
	return true, 0, nil
}

// descriptor records where each tagged block's new content lies: the log
// blocks following the descriptor, one per tag.
func (sc *journalScan) descriptor(buf []byte) (uint64, error) {
	tags := decodeDescriptorTags(buf, &sc.js)
	for _, t := range tags {
		sc.blk = sc.next(sc.blk)
		phys, err := sc.logPhys(sc.blk)
		if err != nil {
			return 0, err
		}
		if t.tBlocknr >= sc.f.sb.sBlocksCount {
			return 0, fmt.Errorf("%w: journal tag for block %d", ErrCorrupt, t.tBlocknr)
		}
		lb := loggedBlock{fsblk: t.tBlocknr, phys: phys, esc: t.tFlags&jbdFlagEscape != 0, csumOK: true}
		if sc.js.csum() {
			data := make([]byte, sc.f.bs)
			if err := sc.f.readDev(data, phys); err != nil {
				return 0, err
			}
			lb.csumOK = sc.js.dataCsumOK(sc.seq, data, t.tChecksum)
		}
		sc.pendTags = append(sc.pendTags, lb)
	}
	return uint64(len(tags)), nil
}

// commit closes the open transaction: its blocks and revocations count.
func (sc *journalScan) commit() {
	sc.txns = append(sc.txns, journalTxn{sc.seq, sc.pendTags})
	for _, r := range sc.pendRevoke {
		if s, ok := sc.revoked[r]; !ok || int32(sc.seq-s) > 0 {
			sc.revoked[r] = sc.seq
		}
	}
	sc.pendTags, sc.pendRevoke = nil, nil
	sc.seq++
}

// overlay maps each block to its newest committed, unrevoked copy (nil
// when no transaction committed). A replayed block failing its data
// checksum fails the kernel's recovery, hence the mount: an error here.
func (sc *journalScan) overlay() (*overlay, error) {
	if len(sc.txns) == 0 {
		return nil, nil
	}
	f := sc.f
	o := &overlay{base: f.r, bits: f.bits, src: map[uint64]journalSrc{}}
	for _, t := range sc.txns {
		for _, lb := range t.blocks {
			if s, ok := sc.revoked[lb.fsblk]; ok && int32(s-t.seq) >= 0 {
				continue
			}
			if !lb.csumOK {
				return nil, fmt.Errorf("%w: journal transaction %d: logged copy of block %d", ErrChecksum, t.seq, lb.fsblk)
			}
			o.src[lb.fsblk] = journalSrc{phys: lb.phys, escape: lb.esc}
		}
	}
	for b := range o.src {
		o.blocks = append(o.blocks, b)
	}
	sort.Slice(o.blocks, func(i, j int) bool { return o.blocks[i] < o.blocks[j] })
	return o, nil
}
