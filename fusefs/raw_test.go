package fusefs

import (
	"bytes"
	"encoding/binary"
	"os"
	"sort"
	"syscall"
	"testing"
	"unsafe"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(userMountChild())
	}
	code := m.Run()
	testimg.Cleanup()
	os.Exit(code)
}

// openImage parses a testimg variant with the ext4 package.
func openImage(t testing.TB, name string) (*ext4.FS, testimg.Image) {
	t.Helper()
	v, ok := testimg.Lookup(name)
	if !ok {
		t.Fatalf("no testimg variant %q", name)
	}
	img := testimg.Build(t, v)
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := ext4.Open(f, st.Size())
	if err != nil {
		t.Fatalf("ext4.Open %s: %v", img.Path, err)
	}
	return fsys, img
}

type rawEntry struct {
	name string
	ino  uint64
	off  uint64
	typ  uint32
	node uint64 // READDIRPLUS only
}

// parseDirents decodes a READDIR(PLUS) reply: (EntryOut if plus) then
// fuse_dirent {ino, off, namelen, type, name}, padded to 8 bytes.
func parseDirents(t *testing.T, b []byte, plus bool) []rawEntry {
	t.Helper()
	eoSize := int(unsafe.Sizeof(fuse.EntryOut{}))
	var out []rawEntry
	for len(b) > 0 {
		var e rawEntry
		if plus {
			if len(b) < eoSize {
				t.Fatalf("short EntryOut")
			}
			e.node = binary.NativeEndian.Uint64(b)
			b = b[eoSize:]
		}
		if len(b) < 24 {
			t.Fatalf("short dirent")
		}
		e.ino = binary.NativeEndian.Uint64(b)
		e.off = binary.NativeEndian.Uint64(b[8:])
		nl := int(binary.NativeEndian.Uint32(b[16:]))
		e.typ = binary.NativeEndian.Uint32(b[20:])
		if 24+nl > len(b) {
			t.Fatalf("dirent name overruns buffer")
		}
		e.name = string(b[24 : 24+nl])
		rec := (24 + nl + 7) &^ 7
		if rec > len(b) {
			rec = len(b)
		}
		b = b[rec:]
		out = append(out, e)
	}
	return out
}

// listDir reads a whole directory through the raw READDIR(PLUS) handlers
// with a small buffer, resuming at each reply's last offset.
func listDir(t *testing.T, r *rawFS, node uint64, plus bool) []rawEntry {
	t.Helper()
	var oo fuse.OpenOut
	in := &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}}
	if st := r.OpenDir(nil, in, &oo); !st.Ok() {
		t.Fatalf("opendir %d: %v", node, st)
	}
	defer r.ReleaseDir(&fuse.ReleaseIn{Fh: oo.Fh})
	return readDirAll(t, r, node, oo.Fh, plus)
}

// readDirAll reads a whole directory through handle fh (0: none, the node
// names the directory) as listDir does.
func readDirAll(t *testing.T, r *rawFS, node, fh uint64, plus bool) []rawEntry {
	t.Helper()
	var all []rawEntry
	off := uint64(0)
	for {
		buf := make([]byte, 1024)
		l := fuse.NewDirEntryList(buf, off)
		rin := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh, Offset: off, Size: uint32(len(buf))}
		var st fuse.Status
		if plus {
			st = r.ReadDirPlus(nil, rin, l)
		} else {
			st = r.ReadDir(nil, rin, l)
		}
		if !st.Ok() {
			t.Fatalf("readdir: %v", st)
		}
		ents := parseDirents(t, l.Bytes(), plus)
		if len(ents) == 0 {
			return all
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].off
	}
}

func TestRawReadDir(t *testing.T) {
	fsys, _ := openImage(t, "default1k")
	r := newRawFS(fsys)
	bigIno, err := fsys.Lookup(ext4.RootIno, testimg.LargeDirPath)
	if err != nil {
		t.Fatal(err)
	}
	// READDIRPLUS sends a node's attributes only while the kernel does not
	// hold it: once per inode (hard links share one), again after FORGET.
	sent := map[uint64]bool{}
	for _, plus := range []bool{false, true} {
		for _, dir := range []struct {
			node, ino, parent uint64
		}{{fuse.FUSE_ROOT_ID, ext4.RootIno, ext4.RootIno}, {bigIno, bigIno, ext4.RootIno}} {
			got := listDir(t, r, dir.node, plus)
			want, err := fsys.ReadDir(dir.ino)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want)+2 {
				t.Fatalf("plus=%v dir %d: %d entries, want %d", plus, dir.ino, len(got), len(want)+2)
			}
			if got[0].name != "." || got[0].ino != dir.ino || got[1].name != ".." || got[1].ino != dir.parent {
				t.Fatalf("dot entries %+v %+v", got[0], got[1])
			}
			for i, e := range got {
				if e.off != uint64(i+1) {
					t.Fatalf("entry %d offset %d", i, e.off)
				}
				if i < 2 {
					if e.node != 0 {
						t.Fatalf("%q carries node %d", e.name, e.node)
					}
					continue
				}
				w := want[i-2]
				if e.name != w.Name || e.ino != w.Ino || e.typ != uint32(w.Type) {
					t.Fatalf("entry %d: got %+v want %+v", i, e, w)
				}
				if plus {
					want := nodeOf(w.Ino)
					if sent[w.Ino] {
						want = 0
					}
					if e.node != want {
						t.Fatalf("entry %q: node %d want %d", e.name, e.node, want)
					}
					sent[w.Ino] = true
				}
			}
		}
	}
	// The kernel forgets the nodes: the next listing carries them again.
	for ino := range sent {
		r.Forget(nodeOf(ino), 1<<40)
	}
	again := map[uint64]bool{}
	for i, e := range listDir(t, r, bigIno, true) {
		if i >= 2 && !again[e.ino] && e.node != nodeOf(e.ino) {
			t.Fatalf("after FORGET: entry %q carries node %d", e.name, e.node)
		}
		again[e.ino] = true
	}
	// A released or unknown handle is refused.
	l := fuse.NewDirEntryList(make([]byte, 512), 0)
	if st := r.ReadDir(nil, &fuse.ReadIn{Fh: 9999}, l); st != fuse.EBADF {
		t.Fatalf("unknown handle: %v", st)
	}
}

// TestRawReadDirNoOpendir: where the kernel supports it, OPENDIR says
// ENOSYS and READDIR comes with handle 0; listings come from the cache,
// which keeps within its bound but always holds the directory being read.
func TestRawReadDirNoOpendir(t *testing.T) {
	fsys, _ := openImage(t, "default1k")
	r := newRawFS(fsys)
	r.noOpendir.Store(true)
	var oo fuse.OpenOut
	if st := r.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}}, &oo); st != fuse.ENOSYS {
		t.Fatalf("opendir: %v, want ENOSYS", st)
	}
	if st := r.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, Flags: syscall.O_WRONLY}, &oo); st != fuse.EROFS {
		t.Fatalf("opendir for writing: %v, want EROFS", st)
	}
	bigIno, err := fsys.Lookup(ext4.RootIno, testimg.LargeDirPath)
	if err != nil {
		t.Fatal(err)
	}
	rootEnts, err := fsys.ReadDir(ext4.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	r.listed.max = len(rootEnts) + 1 // the root fits, the large directory alone does not
	for round := 0; round < 2; round++ {
		for _, d := range []struct{ node, ino uint64 }{{fuse.FUSE_ROOT_ID, ext4.RootIno}, {bigIno, bigIno}} {
			want, err := fsys.ReadDir(d.ino)
			if err != nil {
				t.Fatal(err)
			}
			got := readDirAll(t, r, d.node, 0, round == 1)
			if len(got) != len(want)+2 || got[0].ino != d.ino || got[1].ino != ext4.RootIno {
				t.Fatalf("dir %d: %d entries, want %d", d.ino, len(got), len(want)+2)
			}
			for i, w := range want {
				if e := got[i+2]; e.name != w.Name || e.ino != w.Ino || e.off != uint64(i+3) {
					t.Fatalf("dir %d entry %d: got %+v want %+v", d.ino, i, e, w)
				}
			}
			r.listed.mu.Lock()
			n, entries := r.listed.l.Len(), r.listed.entries
			r.listed.mu.Unlock()
			if n != 1 || entries != len(want) {
				t.Fatalf("after dir %d: %d listings of %d entries cached, want 1 of %d", d.ino, n, entries, len(want))
			}
		}
	}
	// A directory that cannot be listed fails, and is not kept.
	if st := r.ReadDir(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: 1 << 40}}, fuse.NewDirEntryList(make([]byte, 512), 0)); st.Ok() {
		t.Fatal("readdir of a node that does not exist succeeded")
	}
	if _, ok := r.listed.m[1<<40]; ok {
		t.Fatal("a failed listing is cached")
	}
}

func TestRawLookupGetAttr(t *testing.T) {
	fsys, img := openImage(t, "default1k")
	r := newRawFS(fsys)

	var root fuse.AttrOut
	if st := r.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}}, &root); !st.Ok() {
		t.Fatal(st)
	}
	if root.Ino != ext4.RootIno || root.Mode&syscall.S_IFMT != syscall.S_IFDIR || root.Blksize != 1024 || root.Timeout() <= 0 {
		t.Fatalf("root attr %+v", root)
	}

	var out fuse.EntryOut
	if st := r.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, "tiny", &out); !st.Ok() {
		t.Fatal(st)
	}
	ino, _ := fsys.Lookup(ext4.RootIno, "tiny")
	want, _ := fsys.Stat(ino)
	if out.NodeId != ino || out.Ino != ino || out.Size != 6 || out.Nlink != want.Nlink || out.Blocks != want.Blocks ||
		out.Mtime != uint64(want.Mtime.Unix()) || out.Mtimensec != uint32(want.Mtime.Nanosecond()) ||
		out.EntryTimeout() <= 0 || out.AttrTimeout() <= 0 {
		t.Fatalf("lookup tiny: %+v (stat %+v)", out, want)
	}

	// Negative entries are cached: OK, node 0, positive entry timeout.
	out = fuse.EntryOut{NodeId: 77}
	if st := r.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, "no-such-file", &out); !st.Ok() || out.NodeId != 0 || out.EntryTimeout() <= 0 {
		t.Fatalf("negative lookup: %v %+v", st, out)
	}
	if st := r.Lookup(nil, &fuse.InHeader{NodeId: ino}, "x", &out); st != fuse.ENOTDIR {
		t.Fatalf("lookup in a file: %v", st)
	}
	long := string(bytes.Repeat([]byte("n"), 256))
	if st := r.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, long, &out); st != fuse.Status(syscall.ENAMETOOLONG) {
		t.Fatalf("long name: %v", st)
	}

	// Negative times survive the trip through the unsigned wire fields.
	tdir, _ := fsys.Lookup(ext4.RootIno, "times")
	if st := r.Lookup(nil, &fuse.InHeader{NodeId: tdir}, "old1905", &out); !st.Ok() {
		t.Fatal(st)
	}
	// mkfs -d (the unprivileged build) keeps whole seconds only.
	if sec := int64(out.Mtime); sec >= 0 || (img.Kernel && out.Mtimensec != 123456789) {
		t.Fatalf("old1905 mtime %d.%d", sec, out.Mtimensec)
	}
}

func TestRawReadXattr(t *testing.T) {
	fsys, _ := openImage(t, "default1k")
	r := newRawFS(fsys)
	ino, err := fsys.Lookup(ext4.RootIno, "medium")
	if err != nil {
		t.Fatal(err)
	}
	var oo fuse.OpenOut
	// ENOSYS: the kernel stops sending OPEN and keeps the page cache.
	if st := r.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: ino}, Flags: syscall.O_RDONLY}, &oo); st != fuse.ENOSYS {
		t.Fatalf("open: %v %+v, want ENOSYS", st, oo)
	}
	if st := r.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: ino}, Flags: syscall.O_RDWR}, &oo); st != fuse.EROFS {
		t.Fatalf("open for writing: %v, want EROFS", st)
	}
	r.keepOpen = true
	if st := r.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: ino}, Flags: syscall.O_RDONLY}, &oo); !st.Ok() || oo.OpenFlags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Fatalf("open: %v %+v", st, oo)
	}
	whole := testimg.Pattern(2, 5000)
	for _, c := range []struct{ off, size, n int }{{0, 5000, 5000}, {100, 50, 50}, {4990, 100, 10}, {5000, 10, 0}, {9000, 10, 0}} {
		buf := make([]byte, 8192)
		res, st := r.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: ino}, Offset: uint64(c.off), Size: uint32(c.size)}, buf)
		if !st.Ok() {
			t.Fatalf("read %+v: %v", c, st)
		}
		got, _ := res.Bytes(nil)
		if len(got) != c.n || (c.n > 0 && !bytes.Equal(got, whole[c.off:c.off+c.n])) {
			t.Fatalf("read %+v: %d bytes", c, len(got))
		}
	}

	if testimg.IsRoot() {
		// Only the kernel-populated image carries xattrs.
		xd, _ := fsys.Lookup(ext4.RootIno, "xattr")
		ns, err := fsys.Lookup(xd, "ns")
		if err != nil {
			t.Fatal(err)
		}
		h := &fuse.InHeader{NodeId: ns}
		n, st := r.GetXAttr(nil, h, "user.u", nil)
		if st != fuse.ERANGE || n != uint32(len("user value")) {
			t.Fatalf("size probe: %d %v", n, st)
		}
		if _, st := r.GetXAttr(nil, h, "user.u", make([]byte, 3)); st != fuse.ERANGE {
			t.Fatalf("short buffer: %v", st)
		}
		buf := make([]byte, 64)
		n, st = r.GetXAttr(nil, h, "user.u", buf)
		if !st.Ok() || string(buf[:n]) != "user value" {
			t.Fatalf("getxattr: %q %v", buf[:n], st)
		}
		if n, st := r.GetXAttr(nil, h, "user.empty", buf); !st.Ok() || n != 0 {
			t.Fatalf("empty value: %d %v", n, st)
		}
		if _, st := r.GetXAttr(nil, h, "user.absent", buf); st != fuse.ENODATA {
			t.Fatalf("absent: %v", st)
		}
		n, st = r.ListXAttr(nil, h, nil)
		if st != fuse.ERANGE || n == 0 {
			t.Fatalf("list probe: %d %v", n, st)
		}
		lb := make([]byte, n)
		if m, st := r.ListXAttr(nil, h, lb); !st.Ok() || m != n {
			t.Fatalf("list: %d %v", m, st)
		}
		names := bytes.Split(bytes.TrimSuffix(lb, []byte{0}), []byte{0})
		var got []string
		for _, b := range names {
			got = append(got, string(b))
		}
		sort.Strings(got)
		if want := []string{"security.s", "trusted.t", "user.empty", "user.u"}; !equalStrings(got, want) {
			t.Fatalf("list: %q want %q", got, want)
		}
		// An unprivileged caller does not see trusted.*.
		n, _ = r.ListXAttr(nil, &fuse.InHeader{NodeId: ns, Caller: fuse.Caller{Owner: fuse.Owner{Uid: 1000}}}, lb)
		if bytes.Contains(lb[:n], []byte("trusted.")) {
			t.Fatalf("trusted.* listed to uid 1000: %q", lb[:n])
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRawWritesEROFS calls every mutating handler directly: the kernel's ro
// mount flag already stops most of them, this checks our own answer.
func TestRawWritesEROFS(t *testing.T) {
	fsys, _ := openImage(t, "default1k")
	r := newRawFS(fsys)
	ino, _ := fsys.Lookup(ext4.RootIno, "tiny")
	h := fuse.InHeader{NodeId: ino}
	root := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}
	var eo fuse.EntryOut
	var co fuse.CreateOut
	var ao fuse.AttrOut
	var oo fuse.OpenOut
	checks := map[string]fuse.Status{
		"setattr":       r.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: h, Valid: fuse.FATTR_MODE, Mode: 0o777}}, &ao),
		"mknod":         r.Mknod(nil, &fuse.MknodIn{InHeader: root, Mode: syscall.S_IFIFO | 0o644}, "fifo", &eo),
		"mkdir":         r.Mkdir(nil, &fuse.MkdirIn{InHeader: root, Mode: 0o755}, "d", &eo),
		"unlink":        r.Unlink(nil, &root, "tiny"),
		"rmdir":         r.Rmdir(nil, &root, "dirs"),
		"rename":        r.Rename(nil, &fuse.RenameIn{InHeader: root, Newdir: fuse.FUSE_ROOT_ID}, "tiny", "tiny2"),
		"link":          r.Link(nil, &fuse.LinkIn{InHeader: root, Oldnodeid: ino}, "tiny3", &eo),
		"symlink":       r.Symlink(nil, &root, "tiny", "sl", &eo),
		"setxattr":      r.SetXAttr(nil, &fuse.SetXAttrIn{InHeader: h}, "user.x", []byte("v")),
		"removexattr":   r.RemoveXAttr(nil, &h, "user.x"),
		"create":        r.Create(nil, &fuse.CreateIn{InHeader: root, Flags: syscall.O_WRONLY | syscall.O_CREAT}, "new", &co),
		"tmpfile":       r.Tmpfile(nil, &fuse.CreateIn{InHeader: root}, &co),
		"fallocate":     r.Fallocate(nil, &fuse.FallocateIn{InHeader: h, Length: 10}),
		"open-wronly":   r.Open(nil, &fuse.OpenIn{InHeader: h, Flags: syscall.O_WRONLY}, &oo),
		"open-rdwr":     r.Open(nil, &fuse.OpenIn{InHeader: h, Flags: syscall.O_RDWR}, &oo),
		"open-trunc":    r.Open(nil, &fuse.OpenIn{InHeader: h, Flags: syscall.O_RDONLY | syscall.O_TRUNC}, &oo),
		"opendir-write": r.OpenDir(nil, &fuse.OpenIn{InHeader: root, Flags: syscall.O_RDWR}, &oo),
	}
	_, checks["write"] = r.Write(nil, &fuse.WriteIn{InHeader: h, Size: 1}, []byte("x"))
	_, checks["writev"] = r.Writev(nil, &fuse.WriteIn{InHeader: h, Size: 1}, [][]byte{[]byte("x")})
	_, checks["copy_file_range"] = r.CopyFileRange(nil, &fuse.CopyFileRangeIn{InHeader: h, NodeIdOut: ino, Len: 1})
	checks["access-w"] = r.Access(nil, &fuse.AccessIn{InHeader: h, Mask: 2})
	for op, st := range checks {
		if st != fuse.EROFS {
			t.Errorf("%s: %v, want EROFS", op, st)
		}
	}
	// And nothing changed.
	if _, err := fsys.Lookup(ext4.RootIno, "tiny"); err != nil {
		t.Fatal(err)
	}
}

func TestRawStatfs(t *testing.T) {
	fsys, _ := openImage(t, "default1k")
	r := newRawFS(fsys)
	var out fuse.StatfsOut
	if st := r.StatFs(nil, &fuse.InHeader{NodeId: 1}, &out); !st.Ok() {
		t.Fatal(st)
	}
	s := fsys.Statfs()
	if out.Blocks != s.Blocks || out.Bfree != s.BFree || out.Bavail != s.BAvail || out.Files != s.Files ||
		out.Ffree != s.FFree || out.Bsize != 1024 || out.Frsize != 1024 || out.NameLen != 255 {
		t.Fatalf("statfs %+v, ext4 %+v", out, s)
	}
}
