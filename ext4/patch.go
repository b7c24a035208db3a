package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The FS never writes. These let a writer that owns the image (chestfs
// pack, fixing up what mkfs.ext4 -d made) change a few inode fields in
// place with the reader's own layout, field offsets and checksum.

// InodeLocation returns where inode ino's on-disk record lies in the image:
// its byte offset and length (the superblock's inode size). An image whose
// journal was replayed at Open has no single on-disk truth and is refused.
func (f *FS) InodeLocation(ino uint64) (off int64, size int, err error) {
	if f.replayed {
		return 0, 0, errors.New("ext4: inode location: the journal was replayed in memory")
	}
	pos, err := f.inodePos(ino)
	if err != nil {
		return 0, 0, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	return int64(pos), int(f.sb.sInodeSize), nil
}

// InodePatch lists the inode fields PatchInode sets; nil fields stay.
type InodePatch struct {
	Owner        *[2]uint32 // uid, gid
	Perm         *uint16    // the permission bits (07777) of i_mode
	Atime, Mtime *time.Time // seconds, and nanoseconds where the inode has room
}

// PatchInode applies p to rec, the on-disk record of inode ino as read at
// InodeLocation, and recomputes its metadata_csum checksum. rec is checked
// first as the reader checks an inode (its checksum included); the caller
// writes it back.
func (f *FS) PatchInode(ino uint64, rec []byte, p InodePatch) error {
	if len(rec) != int(f.sb.sInodeSize) {
		return fmt.Errorf("ext4: inode %d: record of %d bytes, want %d", ino, len(rec), f.sb.sInodeSize)
	}
	in, err := f.decodeInode(ino, rec)
	if err != nil {
		return fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	le := binary.LittleEndian
	if o := p.Owner; o != nil {
		le.PutUint16(rec[iUIDLoOff:], uint16(o[0]))
		le.PutUint16(rec[iUIDHiOff:], uint16(o[0]>>16))
		le.PutUint16(rec[iGIDLoOff:], uint16(o[1]))
		le.PutUint16(rec[iGIDHiOff:], uint16(o[1]>>16))
	}
	if p.Perm != nil {
		le.PutUint16(rec[iModeOff:], in.iMode&^0o7777|*p.Perm&0o7777)
	}
	in.putTime(iAtimeOff, iAtimeExtraOff, p.Atime)
	in.putTime(iMtimeOff, iMtimeExtraOff, p.Mtime)
	if f.csum {
		c, _, _ := inodeChecksum(f.csumSeed, in)
		le.PutUint16(rec[iChecksumLoOff:], uint16(c))
		if in.fits(iChecksumHiOff + 2) {
			le.PutUint16(rec[iChecksumHiOff:], uint16(c>>16))
		}
	}
	return nil
}

// putTime stores t in the base field at off and, where the inode's extra
// space covers it, the extra field at extraOff.
func (in *inode) putTime(off, extraOff int, t *time.Time) {
	if t == nil {
		return
	}
	base, extra := encodeTime(*t)
	binary.LittleEndian.PutUint32(in.raw[off:], base)
	if in.fits(extraOff + 4) {
		binary.LittleEndian.PutUint32(in.raw[extraOff:], extra)
	}
}
