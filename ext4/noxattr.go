package ext4

import (
	"encoding/binary"
	"fmt"
)

// maxXattrScan bounds the inode-table bytes NoXattrs reads: past it the
// answer is "unknown" (false), so a huge image never costs a huge download.
const maxXattrScan = 256 << 20

// bgInodeUninit is EXT4_BG_INODE_UNINIT: the group's inode table was never used.
const bgInodeUninit = 0x1

// NoXattrs reports whether no inode of the filesystem has an extended
// attribute (no POSIX ACL, no security label, no inline-data record),
// found by reading the inode tables in large runs, straight from the
// device (the block cache is left alone). It errs on the safe side: false
// whenever an inode record might carry one (a deleted inode's leftovers
// included), and false, with a nil error, when the tables in use exceed
// maxXattrScan. A server may then tell the kernel once that xattrs are
// not supported (FUSE's ENOSYS for GETXATTR), which ends one request per
// file for ls -l's ACL and SELinux queries.
func (f *FS) NoXattrs() (bool, error) {
	isz := uint64(f.sb.sInodeSize)
	ipg := uint64(f.sb.sInodesPerGroup)
	trustUnused := f.csum || f.sb.roCompat(roCompatGdtCsum)
	type run struct{ off, n uint64 }
	var runs []run
	var total uint64
	for g := uint64(0); g < f.ngroup; g++ {
		d := &f.groups[g]
		used := ipg
		if trustUnused {
			if d.bgFlags&bgInodeUninit != 0 {
				continue
			}
			used = ipg - min(uint64(d.bgItableUnused), ipg)
		}
		if first := g * ipg; first+used > uint64(f.sb.sInodesCount) {
			used = uint64(f.sb.sInodesCount) - min(first, uint64(f.sb.sInodesCount))
		}
		if used == 0 {
			continue
		}
		runs = append(runs, run{d.bgInodeTable * f.bs, used * isz})
		total += used * isz
		if total > maxXattrScan {
			return false, nil
		}
	}
	buf := make([]byte, 0, 1<<20)
	for _, r := range runs {
		for done := uint64(0); done < r.n; {
			n := min(r.n-done, uint64(cap(buf))/isz*isz)
			b := buf[:n]
			if k, err := f.r.ReadAt(b, int64(r.off+done)); k < len(b) {
				return false, fmt.Errorf("ext4: reading the inode table at %d: %w", r.off+done, err)
			}
			for o := uint64(0); o < n; o += isz {
				if recordHasXattrs(b[o : o+isz]) {
					return false, nil
				}
			}
			done += n
		}
	}
	return true, nil
}

// recordHasXattrs reports whether a raw inode record points at an xattr
// block or holds a non-empty in-inode xattr area.
func recordHasXattrs(b []byte) bool {
	le16 := func(o int) uint32 { return uint32(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) uint32 { return binary.LittleEndian.Uint32(b[o:]) }
	if le32(0x68) != 0 || le16(0x76) != 0 { // i_file_acl_lo, l_i_file_acl_high
		return true
	}
	if len(b) <= goodOldInodeSize+2 {
		return false
	}
	start := goodOldInodeSize + int(le16(goodOldInodeSize))
	if start+8 > len(b) || le32(start) != xattrMagic {
		return false
	}
	// The magic with an empty entry list (4 zero bytes) holds nothing.
	return le32(start+4) != 0
}
