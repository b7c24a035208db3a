package ext4

import (
	"encoding/binary"
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"strings"
)

const (
	xattrMagic   = 0xEA020000
	xattrSizeMax = 65536 // XATTR_SIZE_MAX: the VFS never stores larger values
)

// Name indexes (e_name_index) and the prefixes the kernel lists them with.
const (
	xattrIndexUser       = 1
	xattrIndexACLAccess  = 2
	xattrIndexACLDefault = 3
	xattrIndexTrusted    = 4
	xattrIndexSecurity   = 6
	xattrIndexSystem     = 7 // system.data (inline data), not listed
	xattrIndexHurd       = 10
)

var xattrPrefixes = map[uint8]string{
	xattrIndexUser:       "user.",
	xattrIndexACLAccess:  "system.posix_acl_access",
	xattrIndexACLDefault: "system.posix_acl_default",
	xattrIndexTrusted:    "trusted.",
	xattrIndexSecurity:   "security.",
	xattrIndexHurd:       "gnu.",
}

// xattrEntry is a decoded struct ext4_xattr_entry with its value located.
type xattrEntry struct {
	eNameIndex uint8
	eName      string
	eValueInum uint32
	eValueSize uint32
	value      []byte // nil when stored in an EA inode
}

// parseXattrs decodes entries starting at ents until the 4-byte zero end
// marker; values are at offsets relative to vbase.
func parseXattrs(ents, vbase []byte) ([]xattrEntry, error) {
	var out []xattrEntry
	for i := 0; ; i++ {
		if len(ents) < 4 {
			return nil, fmt.Errorf("%w: xattr entries run past their area", ErrCorrupt)
		}
		if binary.LittleEndian.Uint32(ents) == 0 {
			return out, nil
		}
		if len(ents) < 16 || i > 10000 {
			return nil, fmt.Errorf("%w: xattr entry truncated", ErrCorrupt)
		}
		nameLen := int(ents[0])
		size := (nameLen + 16 + 3) &^ 3
		if size > len(ents) {
			return nil, fmt.Errorf("%w: xattr name runs past its area", ErrCorrupt)
		}
		e := xattrEntry{
			eNameIndex: ents[1],
			eName:      string(ents[16 : 16+nameLen]),
			eValueInum: binary.LittleEndian.Uint32(ents[4:]),
			eValueSize: binary.LittleEndian.Uint32(ents[8:]),
		}
		offs := int(binary.LittleEndian.Uint16(ents[2:]))
		if e.eValueInum == 0 {
			if uint64(offs)+uint64(e.eValueSize) > uint64(len(vbase)) {
				return nil, fmt.Errorf("%w: xattr value at %d+%d outside its area", ErrCorrupt, offs, e.eValueSize)
			}
			e.value = vbase[offs : offs+int(e.eValueSize)]
		} else if e.eValueSize > xattrSizeMax {
			return nil, fmt.Errorf("%w: xattr value of %d bytes", ErrCorrupt, e.eValueSize)
		}
		out = append(out, e)
		ents = ents[size:]
	}
}

// inodeXattrs returns the entries stored in the inode body after
// i_extra_isize.
func (f *FS) inodeXattrs(in *inode) ([]xattrEntry, error) {
	start := goodOldInodeSize + int(in.extraIsize)
	if len(in.raw) <= goodOldInodeSize || start+4 > len(in.raw) {
		return nil, nil
	}
	area := in.raw[start:]
	if binary.LittleEndian.Uint32(area) != xattrMagic {
		return nil, nil
	}
	return parseXattrs(area[4:], area[4:])
}

// blockXattrs returns the entries of the inode's external xattr block.
func (f *FS) blockXattrs(in *inode) ([]xattrEntry, error) {
	if in.iFileACL == 0 {
		return nil, nil
	}
	b, err := f.block(in.iFileACL)
	if err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(b) != xattrMagic || binary.LittleEndian.Uint32(b[8:]) != 1 {
		return nil, fmt.Errorf("%w: xattr block %d header", ErrCorrupt, in.iFileACL)
	}
	if f.csum {
		c := crc32c(f.csumSeed, binary.LittleEndian.AppendUint64(nil, in.iFileACL))
		c = crc32c(c, b[:0x10])
		c = crc32c(c, []byte{0, 0, 0, 0})
		c = crc32c(c, b[0x14:])
		if want := binary.LittleEndian.Uint32(b[0x10:]); want != c {
			return nil, fmt.Errorf("%w: xattr block %d checksum %#x, computed %#x", ErrChecksum, in.iFileACL, want, c)
		}
	}
	return parseXattrs(b[32:], b)
}

func (f *FS) allXattrs(in *inode) ([]xattrEntry, error) {
	a, err := f.inodeXattrs(in)
	if err != nil {
		return nil, err
	}
	b, err := f.blockXattrs(in)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// ListXattr returns the names of an inode's extended attributes with their
// namespace prefixes, in the order the kernel lists them.
func (f *FS) ListXattr(ino uint64) ([]string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	es, err := f.allXattrs(in)
	if err != nil {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	var names []string
	for _, e := range es {
		p, ok := xattrPrefixes[e.eNameIndex]
		if !ok {
			continue
		}
		names = append(names, p+e.eName)
	}
	return names, nil
}

func splitXattrName(name string) (uint8, string, bool) {
	switch name {
	case "system.posix_acl_access":
		return xattrIndexACLAccess, "", true
	case "system.posix_acl_default":
		return xattrIndexACLDefault, "", true
	}
	for idx, p := range map[uint8]string{xattrIndexUser: "user.", xattrIndexTrusted: "trusted.",
		xattrIndexSecurity: "security.", xattrIndexHurd: "gnu."} {
		if s, ok := strings.CutPrefix(name, p); ok && s != "" {
			return idx, s, true
		}
	}
	return 0, "", false
}

// GetXattr returns the value of the named attribute (ErrNoXattr if absent).
// POSIX ACLs are converted to the VFS xattr format getxattr(2) returns.
func (f *FS) GetXattr(ino uint64, name string) ([]byte, error) {
	idx, suffix, ok := splitXattrName(name)
	if !ok {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, ErrNoXattr)
	}
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	v, err := f.xattrValue(in, idx, suffix)
	if err != nil {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, err)
	}
	if idx == xattrIndexACLAccess || idx == xattrIndexACLDefault {
		return aclToXattr(v)
	}
	return v, nil
}

func (f *FS) xattrValue(in *inode, idx uint8, name string) ([]byte, error) {
	es, err := f.allXattrs(in)
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if e.eNameIndex != idx || e.eName != name {
			continue
		}
		if e.eValueInum == 0 {
			return append([]byte(nil), e.value...), nil
		}
		return f.eaInodeValue(in, e)
	}
	return nil, ErrNoXattr
}

// eaInodeValue reads a value stored in its own inode (ea_inode feature).
func (f *FS) eaInodeValue(owner *inode, e xattrEntry) ([]byte, error) {
	if !f.sb.incompat(incompatEAInode) || uint64(e.eValueInum) == owner.ino {
		return nil, fmt.Errorf("%w: xattr value in inode %d", ErrCorrupt, e.eValueInum)
	}
	// readInode, not inode: its errors carry no package prefix, which
	// GetXattr adds. Values are read rarely; the block cache serves it.
	vi, err := f.readInode(uint64(e.eValueInum))
	if err != nil {
		return nil, fmt.Errorf("xattr value inode %d: %w", e.eValueInum, err)
	}
	if vi.iFlags&flagEAInode == 0 || vi.fileType() != syscall.S_IFREG || vi.iSize != uint64(e.eValueSize) ||
		vi.iFlags&flagInlineData != 0 {
		return nil, fmt.Errorf("%w: xattr value inode %d", ErrCorrupt, e.eValueInum)
	}
	b := make([]byte, e.eValueSize)
	if err := f.readData(vi, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// inlineData returns the content of an inline-data inode: the 60 bytes of
// i_block followed by the system.data xattr value, cut to i_size.
func (f *FS) inlineData(in *inode) ([]byte, error) {
	es, err := f.inodeXattrs(in)
	if err != nil {
		return nil, err
	}
	d := append([]byte(nil), in.iBlock[:]...)
	found := false
	for _, e := range es {
		if e.eNameIndex == xattrIndexSystem && e.eName == "data" && e.eValueInum == 0 {
			d = append(d, e.value...)
			found = true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: inline data inode without system.data", ErrCorrupt)
	}
	if uint64(len(d)) < in.iSize && in.fileType() != syscall.S_IFDIR {
		return nil, fmt.Errorf("%w: inline data of %d bytes for size %d", ErrCorrupt, len(d), in.iSize)
	}
	if in.fileType() != syscall.S_IFDIR {
		d = d[:in.iSize]
	}
	return d, nil
}

// aclToXattr converts an ext4 on-disk ACL (version 1, short entries for
// the owner, group, mask and other) to the VFS xattr format (version 2,
// 8-byte entries).
func aclToXattr(b []byte) ([]byte, error) {
	if len(b) < 4 || binary.LittleEndian.Uint32(b) != 1 {
		return nil, fmt.Errorf("%w: ACL header", ErrCorrupt)
	}
	out := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+2*len(b)), 2)
	b = b[4:]
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: ACL entry truncated", ErrCorrupt)
		}
		tag := binary.LittleEndian.Uint16(b)
		id := uint32(0xFFFFFFFF)
		n := 4
		switch tag {
		case 0x01, 0x04, 0x10, 0x20: // USER_OBJ, GROUP_OBJ, MASK, OTHER
		case 0x02, 0x08: // USER, GROUP
			if len(b) < 8 {
				return nil, fmt.Errorf("%w: ACL entry truncated", ErrCorrupt)
			}
			id = binary.LittleEndian.Uint32(b[4:])
			n = 8
		default:
			return nil, fmt.Errorf("%w: ACL tag %#x", ErrCorrupt, tag)
		}
		out = append(out, b[:4]...)
		out = binary.LittleEndian.AppendUint32(out, id)
		b = b[n:]
	}
	return out, nil
}
