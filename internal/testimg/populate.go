package testimg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Pattern returns n deterministic bytes (seeded), so tests can check content.
func Pattern(seed uint32, n int) []byte {
	b := make([]byte, n)
	x := seed*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// LargeDirPath is the directory with Variant.LargeDir entries, and
// LargeDirName gives the name of entry i in it.
const LargeDirPath = "big"

func LargeDirName(i int) string { return fmt.Sprintf("entry-%06d-some-longer-name", i) }

// LargeDirExtra names in the big directory have bytes >= 0x80, whose
// htree hash depends on signed or unsigned char; they are separate empty
// files, so target's link count stays LargeDir+1.
const LargeDirExtra = 24

func LargeDirExtraName(i int) string { return fmt.Sprintf("ünïcødé-%02d-名前-\xff", i) }

type populator struct {
	root   string
	bs     int
	kernel bool
	// extents: the image supports fallocate (ext4 extents).
	extents bool
	err     error
}

func (p *populator) path(rel string) string { return filepath.Join(p.root, rel) }

func (p *populator) check(what string, err error) {
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %w", what, err)
	}
}

func (p *populator) mkdir(rel string, mode os.FileMode) {
	p.check("mkdir "+rel, os.MkdirAll(p.path(rel), 0o755))
	p.check("chmod "+rel, os.Chmod(p.path(rel), mode))
}

func (p *populator) write(rel string, data []byte) {
	p.check("write "+rel, os.WriteFile(p.path(rel), data, 0o644))
}

// writeAt writes data at the given offsets and then sets the size.
func (p *populator) writeAt(rel string, size int64, parts map[int64][]byte) {
	f, err := os.OpenFile(p.path(rel), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		p.check("create "+rel, err)
		return
	}
	defer f.Close()
	for off, b := range parts {
		if _, err := f.WriteAt(b, off); err != nil {
			p.check("write "+rel, err)
			return
		}
	}
	p.check("truncate "+rel, f.Truncate(size))
}

func populateKernel(mnt string, v Variant) error {
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return err
	}
	p := &populator{root: mnt, bs: int(st.Bsize), kernel: true, extents: isExtents(v)}
	p.populate(v)
	if p.err == nil {
		unix.Sync()
	}
	return p.err
}

func populatePlain(dir string, v Variant) error {
	bs := 4096
	for i, a := range v.Mkfs {
		if a == "-b" && i+1 < len(v.Mkfs) {
			fmt.Sscan(v.Mkfs[i+1], &bs)
		}
	}
	p := &populator{root: dir, bs: bs, extents: isExtents(v)}
	p.populate(v)
	return p.err
}

func (p *populator) populate(v Variant) {
	p.files(v)
	p.tree()
	p.largeDir(v)
	p.timesAndInline()
	if p.kernel {
		p.kernelOnly()
	}
}

// files are regular files of every size and layout: holes, far blocks,
// fragmented extents, unwritten extents.
func (p *populator) files(v Variant) {
	bs := int64(p.bs)
	p.write("empty", nil)
	p.write("tiny", []byte("hello\n"))
	p.write("small100", Pattern(1, 100))
	p.write("medium", Pattern(2, 5000))
	p.write("bigfile", Pattern(3, 1<<20))
	p.writeAt("sparse", 5<<20, map[int64][]byte{0: Pattern(4, 10), 3<<20 + 7: Pattern(5, 10)})
	p.writeAt("holestart", 1<<20+100, map[int64][]byte{1 << 20: Pattern(6, 100)})
	if v.Name == "default4k" {
		// Larger than 4 GiB: 64-bit sizes and logical blocks past 2^20.
		p.writeAt("huge-sparse", 5<<30+5000, map[int64][]byte{0: Pattern(7, 10), 5 << 30: Pattern(8, 5000)})
	}
	// One byte beyond the reach of double-indirect block maps: forces a
	// triple-indirect block on ext2/3 and a far extent on ext4.
	far := (12 + bs/4 + (bs/4)*(bs/4) + 5) * bs
	if p.extents || bs > 4096 {
		far = 24 << 20 // extents reach it in one entry; keep reads cheap
	}
	p.writeAt("far", far+1, map[int64][]byte{0: []byte("a"), far: []byte("z")})
	// Every second block written: enough extents for a depth-2 tree.
	nfrag := 4*(bs-12)/12 + 50
	if bs > 4096 {
		nfrag = 40
	}
	frag := map[int64][]byte{}
	for i := int64(0); i < nfrag; i++ {
		frag[2*i*bs+i%7] = Pattern(uint32(i), 3)
	}
	p.writeAt("frag", 2*nfrag*bs, frag)
	if p.kernel && p.extents {
		// Preallocated (unwritten) extents with one written piece inside,
		// and preallocation past EOF.
		f, err := os.OpenFile(p.path("unwritten"), os.O_CREATE|os.O_RDWR, 0o644)
		p.check("create unwritten", err)
		if err == nil {
			p.check("fallocate", unix.Fallocate(int(f.Fd()), 0, 0, 64<<10))
			_, err = f.WriteAt(Pattern(7, 100), 8<<10)
			p.check("write unwritten", err)
			p.check("fallocate keep", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 64<<10, 64<<10))
			f.Close()
		}
	}
}

// tree is hard links, symlinks of every length, directories and modes.
func (p *populator) tree() {
	p.mkdir("links", 0o755)
	p.write("links/a", []byte("linked\n"))
	p.check("link", os.Link(p.path("links/a"), p.path("links/b")))
	p.check("link", os.Link(p.path("links/a"), p.path("links/c")))

	p.mkdir("sym", 0o755)
	p.check("symlink", os.Symlink("../tiny", p.path("sym/short")))
	p.check("symlink", os.Symlink(strings.Repeat("y", 59), p.path("sym/fiftynine")))
	p.check("symlink", os.Symlink(strings.Repeat("s", 60), p.path("sym/sixty")))
	p.check("symlink", os.Symlink(strings.Repeat("dir/", 75), p.path("sym/long")))
	p.check("symlink", os.Symlink(strings.Repeat("L", 900), p.path("sym/verylong")))

	p.mkdir("dirs/empty", 0o755)
	p.mkdir("dirs/a/b/c/d/e", 0o700)
	p.write("dirs/a/b/c/d/e/deep", []byte("deep\n"))
	p.mkdir("dirs/small", 0o755)
	p.write("dirs/small/one", []byte("1"))
	p.write("dirs/small/two", []byte("2"))
	p.write("ünïcødé-名前", []byte("unicode\n"))
	p.write("dirs/"+strings.Repeat("n", 255), []byte("longname\n"))
	// A directory with holes in its entry chains: half the names removed.
	p.mkdir("dirs/gaps", 0o755)
	for i := 0; i < 120; i++ {
		p.write(fmt.Sprintf("dirs/gaps/file-%03d", i), nil)
	}
	for i := 0; i < 120; i += 2 {
		p.check("remove", os.Remove(p.path(fmt.Sprintf("dirs/gaps/file-%03d", i))))
	}

	p.mkdir("perm", 0o755)
	p.write("perm/suid", []byte("#!/bin/sh\n"))
	p.check("chmod", os.Chmod(p.path("perm/suid"), 0o4755|os.ModeSetuid))
	p.check("chmod", unix.Chmod(p.path("perm/suid"), 0o4755))
	p.write("perm/none", []byte("x"))
	if p.kernel {
		p.check("chmod", unix.Chmod(p.path("perm/none"), 0)) // mkfs -d could not read it
	}
	p.mkdir("perm/sticky", 0o755)
	p.check("chmod", unix.Chmod(p.path("perm/sticky"), 0o1777))
	p.mkdir("perm/sgid", 0o755)
	p.check("chmod", unix.Chmod(p.path("perm/sgid"), 0o2775))
}

// largeDir is the big (htree) directory: hard links keep it cheap in inodes.
func (p *populator) largeDir(v Variant) {
	p.mkdir(LargeDirPath, 0o755)
	p.write(LargeDirPath+"/target", []byte("target\n"))
	for i := 0; i < v.largeDir(); i++ {
		if p.err != nil {
			break
		}
		p.check("link", os.Link(p.path(LargeDirPath+"/target"), p.path(LargeDirPath+"/"+LargeDirName(i))))
	}
	for i := 0; i < LargeDirExtra; i++ {
		p.write(LargeDirPath+"/"+LargeDirExtraName(i), nil)
	}
}

// timesAndInline is times beyond 32-bit seconds and inline-data candidates.
func (p *populator) timesAndInline() {
	p.mkdir("times", 0o755)
	for _, tc := range []struct {
		name string
		t    time.Time
	}{
		{"old1905", time.Date(1905, 3, 4, 5, 6, 7, 123456789, time.UTC)},
		{"neg1969", time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{"y2040", time.Date(2040, 1, 2, 3, 4, 5, 6, time.UTC)},
		{"y2300", time.Date(2300, 6, 7, 8, 9, 10, 500, time.UTC)},
	} {
		p.write("times/"+tc.name, []byte(tc.name))
		// Not os.Chtimes: it goes through UnixNano, which overflows past 2262.
		at := tc.t.Add(time.Hour)
		p.check("utimes", unix.UtimesNanoAt(unix.AT_FDCWD, p.path("times/"+tc.name), []unix.Timespec{
			{Sec: at.Unix(), Nsec: int64(at.Nanosecond())}, {Sec: tc.t.Unix(), Nsec: int64(tc.t.Nanosecond())}}, 0))
	}

	// Small inline-capable files in one place (60 bytes is the i_block limit).
	p.mkdir("inline", 0o755)
	for _, n := range []int{1, 59, 60, 61, 120, 200} {
		p.write(fmt.Sprintf("inline/f%d", n), Pattern(uint32(400+n), n))
	}
	p.mkdir("inline/subdir", 0o755)
	p.write("inline/subdir/x", []byte("x"))
	// Entries beyond i_block's 56 bytes spill into the system.data xattr.
	p.mkdir("inline/spill", 0o755)
	for i := 0; i < 5; i++ {
		p.write(fmt.Sprintf("inline/spill/name-%07d", i), []byte{byte(i)})
	}
}

// kernelOnly is what only root can make: device nodes, foreign owners, xattrs.
func (p *populator) kernelOnly() {
	p.mkdir("dev", 0o755)
	p.check("mknod", unix.Mknod(p.path("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	p.check("mknod", unix.Mknod(p.path("dev/sda1"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
	p.check("mknod", unix.Mknod(p.path("dev/bignum"), unix.S_IFCHR|0o600, int(unix.Mkdev(300, 70000))))
	p.check("mknod", unix.Mknod(p.path("dev/fifo"), unix.S_IFIFO|0o644, 0))
	p.check("mknod", unix.Mknod(p.path("dev/sock"), unix.S_IFSOCK|0o755, 0))

	p.mkdir("own", 0o755)
	p.write("own/u32", []byte("owned\n"))
	p.check("lchown", os.Lchown(p.path("own/u32"), 100000, 4000000000))
	p.check("symlink", os.Symlink("u32", p.path("own/link")))
	p.check("lchown", os.Lchown(p.path("own/link"), 70000, 70001))

	p.mkdir("xattr", 0o755)
	p.write("xattr/ns", []byte("x"))
	p.setx("xattr/ns", "user.u", []byte("user value"))
	p.setx("xattr/ns", "user.empty", nil)
	p.setx("xattr/ns", "trusted.t", []byte("trusted value"))
	p.setx("xattr/ns", "security.s", []byte("security value"))
	p.write("xattr/many", []byte("x"))
	for i := 0; i < 12; i++ {
		p.setx("xattr/many", fmt.Sprintf("user.attr%02d", i), Pattern(uint32(100+i), 40))
	}
	for _, n := range []string{"xattr/shared1", "xattr/shared2"} {
		p.write(n, []byte(n))
		for i := 0; i < 6; i++ {
			p.setx(n, fmt.Sprintf("user.shared%d", i), Pattern(uint32(200+i), 60))
		}
	}
	p.mkdir("xattr/dir", 0o755)
	p.setx("xattr/dir", "user.ondir", []byte("dir value"))
	p.check("symlink", os.Symlink("../tiny", p.path("xattr/link")))
	p.check("lsetxattr", unix.Lsetxattr(p.path("xattr/link"), "trusted.onlink", []byte("link value"), 0))
	// Values larger than a block only fit with ea_inode; elsewhere the
	// kernel refuses, which is fine.
	p.write("xattr/bigval", []byte("x"))
	if err := unix.Setxattr(p.path("xattr/bigval"), "user.big", Pattern(300, 700), 0); err != nil && !isNoSpace(err) {
		p.check("setxattr big", err)
	}
	if err := unix.Setxattr(p.path("xattr/bigval"), "user.huge", Pattern(301, 6000), 0); err != nil && !isNoSpace(err) {
		p.check("setxattr huge", err)
	}

	p.mkdir("acl", 0o755)
	p.write("acl/file", []byte("acl\n"))
	acl := posixACL([][3]uint32{{1, 6, 0}, {2, 4, 1000}, {4, 4, 0}, {0x10, 4, 0}, {0x20, 0, 0}})
	p.setx("acl/file", "system.posix_acl_access", acl)
	p.mkdir("acl/dir", 0o755)
	p.setx("acl/dir", "system.posix_acl_default", posixACL([][3]uint32{{1, 7, 0}, {4, 5, 0}, {8, 5, 2000}, {0x10, 5, 0}, {0x20, 5, 0}}))

}

func (p *populator) setx(rel, name string, val []byte) {
	p.check("setxattr "+rel+" "+name, unix.Setxattr(p.path(rel), name, val, 0))
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ERANGE)
}

// posixACL encodes entries (tag, perm, id) in the VFS xattr format (version 2).
func posixACL(ents [][3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		id := e[2]
		if e[0] != 2 && e[0] != 8 {
			id = 0xFFFFFFFF
		}
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

func isExtents(v Variant) bool {
	return !hasOpt(v, "^extent") && !hasOpt(v, "ext2") && !hasOpt(v, "ext3")
}

func hasOpt(v Variant, opt string) bool {
	for _, a := range v.Mkfs {
		for _, o := range strings.Split(a, ",") {
			if o == opt {
				return true
			}
		}
	}
	return false
}
