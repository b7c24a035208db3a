package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

// requireFUSE skips t unless it can mount FUSE and loop devices.
func requireFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fusefs: mount tests need root (kernel loop mounts to compare against; CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("fusefs: /dev/fuse unavailable: %v", err)
	}
}

// mounted reports whether mnt is a mount point in /proc/self/mountinfo,
// and returns its line.
func mounted(t testing.TB, mnt string) (string, bool) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == mnt {
			return sc.Text(), true
		}
	}
	return "", false
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space...).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountFUSE serves fsys at a fresh directory until the test ends. Cleanup
// unmounts, falling back to lazy unmounts, and checks nothing is left.
func mountFUSE(t testing.TB, fsys *ext4.FS, opts Options) (string, *Server) {
	t.Helper()
	// Not t.TempDir: other users (ACL test) must be able to reach it.
	mnt, err := os.MkdirTemp("", "chestfs-fuse-")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Mount(fsys, mnt, opts)
	if err != nil {
		os.Remove(mnt)
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
			exec.Command("umount", "-l", mnt).Run()
			select {
			case <-srv.done:
			case <-time.After(20 * time.Second):
				t.Errorf("server did not stop after lazy unmount")
			}
		}
		if line, ok := mounted(t, mnt); ok {
			t.Errorf("still mounted: %s", line)
		}
		os.Remove(mnt)
	})
	return mnt, srv
}

func kernelAndFUSE(t *testing.T, variant string) (kernel, fuseMnt string, fsys *ext4.FS) {
	t.Helper()
	fsys, img := openImage(t, variant)
	kernel = img.Mount(t)
	fuseMnt, _ = mountFUSE(t, fsys, Options{FsName: img.Path})
	return kernel, fuseMnt, fsys
}

func TestMountInfo(t *testing.T) {
	requireFUSE(t)
	fsys, img := openImage(t, "default1k")
	mnt, srv := mountFUSE(t, fsys, Options{FsName: img.Path})
	if os.Geteuid() == 0 {
		// Root may raise the mount's readahead window.
		var st unix.Stat_t
		if err := unix.Stat(mnt, &st); err != nil {
			t.Fatal(err)
		}
		ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
		if err != nil || strings.TrimSpace(string(ra)) != fmt.Sprint(readAheadKB) {
			t.Errorf("read_ahead_kb %q (%v), want %d", ra, err, readAheadKB)
		}
	}
	if srv.Mountpoint() != mnt {
		t.Fatalf("Mountpoint %q want %q", srv.Mountpoint(), mnt)
	}
	line, ok := mounted(t, mnt)
	if !ok {
		t.Fatalf("%s not in mountinfo", mnt)
	}
	// ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNTOPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
	pre, post, _ := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !strings.HasPrefix(f[5], "ro,") || len(g) < 3 || g[0] != "fuse.chestfs" || unescapeMountinfo(g[1]) != img.Path ||
		!strings.Contains(g[2], "default_permissions") || !strings.Contains(g[2], "max_read=1048576") {
		t.Fatalf("mountinfo: %s", line)
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil || st.Ino != ext4.RootIno {
		t.Fatalf("root st_ino %d (%v), want 2", st.Ino, err)
	}
}

// The TestKernel* tests check that the FUSE mount shows exactly what the
// kernel's own ext4 driver shows for the same image: every path, mode, id,
// size, link count, inode number, st_blocks, rdev, all four timestamps,
// symlink targets, xattrs (incl. POSIX ACLs), content digests, d_ino of
// directory entries (incl. "." and ".."), statfs and inode flags. Nothing is
// ignored: neither mount is ever written, so even atime agrees. One test per
// image variant keeps each well under a minute on a loaded machine.
func TestKernelDefault4k(t *testing.T)      { compareVariant(t, "default4k") }
func TestKernelDefault1k(t *testing.T)      { compareVariant(t, "default1k") }
func TestKernelInline(t *testing.T)         { compareVariant(t, "inline") }
func TestKernelNocsum32(t *testing.T)       { compareVariant(t, "nocsum32") }
func TestKernelExt3(t *testing.T)           { compareVariant(t, "ext3") }
func TestKernelExt2NoFiletype(t *testing.T) { compareVariant(t, "ext2nofiletype") }
func TestKernelLegacyHash2k(t *testing.T)   { compareVariant(t, "legacyhash2k") }
func TestKernelUnsigned(t *testing.T)       { compareVariant(t, "unsigned") }
func TestKernelBigalloc(t *testing.T)       { compareVariant(t, "bigalloc") }
func TestKernelMetaBG(t *testing.T)         { compareVariant(t, "metabg") }
func TestKernelEAInode(t *testing.T)        { compareVariant(t, "eainode") }
func TestKernelLargeDir(t *testing.T)       { compareVariant(t, "largedir") }

// snapshot is fstree.Snapshot of root, except that with skipBig the large
// directory contributes only big/target: default4k's 20000 hard links take
// the kernel alone half a minute to hash on a loaded machine. The caller
// compares "." and the big directory itself with statx, and TestLargeDir
// checks every name and inode number in it.
func snapshot(t *testing.T, root string, skipBig bool) fstree.Tree {
	t.Helper()
	if !skipBig {
		tree, err := fstree.Snapshot(root)
		if err != nil {
			t.Fatalf("snapshot %s: %v", root, err)
		}
		return tree
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var tops []string
	for _, e := range ents {
		if e.Name() != testimg.LargeDirPath {
			tops = append(tops, e.Name())
		}
	}
	tops = append(tops, testimg.LargeDirPath+"/target")
	tree := fstree.Tree{}
	for _, top := range tops {
		sub, err := fstree.Snapshot(filepath.Join(root, top))
		if err != nil {
			t.Fatalf("snapshot %s: %v", top, err)
		}
		for p, e := range sub {
			e.Path = path.Join(top, p)
			tree[e.Path] = e
		}
	}
	return tree
}

// statxEqual compares what statx reports for a and b, except the device.
func statxEqual(t *testing.T, a, b string) {
	t.Helper()
	get := func(p string) unix.Statx_t {
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
			t.Fatal(err)
		}
		sx.Dev_major, sx.Dev_minor, sx.Mnt_id = 0, 0, 0
		// Which attribute bits a filesystem supports differs by driver.
		sx.Attributes, sx.Attributes_mask = 0, 0
		return sx
	}
	if x, y := get(a), get(b); x != y {
		t.Fatalf("statx differs:\n%s: %+v\n%s: %+v", a, x, b, y)
	}
}

func compareVariant(t *testing.T, name string) {
	requireFUSE(t)
	start := time.Now()
	kernel, mnt, _ := kernelAndFUSE(t, name)
	t.Logf("image built and mounted in %v", time.Since(start))
	v, _ := testimg.Lookup(name)
	skipBig := v.LargeDir > 5000
	start = time.Now()
	want := snapshot(t, kernel, skipBig)
	t.Logf("kernel snapshot: %d paths in %v", len(want), time.Since(start))
	start = time.Now()
	got := snapshot(t, mnt, skipBig)
	t.Logf("FUSE snapshot: %d paths in %v", len(got), time.Since(start))
	for _, p := range []string{".", testimg.LargeDirPath} {
		statxEqual(t, filepath.Join(kernel, p), filepath.Join(mnt, p))
	}
	if len(want) < 50 {
		t.Fatalf("kernel view has only %d paths", len(want))
	}
	if d := fstree.Compare(want, got, fstree.Options{}); len(d) > 0 {
		t.Fatalf("%d differences:\n%s", len(d), strings.Join(d, "\n"))
	}
	for _, dir := range []string{".", testimg.LargeDirPath, "dirs/gaps", "dirs/a/b", "inline"} {
		w, err := direntInos(filepath.Join(kernel, dir))
		if err != nil {
			t.Fatal(err)
		}
		g, err := direntInos(filepath.Join(mnt, dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(w) != len(g) {
			t.Fatalf("%s: %d dirents via FUSE, %d via kernel", dir, len(g), len(w))
		}
		for n, ino := range w {
			if g[n] != ino {
				t.Errorf("%s/%s: d_ino %d via FUSE, %d via kernel", dir, n, g[n], ino)
				break
			}
		}
	}
	var ks, fs unix.Statfs_t
	if err := unix.Statfs(kernel, &ks); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(mnt, &fs); err != nil {
		t.Fatal(err)
	}
	if ks.Blocks != fs.Blocks || ks.Bfree != fs.Bfree || ks.Bavail != fs.Bavail || ks.Files != fs.Files ||
		ks.Ffree != fs.Ffree || ks.Bsize != fs.Bsize || ks.Namelen != fs.Namelen || ks.Frsize != fs.Frsize {
		t.Fatalf("statfs via FUSE %+v\nvia kernel %+v", fs, ks)
	}
	// lsattr's view (FS_IOC_GETFLAGS) of some files and directories.
	for _, p := range []string{".", "tiny", "bigfile", "dirs", testimg.LargeDirPath, "inline/f59"} {
		kf, kerr := getFlags(filepath.Join(kernel, p))
		ff, ferr := getFlags(filepath.Join(mnt, p))
		if kerr != nil || ferr != nil || kf != ff {
			t.Fatalf("%s: flags via kernel %#x (%v), via FUSE %#x (%v)", p, kf, kerr, ff, ferr)
		}
	}
}

func getFlags(p string) (uint32, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	v, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	return v, err
}

// direntInos lists a directory with getdents64, "." and ".." included.
func direntInos(dir string) (map[string]uint64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	m := map[string]uint64{}
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return m, nil
		}
		for b := buf[:n]; len(b) >= 19; {
			ino := binary.NativeEndian.Uint64(b)
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("bad dirent reclen %d", reclen)
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if _, dup := m[string(name)]; dup {
				return nil, fmt.Errorf("%s: %q listed twice", dir, name)
			}
			m[string(name)] = ino
			b = b[reclen:]
		}
	}
}

// TestReadOnly tries every kind of write through the mount: all fail with
// EROFS and the tree is unchanged afterwards.
func TestReadOnly(t *testing.T) {
	requireFUSE(t)
	fsys, img := openImage(t, "default1k")
	mnt, _ := mountFUSE(t, fsys, Options{FsName: img.Path})
	// The paths the writes aim at, and the root's listing.
	state := func() (fstree.Tree, []string) {
		tree := fstree.Tree{}
		for _, top := range []string{"tiny", "dirs", "xattr"} {
			sub, err := fstree.Snapshot(filepath.Join(mnt, top))
			if err != nil {
				t.Fatal(err)
			}
			for p, e := range sub {
				e.Path = path.Join(top, p)
				tree[e.Path] = e
			}
		}
		ents, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return tree, names
	}
	before, beforeNames := state()
	p := func(s string) string { return filepath.Join(mnt, s) }
	openErr := func(name string, flag int) error {
		f, err := os.OpenFile(p(name), flag, 0o644)
		if err == nil {
			f.Close()
		}
		return err
	}
	ops := map[string]error{
		"create":      openErr("newfile", os.O_CREATE|os.O_WRONLY),
		"open-wronly": openErr("tiny", os.O_WRONLY),
		"open-rdwr":   openErr("tiny", os.O_RDWR),
		"open-trunc":  openErr("tiny", os.O_RDONLY|os.O_TRUNC),
		"append":      openErr("tiny", os.O_WRONLY|os.O_APPEND),
		"unlink":      os.Remove(p("tiny")),
		"rmdir":       os.Remove(p("dirs/empty")),
		"mkdir":       os.Mkdir(p("newdir"), 0o755),
		"rename":      os.Rename(p("tiny"), p("tiny2")),
		"link":        os.Link(p("tiny"), p("tiny3")),
		"symlink":     os.Symlink("tiny", p("sl")),
		"mknod":       unix.Mknod(p("fifo"), unix.S_IFIFO|0o644, 0),
		"chmod":       os.Chmod(p("tiny"), 0o777),
		"chown":       os.Lchown(p("tiny"), 1234, 1234),
		"truncate":    os.Truncate(p("tiny"), 0),
		"utimes":      os.Chtimes(p("tiny"), time.Now(), time.Now()),
		"setxattr":    unix.Setxattr(p("tiny"), "user.new", []byte("v"), 0),
		"removexattr": unix.Removexattr(p("xattr/ns"), "user.u"),
		"setacl":      unix.Setxattr(p("tiny"), "system.posix_acl_access", nil, 0),
	}
	for op, err := range ops {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", op, err)
		}
	}
	if err := unix.Access(p("tiny"), unix.W_OK); !errors.Is(err, syscall.EROFS) {
		t.Errorf("access(W_OK): %v, want EROFS", err)
	}
	after, afterNames := state()
	if d := fstree.Compare(before, after, fstree.Options{}); len(d) > 0 {
		t.Fatalf("tree changed:\n%s", strings.Join(d, "\n"))
	}
	if strings.Join(beforeNames, "/") != strings.Join(afterNames, "/") {
		t.Fatalf("root listing changed: %q -> %q", beforeNames, afterNames)
	}
}

// TestConcurrentReads has 16 readers fetch random ranges of several files
// (sparse, fragmented, unwritten, far) and checks every byte against the
// kernel's mount. Page cache is dropped as they go, so reads reach the
// server concurrently.
func TestConcurrentReads(t *testing.T) {
	requireFUSE(t)
	kernel, mnt, _ := kernelAndFUSE(t, "default4k")
	files := []string{"bigfile", "frag", "sparse", "holestart", "far", "medium", "unwritten", "inline/f200"}
	type pair struct {
		k, f *os.File
		size int64
	}
	var ps []pair
	for _, n := range files {
		k, err := os.Open(filepath.Join(kernel, n))
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		f, err := os.Open(filepath.Join(mnt, n))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, err := k.Stat()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pair{k, f, st.Size()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			kb, fb := make([]byte, 512<<10), make([]byte, 512<<10)
			for i := 0; i < 60 && ctx.Err() == nil; i++ {
				p := ps[rng.IntN(len(ps))]
				off := rng.Int64N(p.size + 1)
				n := rng.IntN(len(kb)) + 1
				kn, kerr := p.k.ReadAt(kb[:n], off)
				fn, ferr := p.f.ReadAt(fb[:n], off)
				if kn != fn || !bytes.Equal(kb[:kn], fb[:fn]) || (kerr == nil) != (ferr == nil) {
					errs <- fmt.Errorf("%s [%d +%d): kernel %d bytes (%v), fuse %d bytes (%v), equal=%v",
						p.f.Name(), off, n, kn, kerr, fn, ferr, bytes.Equal(kb[:kn], fb[:fn]))
					return
				}
				if kerr != nil && kerr != io.EOF {
					errs <- kerr
					return
				}
				if i%10 == 9 {
					unix.Fadvise(int(p.f.Fd()), 0, 0, unix.FADV_DONTNEED)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ctx.Err() != nil {
		t.Fatal("readers timed out")
	}
}

// TestLargeDir lists the 20000-entry directory through the mount, twice
// (the second time partly from the kernel's directory cache), and checks
// every name and inode number.
func TestLargeDir(t *testing.T) {
	requireFUSE(t)
	kernel, mnt, fsys := kernelAndFUSE(t, "default4k")
	dir := filepath.Join(mnt, testimg.LargeDirPath)
	bigIno, err := fsys.Lookup(ext4.RootIno, testimg.LargeDirPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fsys.ReadDir(bigIno)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 20000 {
		t.Fatalf("ext4 lists %d entries", len(want))
	}
	for round := 0; round < 2; round++ {
		got, err := direntInos(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want)+2 || got["."] != bigIno || got[".."] != ext4.RootIno {
			t.Fatalf("round %d: %d entries (want %d), . = %d, .. = %d", round, len(got), len(want)+2, got["."], got[".."])
		}
		for _, e := range want {
			if got[e.Name] != e.Ino {
				t.Fatalf("round %d: %s: ino %d want %d", round, e.Name, got[e.Name], e.Ino)
			}
		}
	}
	// ls -l style: names plus lstat of each, as the kernel reports them.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents[:300] {
		var f, k unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, e.Name()), &f); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(kernel, testimg.LargeDirPath, e.Name()), &k); err != nil {
			t.Fatal(err)
		}
		if f.Ino != k.Ino || f.Nlink != k.Nlink || f.Mode != k.Mode || f.Size != k.Size || f.Mtim != k.Mtim {
			t.Fatalf("%s: lstat via FUSE %+v\nvia kernel %+v", e.Name(), f, k)
		}
	}
}

// TestNegativeLookup checks that missing names say ENOENT (also when
// answered from the kernel's negative dentry cache) and that readlink works.
func TestNegativeLookup(t *testing.T) {
	requireFUSE(t)
	fsys, img := openImage(t, "default1k")
	mnt, srv := mountFUSE(t, fsys, Options{FsName: img.Path})
	if _, err := os.Lstat(filepath.Join(mnt, "dirs")); err != nil {
		t.Fatal(err)
	}
	before := srv.raw.lookups.Load()
	for i := 0; i < 3; i++ {
		if _, err := os.Lstat(filepath.Join(mnt, "dirs/nope")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("missing file: %v", err)
		}
	}
	// The kernel asked once and then answered from its negative dentry.
	if n := srv.raw.lookups.Load() - before; n != 1 {
		t.Fatalf("%d LOOKUPs for three stats of a missing name, want 1", n)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "tiny/sub")); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("path through a file: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(mnt, "sym/verylong")); err != nil || target != strings.Repeat("L", 900) {
		t.Fatalf("readlink: %d bytes, %v", len(target), err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "sym/short")); err != nil || string(b) != "hello\n" {
		t.Fatalf("through symlink: %q %v", b, err)
	}
}

// TestACLEnforced checks that the kernel applies the POSIX ACL served from
// the xattr: acl/file is mode 0640-ish with a user:1000:r-- entry, so uid
// 1000 may read it and uid 1001 may not.
func TestACLEnforced(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed")
	}
	fsys, img := openImage(t, "default1k")
	mnt, _ := mountFUSE(t, fsys, Options{FsName: img.Path, AllowOther: true})
	run := func(uid int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid),
			"--clear-groups", "cat", filepath.Join(mnt, "acl/file"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if string(out) != "acl\n" {
			return fmt.Errorf("read %q", out)
		}
		return nil
	}
	if err := run(1000); err != nil {
		t.Fatalf("uid 1000 (granted by ACL): %v", err)
	}
	if err := run(1001); err == nil {
		t.Fatalf("uid 1001 (not in ACL) could read")
	}
}

// TestUnmountWhileIdle mounts and unmounts repeatedly; Wait returns and
// nothing stays in mountinfo.
func TestUnmountWhileIdle(t *testing.T) {
	requireFUSE(t)
	fsys, _ := openImage(t, "default1k")
	for i := 0; i < 3; i++ {
		mnt, err := os.MkdirTemp("", "chestfs-fuse-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(mnt)
		srv, err := Mount(fsys, mnt, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.ReadFile(filepath.Join(mnt, "medium")); err != nil {
			t.Error(err)
		}
		if err := srv.Unmount(); err != nil {
			exec.Command("umount", "-l", mnt).Run()
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Wait did not return after Unmount")
		}
		if line, ok := mounted(t, mnt); ok {
			t.Fatalf("still mounted: %s", line)
		}
	}
	// A missing mount point is a clear error.
	if _, err := Mount(fsys, filepath.Join(t.TempDir(), "absent"), Options{}); err == nil {
		t.Fatal("mount on a missing directory succeeded")
	}
}

// TestFusermount mounts through the fusermount3 helper, the path every
// unprivileged user takes, with the same options.
func TestFusermount(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed")
	}
	directMount = false
	t.Cleanup(func() { directMount = true })
	fsys, img := openImage(t, "default1k")
	mnt, _ := mountFUSE(t, fsys, Options{FsName: img.Path})
	line, ok := mounted(t, mnt)
	if !ok {
		t.Fatalf("%s not mounted", mnt)
	}
	pre, post, _ := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !strings.HasPrefix(f[5], "ro,") || g[0] != "fuse.chestfs" || unescapeMountinfo(g[1]) != img.Path ||
		!strings.Contains(g[2], "default_permissions") {
		t.Fatalf("mountinfo: %s", line)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "tiny")); err != nil || string(b) != "hello\n" {
		t.Fatalf("read: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write: %v, want EROFS", err)
	}
}

const childEnv = "CHESTFS_FUSEFS_USER_CHILD"

// userMountChild runs in a copy of the test binary as an unprivileged user
// (see TestUserMount): mount through fusermount3, read, unmount.
func userMountChild() int {
	img, mnt := os.Getenv("CHILD_IMAGE"), os.Getenv("CHILD_MNT")
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		return 1
	}
	f, err := os.Open(img)
	if err != nil {
		return fail("open: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail("stat: %v", err)
	}
	fsys, err := ext4.Open(f, st.Size())
	if err != nil {
		return fail("ext4: %v", err)
	}
	srv, err := Mount(fsys, mnt, Options{FsName: img})
	if err != nil {
		return fail("mount as uid %d: %v", os.Getuid(), err)
	}
	b, rerr := os.ReadFile(filepath.Join(mnt, "tiny"))
	info, _ := os.ReadFile("/proc/self/mountinfo")
	if err := srv.Unmount(); err != nil {
		return fail("unmount: %v", err)
	}
	if rerr != nil || string(b) != "hello\n" {
		return fail("read tiny: %q %v", b, rerr)
	}
	if !bytes.Contains(info, []byte(" "+mnt+" ro,")) || !bytes.Contains(info, []byte("fuse.chestfs")) {
		return fail("mountinfo lacks a read-only fuse.chestfs mount at %s:\n%s", mnt, info)
	}
	fmt.Println("child ok")
	return 0
}

// TestUserMount mounts as an unprivileged user, which goes through the
// fusermount3 helper instead of mount(2).
func TestUserMount(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed")
	}
	// fusermount3 opens /dev/fuse with the caller's file system uid: a
	// container is given the device read-write; this host may not be.
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", perm|0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", perm) })
	}
	_, img := openImage(t, "default1k")
	// Everything the child needs must be reachable by uid 1000.
	dir, err := os.MkdirTemp("", "chestfs-usermount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		if _, ok := mounted(t, mnt); ok {
			t.Errorf("child left %s mounted", mnt)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	imgCopy, bin := filepath.Join(dir, "img"), filepath.Join(dir, "fusefs.test")
	copyFile(img.Path, imgCopy, 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(exe, bin, 0o755)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_IMAGE="+imgCopy, "CHILD_MNT="+mnt)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("child ok")) {
		t.Fatalf("unprivileged mount: %v\n%s", err, out)
	}
}

// BenchmarkMountRead reads a large file sequentially through the mount,
// dropping the page cache first so every byte crosses FUSE.
func BenchmarkMountRead(b *testing.B) {
	requireFUSE(b)
	fsys, img := openImage(b, "default4k")
	mnt, _ := mountFUSE(b, fsys, Options{FsName: img.Path})
	p := filepath.Join(mnt, "bigfile")
	buf := make([]byte, 1<<20)
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
