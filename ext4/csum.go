package ext4

import (
	"encoding/binary"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's raw crc32c (no pre/post inversion): ext4 chains
// checksums over several pieces starting from a seed.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// crc16 is the kernel's crc16 (ANSI polynomial 0x8005, bit-reflected),
// used by gdt_csum (uninit_bg) group descriptors.
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func le32b(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// inodeChecksum computes the metadata_csum checksum of in.raw: crc32c over
// the inode number, generation and the whole record with the checksum
// fields zeroed; only the low 16 bits when i_extra_isize does not cover the
// high half. It returns the computed and the stored checksum, and the
// per-inode seed that extent and directory block checksums start from.
func inodeChecksum(fsSeed uint32, in *inode) (c, stored, seed uint32) {
	b := in.raw
	seed = crc32c(fsSeed, le32b(uint32(in.ino)))
	seed = crc32c(seed, le32b(in.iGeneration))
	c = crc32c(seed, b[:iChecksumLoOff])
	c = crc32c(c, []byte{0, 0})
	c = crc32c(c, b[iChecksumLoOff+2:goodOldInodeSize])
	stored = uint32(binary.LittleEndian.Uint16(b[iChecksumLoOff:]))
	if len(b) <= goodOldInodeSize {
		return c & 0xFFFF, stored, seed
	}
	c = crc32c(c, b[goodOldInodeSize:iChecksumHiOff])
	hasHi := in.fits(iChecksumHiOff + 2)
	off := iChecksumHiOff
	if hasHi {
		c = crc32c(c, []byte{0, 0})
		off = iChecksumHiOff + 2
		stored |= uint32(binary.LittleEndian.Uint16(b[iChecksumHiOff:])) << 16
	}
	c = crc32c(c, b[off:])
	if !hasHi { // the kernel masks the whole sum (ext4_inode_csum_verify)
		c &= 0xFFFF
	}
	return c, stored, seed
}
