package ext4

import (
	"encoding/binary"
	"fmt"
)

// The on-disk structures of jbd2, the ext4 journal, named as in the
// kernel's include/linux/jbd2.h. Everything in the journal is big-endian.
// Each decode function reads one structure from one journal block.

const (
	jbdMagic = 0xC03B3998 // JBD2_MAGIC_NUMBER

	// h_blocktype values.
	jbdDescriptor   = 1 // JBD2_DESCRIPTOR_BLOCK
	jbdCommit       = 2 // JBD2_COMMIT_BLOCK
	jbdSuperblockV1 = 3 // JBD2_SUPERBLOCK_V1
	jbdSuperblockV2 = 4 // JBD2_SUPERBLOCK_V2
	jbdRevoke       = 5 // JBD2_REVOKE_BLOCK

	// s_feature_incompat bits.
	jbdFeatureRevoke      = 0x1  // JBD2_FEATURE_INCOMPAT_REVOKE
	jbdFeature64bit       = 0x2  // JBD2_FEATURE_INCOMPAT_64BIT
	jbdFeatureAsyncCommit = 0x4  // JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT
	jbdFeatureCsumV2      = 0x8  // JBD2_FEATURE_INCOMPAT_CSUM_V2
	jbdFeatureCsumV3      = 0x10 // JBD2_FEATURE_INCOMPAT_CSUM_V3
	jbdFeatureFastCommit  = 0x20 // JBD2_FEATURE_INCOMPAT_FAST_COMMIT
	jbdKnownIncompat      = 0x3F // JBD2_KNOWN_INCOMPAT_FEATURES

	jbdFeatureCompatChecksum = 0x1 // JBD2_FEATURE_COMPAT_CHECKSUM (v1)

	jbdCrc32cChksum    = 4    // JBD2_CRC32C_CHKSUM, s_checksum_type
	jbdMinJournalBlock = 1024 // JBD2_MIN_JOURNAL_BLOCKS
	jbdSuperblockSize  = 1024 // sizeof(journal_superblock_t)
	jbdSbChecksumOff   = 0xFC // s_checksum

	// t_flags bits of a descriptor tag.
	jbdFlagEscape   = 0x1 // JBD2_FLAG_ESCAPE: the block began with the magic, zeroed in the log
	jbdFlagSameUUID = 0x2 // JBD2_FLAG_SAME_UUID: no 16-byte UUID follows the tag
	jbdFlagLastTag  = 0x8 // JBD2_FLAG_LAST_TAG

	jbdHeaderSize       = 12 // journal_header_t
	jbdRevokeHeaderSize = 16 // jbd2_journal_revoke_header_t
	jbdCommitChksumOff  = 16 // commit_header.h_chksum[0]
	jbdCommitSecOff     = 48 // commit_header.h_commit_sec
)

// journalHeader is journal_header_t, at the start of every metadata block.
type journalHeader struct {
	hMagic     uint32
	hBlocktype uint32
	hSequence  uint32
}

func decodeJournalHeader(b []byte) journalHeader {
	return journalHeader{
		hMagic:     binary.BigEndian.Uint32(b[0:]),
		hBlocktype: binary.BigEndian.Uint32(b[4:]),
		hSequence:  binary.BigEndian.Uint32(b[8:]),
	}
}

// journalSuperblock is journal_superblock_t, the fields a replay uses.
type journalSuperblock struct {
	sHeader          journalHeader
	sBlocksize       uint32
	sMaxlen          uint32 // blocks in the journal
	sFirst           uint32 // first block of the log
	sSequence        uint32 // first commit ID expected in the log
	sStart           uint32 // block of the start of the log; 0: nothing to replay
	sFeatureCompat   uint32 // v2 only
	sFeatureIncompat uint32 // v2 only
	sFeatureRoCompat uint32 // v2 only
	sUUID            [16]byte
	sChecksumType    uint8
	sChecksum        uint32
}

func decodeJournalSuperblock(b []byte) (journalSuperblock, error) {
	if len(b) < jbdSuperblockSize {
		return journalSuperblock{}, fmt.Errorf("%w: journal superblock of %d bytes", ErrCorrupt, len(b))
	}
	be32 := func(o int) uint32 { return binary.BigEndian.Uint32(b[o:]) }
	js := journalSuperblock{
		sHeader:    decodeJournalHeader(b),
		sBlocksize: be32(0xC),
		sMaxlen:    be32(0x10),
		sFirst:     be32(0x14),
		sSequence:  be32(0x18),
		sStart:     be32(0x1C),
	}
	copy(js.sUUID[:], b[0x30:0x40])
	switch {
	case js.sHeader.hMagic != jbdMagic:
		return js, fmt.Errorf("%w: journal superblock magic %#x", ErrCorrupt, js.sHeader.hMagic)
	case js.sHeader.hBlocktype == jbdSuperblockV2:
		js.sFeatureCompat = be32(0x24)
		js.sFeatureIncompat = be32(0x28)
		js.sFeatureRoCompat = be32(0x2C)
		js.sChecksumType = b[0x50]
		js.sChecksum = be32(jbdSbChecksumOff)
	case js.sHeader.hBlocktype != jbdSuperblockV1:
		return js, fmt.Errorf("%w: journal superblock type %d", ErrCorrupt, js.sHeader.hBlocktype)
	}
	return js, nil
}

func (js *journalSuperblock) has(feature uint32) bool { return js.sFeatureIncompat&feature != 0 }

// check applies the kernel's journal_check_superblock (fs/jbd2/journal.c),
// which runs whenever ext4 loads its journal, recovery or not: where it
// fails, the kernel refuses to mount. raw is the superblock block, bs the
// filesystem block size and total the journal inode's length in blocks.
func (js *journalSuperblock) check(raw []byte, bs, total uint64) error {
	switch {
	case uint64(js.sBlocksize) != bs:
		return fmt.Errorf("%w: journal block size %d, filesystem %d", ErrCorrupt, js.sBlocksize, bs)
	case uint64(js.sMaxlen) > total:
		return fmt.Errorf("%w: journal of %d blocks in a journal inode of %d", ErrCorrupt, js.sMaxlen, total)
	case js.sFirst == 0 || uint64(js.sFirst) >= total:
		return fmt.Errorf("%w: journal log starts at block %d", ErrCorrupt, js.sFirst)
	case js.sHeader.hBlocktype != jbdSuperblockV2:
		return nil // v1 has no features and no checksum
	case js.sFeatureRoCompat != 0 || js.sFeatureIncompat&^jbdKnownIncompat != 0:
		return fmt.Errorf("%w: journal features incompat %#x ro_compat %#x", ErrUnsupported, js.sFeatureIncompat, js.sFeatureRoCompat)
	case js.sMaxlen < jbdMinJournalBlock:
		return fmt.Errorf("%w: journal of %d blocks, fewer than %d", ErrCorrupt, js.sMaxlen, jbdMinJournalBlock)
	case js.has(jbdFeatureCsumV2) && js.has(jbdFeatureCsumV3):
		return fmt.Errorf("%w: journal checksums v2 and v3 at once", ErrCorrupt)
	case js.csum() && js.sFeatureCompat&jbdFeatureCompatChecksum != 0:
		return fmt.Errorf("%w: journal checksums v1 and v2/v3 at once", ErrCorrupt)
	case !js.csum():
		return nil
	case js.sChecksumType != jbdCrc32cChksum:
		return fmt.Errorf("%w: journal checksum type %d", ErrCorrupt, js.sChecksumType)
	}
	c := crc32c(^uint32(0), raw[:jbdSbChecksumOff])
	c = crc32c(c, []byte{0, 0, 0, 0})
	c = crc32c(c, raw[jbdSbChecksumOff+4:jbdSuperblockSize])
	if c != js.sChecksum {
		return fmt.Errorf("%w: journal superblock checksum %#x, computed %#x", ErrChecksum, js.sChecksum, c)
	}
	return nil
}

// csum reports whether blocks carry checksums (csum v2 or v3).
func (js *journalSuperblock) csum() bool { return js.has(jbdFeatureCsumV2 | jbdFeatureCsumV3) }

// csumSeed is the crc32c seed of every journal checksum: the journal UUID.
func (js *journalSuperblock) csumSeed() uint32 { return crc32c(^uint32(0), js.sUUID[:]) }

// tagBytes is the size of one descriptor tag (journal_tag_bytes).
func (js *journalSuperblock) tagBytes() int {
	if js.has(jbdFeatureCsumV3) {
		return 16 // journal_block_tag3_t
	}
	n := 12 // journal_block_tag_t
	if js.has(jbdFeatureCsumV2) {
		n += 2
	}
	if !js.has(jbdFeature64bit) {
		n -= 4 // no t_blocknr_high
	}
	return n
}

// tailBytes is the size of the checksum tail of descriptor and revoke
// blocks (jbd2_journal_block_tail).
func (js *journalSuperblock) tailBytes() int {
	if js.csum() {
		return 4
	}
	return 0
}

// blockCsumOK checks a descriptor or revoke block's tail, or a commit
// block's h_chksum[0] (at is the field's offset): crc32c over the whole
// block with the field zeroed. Without checksums every block passes.
func (js *journalSuperblock) blockCsumOK(b []byte, at int) bool {
	if !js.csum() {
		return true
	}
	want := binary.BigEndian.Uint32(b[at:])
	c := crc32c(js.csumSeed(), b[:at])
	c = crc32c(c, []byte{0, 0, 0, 0})
	c = crc32c(c, b[at+4:])
	return c == want
}

// dataCsumOK checks a logged data block against its tag's checksum: crc32c
// over the commit ID and the block as logged, cut to 16 bits with csum v2.
func (js *journalSuperblock) dataCsumOK(seq uint32, data []byte, tagCsum uint32) bool {
	if !js.csum() {
		return true
	}
	c := crc32c(crc32c(js.csumSeed(), binary.BigEndian.AppendUint32(nil, seq)), data)
	if !js.has(jbdFeatureCsumV3) {
		c &= 0xFFFF
	}
	return c == tagCsum
}

// journalTag is one descriptor tag: journal_block_tag3_t with csum v3,
// else journal_block_tag_t. Each names the filesystem block whose new
// content is the next block of the log.
type journalTag struct {
	tBlocknr  uint64 // with t_blocknr_high on 64bit journals
	tFlags    uint32
	tChecksum uint32 // 16 bits before csum v3
}

// decodeDescriptorTags reads the tags of a descriptor block, up to the
// LAST_TAG flag or the end of the block (before its checksum tail).
func decodeDescriptorTags(b []byte, js *journalSuperblock) []journalTag {
	var tags []journalTag
	size := js.tagBytes()
	end := len(b) - js.tailBytes()
	for off := jbdHeaderSize; off+size <= end; {
		t := decodeTag(b[off:off+size], js)
		tags = append(tags, t)
		off += size
		if t.tFlags&jbdFlagSameUUID == 0 {
			off += 16
		}
		if t.tFlags&jbdFlagLastTag != 0 {
			break
		}
	}
	return tags
}

func decodeTag(b []byte, js *journalSuperblock) journalTag {
	t := journalTag{tBlocknr: uint64(binary.BigEndian.Uint32(b[0:]))}
	if js.has(jbdFeatureCsumV3) {
		t.tFlags = binary.BigEndian.Uint32(b[4:])
		t.tChecksum = binary.BigEndian.Uint32(b[12:])
	} else {
		t.tChecksum = uint32(binary.BigEndian.Uint16(b[4:]))
		t.tFlags = uint32(binary.BigEndian.Uint16(b[6:]))
	}
	if js.has(jbdFeature64bit) {
		t.tBlocknr |= uint64(binary.BigEndian.Uint32(b[8:])) << 32
	}
	return t
}

// decodeRevoke returns the filesystem blocks a revoke block lists:
// r_count bytes from the block start, header included, of 4- or (64bit)
// 8-byte block numbers.
func decodeRevoke(b []byte, js *journalSuperblock) ([]uint64, error) {
	count := int(binary.BigEndian.Uint32(b[jbdHeaderSize:]))
	if count > len(b)-js.tailBytes() {
		return nil, fmt.Errorf("%w: journal revoke block of %d bytes", ErrCorrupt, count)
	}
	size := 4
	if js.has(jbdFeature64bit) {
		size = 8
	}
	var blocks []uint64
	for off := jbdRevokeHeaderSize; off+size <= count; off += size {
		if size == 8 {
			blocks = append(blocks, binary.BigEndian.Uint64(b[off:]))
		} else {
			blocks = append(blocks, uint64(binary.BigEndian.Uint32(b[off:])))
		}
	}
	return blocks, nil
}

// commitOK reports whether a commit block (commit_header) is intact: its
// checksum when the journal has them.
func commitOK(b []byte, js *journalSuperblock) bool {
	return js.blockCsumOK(b, jbdCommitChksumOff)
}

// commitTime is a commit block's h_commit_sec, which recovery compares to
// tell a damaged transaction from a stale block of an older log.
func commitTime(b []byte) uint64 { return binary.BigEndian.Uint64(b[jbdCommitSecOff:]) }
