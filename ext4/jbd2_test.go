package ext4

import (
	"encoding/binary"
	"errors"
	"testing"
)

// Hand-built jbd2 blocks, laid out as include/linux/jbd2.h describes them.

func jsb(blocktype, incompat uint32) []byte {
	b := make([]byte, 1024)
	be := binary.BigEndian
	be.PutUint32(b[0:], jbdMagic)
	be.PutUint32(b[4:], blocktype)
	be.PutUint32(b[0xC:], 1024)  // s_blocksize
	be.PutUint32(b[0x10:], 4096) // s_maxlen
	be.PutUint32(b[0x14:], 1)    // s_first
	be.PutUint32(b[0x18:], 77)   // s_sequence
	be.PutUint32(b[0x1C:], 9)    // s_start
	be.PutUint32(b[0x28:], incompat)
	for i := range 16 {
		b[0x30+i] = byte(i + 1)
	}
	return b
}

func TestDecodeJournalSuperblock(t *testing.T) {
	js, err := decodeJournalSuperblock(jsb(jbdSuperblockV2, jbdFeature64bit|jbdFeatureCsumV3))
	if err != nil {
		t.Fatal(err)
	}
	if js.sBlocksize != 1024 || js.sMaxlen != 4096 || js.sFirst != 1 || js.sSequence != 77 || js.sStart != 9 ||
		js.sUUID[0] != 1 || js.sUUID[15] != 16 || !js.has(jbdFeature64bit) || !js.csum() {
		t.Errorf("decoded %+v", js)
	}
	// v1 has no feature fields: whatever lies there is ignored.
	js, err = decodeJournalSuperblock(jsb(jbdSuperblockV1, jbdFeatureCsumV3))
	if err != nil || js.sFeatureIncompat != 0 || js.csum() {
		t.Errorf("v1: %+v %v", js, err)
	}
	bad := jsb(jbdSuperblockV2, 0)
	bad[0] ^= 1
	if _, err := decodeJournalSuperblock(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad magic: %v", err)
	}
	if _, err := decodeJournalSuperblock(jsb(jbdDescriptor, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("descriptor as superblock: %v", err)
	}
	if _, err := decodeJournalSuperblock(make([]byte, 20)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short: %v", err)
	}
}

func TestJournalTagBytes(t *testing.T) {
	for _, c := range []struct {
		incompat uint32
		want     int
	}{
		{0, 8},
		{jbdFeature64bit, 12},
		{jbdFeatureCsumV2, 10},
		{jbdFeatureCsumV2 | jbdFeature64bit, 14},
		{jbdFeatureCsumV3, 16},
		{jbdFeatureCsumV3 | jbdFeature64bit, 16},
	} {
		js := journalSuperblock{sFeatureIncompat: c.incompat}
		if got := js.tagBytes(); got != c.want {
			t.Errorf("incompat %#x: tag bytes %d, want %d", c.incompat, got, c.want)
		}
	}
}

// descriptor builds a descriptor block holding tags written by put, each
// followed by a UUID unless SAME_UUID is set, and signs its tail.
func descriptor(js *journalSuperblock, tags []journalTag, put func(b []byte, t journalTag)) []byte {
	b := make([]byte, 1024)
	binary.BigEndian.PutUint32(b[0:], jbdMagic)
	binary.BigEndian.PutUint32(b[4:], jbdDescriptor)
	off := jbdHeaderSize
	for _, t := range tags {
		put(b[off:], t)
		off += js.tagBytes()
		if t.tFlags&jbdFlagSameUUID == 0 {
			off += 16
		}
	}
	if js.csum() {
		signBlock(js, b, len(b)-4)
	}
	return b
}

func signBlock(js *journalSuperblock, b []byte, at int) {
	binary.BigEndian.PutUint32(b[at:], 0)
	binary.BigEndian.PutUint32(b[at:], crc32c(js.csumSeed(), b))
}

func TestDecodeDescriptorTagsV3(t *testing.T) {
	js := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV3 | jbdFeature64bit}
	want := []journalTag{
		{tBlocknr: 5<<32 | 100, tFlags: jbdFlagEscape, tChecksum: 0xdeadbeef},
		{tBlocknr: 200, tFlags: jbdFlagSameUUID, tChecksum: 1},
		{tBlocknr: 300, tFlags: jbdFlagSameUUID | jbdFlagLastTag, tChecksum: 2},
	}
	b := descriptor(&js, want, func(b []byte, t journalTag) {
		binary.BigEndian.PutUint32(b[0:], uint32(t.tBlocknr))
		binary.BigEndian.PutUint32(b[4:], t.tFlags)
		binary.BigEndian.PutUint32(b[8:], uint32(t.tBlocknr>>32))
		binary.BigEndian.PutUint32(b[12:], t.tChecksum)
	})
	// A tag after LAST_TAG is not read.
	binary.BigEndian.PutUint32(b[12+16+16+16+16:], 999)
	signBlock(&js, b, len(b)-4)
	got := decodeDescriptorTags(b, &js)
	if len(got) != len(want) {
		t.Fatalf("got %d tags %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("tag %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if !js.blockCsumOK(b, len(b)-4) {
		t.Error("tail checksum rejected")
	}
	b[100] ^= 1
	if js.blockCsumOK(b, len(b)-4) {
		t.Error("damaged descriptor accepted")
	}
}

func TestDecodeDescriptorTagsV2And32bit(t *testing.T) {
	for _, incompat := range []uint32{0, jbdFeatureCsumV2, jbdFeature64bit | jbdFeatureCsumV2} {
		js := journalSuperblock{sFeatureIncompat: incompat}
		want := []journalTag{
			{tBlocknr: 7, tFlags: jbdFlagSameUUID, tChecksum: 0x1234},
			{tBlocknr: 8, tFlags: jbdFlagSameUUID | jbdFlagLastTag | jbdFlagEscape, tChecksum: 0xffff},
		}
		if js.has(jbdFeature64bit) {
			want[1].tBlocknr |= 3 << 32
		}
		if !js.csum() {
			want[0].tChecksum, want[1].tChecksum = 0, 0
		}
		b := descriptor(&js, want, func(b []byte, t journalTag) {
			binary.BigEndian.PutUint32(b[0:], uint32(t.tBlocknr))
			binary.BigEndian.PutUint16(b[4:], uint16(t.tChecksum))
			binary.BigEndian.PutUint16(b[6:], uint16(t.tFlags))
			if js.has(jbdFeature64bit) {
				binary.BigEndian.PutUint32(b[8:], uint32(t.tBlocknr>>32))
			}
		})
		got := decodeDescriptorTags(b, &js)
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("incompat %#x: %+v, want %+v", incompat, got, want)
		}
	}
}

// Without LAST_TAG the tags end where the block (before its tail) ends.
func TestDecodeDescriptorTagsFillBlock(t *testing.T) {
	js := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV3}
	b := make([]byte, 1024)
	for off := jbdHeaderSize; off+16 <= len(b)-4; off += 16 {
		binary.BigEndian.PutUint32(b[off+4:], jbdFlagSameUUID)
	}
	if got := decodeDescriptorTags(b, &js); len(got) != (1024-4-12)/16 {
		t.Errorf("%d tags", len(got))
	}
}

func TestDecodeRevoke(t *testing.T) {
	for _, is64 := range []bool{false, true} {
		js := journalSuperblock{sFeatureIncompat: jbdFeatureRevoke}
		size := 4
		if is64 {
			js.sFeatureIncompat |= jbdFeature64bit
			size = 8
		}
		b := make([]byte, 1024)
		binary.BigEndian.PutUint32(b[0:], jbdMagic)
		binary.BigEndian.PutUint32(b[4:], jbdRevoke)
		want := []uint64{10, 20, 1<<33 + 5}
		if !is64 {
			want[2] = 30
		}
		off := jbdRevokeHeaderSize
		for _, w := range want {
			if is64 {
				binary.BigEndian.PutUint64(b[off:], w)
			} else {
				binary.BigEndian.PutUint32(b[off:], uint32(w))
			}
			off += size
		}
		// Past r_count: not a record.
		binary.BigEndian.PutUint32(b[off:], 99)
		binary.BigEndian.PutUint32(b[jbdHeaderSize:], uint32(off))
		got, err := decodeRevoke(b, &js)
		if err != nil || len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("64bit %v: %v %v, want %v", is64, got, err, want)
		}
		binary.BigEndian.PutUint32(b[jbdHeaderSize:], 1025)
		if _, err := decodeRevoke(b, &js); !errors.Is(err, ErrCorrupt) {
			t.Errorf("r_count past the block: %v", err)
		}
	}
	// With checksums, r_count may not reach into the tail.
	js := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV3}
	b := make([]byte, 1024)
	binary.BigEndian.PutUint32(b[jbdHeaderSize:], 1022)
	if _, err := decodeRevoke(b, &js); !errors.Is(err, ErrCorrupt) {
		t.Errorf("r_count into the tail: %v", err)
	}
}

func TestCommitChecksum(t *testing.T) {
	js, err := decodeJournalSuperblock(jsb(jbdSuperblockV2, jbdFeatureCsumV3))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1024)
	binary.BigEndian.PutUint32(b[0:], jbdMagic)
	binary.BigEndian.PutUint32(b[4:], jbdCommit)
	binary.BigEndian.PutUint32(b[8:], 77)
	b[12] = 4 // h_chksum_type JBD2_CRC32C_CHKSUM
	b[13] = 4 // h_chksum_size
	binary.BigEndian.PutUint64(b[0x30:], 1700000000)
	signBlock(&js, b, jbdCommitChksumOff)
	if !commitOK(b, &js) {
		t.Fatal("intact commit rejected")
	}
	b[0x30] ^= 1
	if commitOK(b, &js) {
		t.Error("torn commit accepted")
	}
	// Without checksums every commit counts.
	if nocsum := (journalSuperblock{}); !commitOK(b, &nocsum) {
		t.Error("commit without checksums rejected")
	}
}

func TestDataChecksum(t *testing.T) {
	data := []byte("logged block content")
	v3 := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV3}
	c := crc32c(crc32c(v3.csumSeed(), []byte{0, 0, 0, 5}), data)
	if !v3.dataCsumOK(5, data, c) || v3.dataCsumOK(6, data, c) {
		t.Error("v3 data checksum")
	}
	v2 := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV2}
	if !v2.dataCsumOK(5, data, c&0xFFFF) || v2.dataCsumOK(5, data, c) {
		t.Error("v2 data checksum is the low 16 bits")
	}
}

func TestJournalHeader(t *testing.T) {
	b := []byte{0xC0, 0x3B, 0x39, 0x98, 0, 0, 0, 2, 0, 0, 1, 0}
	if h := decodeJournalHeader(b); h != (journalHeader{jbdMagic, jbdCommit, 256}) {
		t.Errorf("%+v", h)
	}
}

// FuzzJournalBlock decodes arbitrary bytes as each jbd2 structure, under
// every feature combination the input picks: no panic, and no more tags
// or revoke records than the block has room for.
func FuzzJournalBlock(f *testing.F) {
	v3 := journalSuperblock{sFeatureIncompat: jbdFeatureCsumV3 | jbdFeature64bit}
	f.Add(uint8(jbdFeatureCsumV3|jbdFeature64bit), descriptor(&v3, []journalTag{{tBlocknr: 9, tFlags: jbdFlagLastTag}},
		func(b []byte, t journalTag) {
			binary.BigEndian.PutUint32(b[0:], uint32(t.tBlocknr))
			binary.BigEndian.PutUint32(b[4:], t.tFlags)
		}))
	f.Add(uint8(0), jsb(jbdSuperblockV2, jbdFeatureRevoke))
	f.Add(uint8(jbdFeature64bit), []byte{0xC0, 0x3B, 0x39, 0x98, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 32})
	f.Fuzz(func(t *testing.T, incompat uint8, b []byte) {
		if len(b) < 64 {
			b = append(b, make([]byte, 64-len(b))...)
		}
		js := journalSuperblock{sFeatureIncompat: uint32(incompat)}
		decodeJournalHeader(b)
		decodeJournalSuperblock(b)
		if tags := decodeDescriptorTags(b, &js); len(tags) > (len(b)-jbdHeaderSize)/js.tagBytes() {
			t.Fatalf("%d tags in %d bytes", len(tags), len(b))
		}
		if blocks, err := decodeRevoke(b, &js); err == nil && len(blocks) > (len(b)-jbdRevokeHeaderSize)/4 {
			t.Fatalf("%d revoke records in %d bytes", len(blocks), len(b))
		}
		js.blockCsumOK(b, len(b)-4)
		commitOK(b, &js)
	})
}
