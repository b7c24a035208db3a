package extract

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/chestfs/chestfs/ext4"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds an image holding a device node and a setuid-root file")
	}
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mkfs builds an ext4 image from the tree in src with mkfs.ext4 -d.
func mkfs(t *testing.T, src string, sizeMiB int) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-d", src, img, strconv.Itoa(sizeMiB)+"M")
	return img
}

func openFS(t *testing.T, img string) *ext4.FS {
	t.Helper()
	f, err := os.Open(img)
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
		t.Fatal(err)
	}
	return fsys
}

// capV2 is a VFS_CAP_REVISION_2 security.capability value granting
// CAP_NET_RAW (13) permitted and effective.
func capV2() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)
	return b
}

// privImage is an image with a setuid-root binary, a setgid directory, a
// block device 8,0 (world-writable), a file owned by 1234:1234 and, when
// the temp filesystem takes it, a file with a capability.
func privImage(t *testing.T) (img string, withCap bool) {
	t.Helper()
	src := t.TempDir()
	bin := filepath.Join(src, "suid")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bin, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(bin, 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "sgid"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "sgid"), 0o2775); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(src, "sda"), unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "sda"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(src, "owned")
	if err := os.WriteFile(owned, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	capped := filepath.Join(src, "capped")
	if err := os.WriteFile(capped, []byte("y"), 0o755); err != nil {
		t.Fatal(err)
	}
	withCap = unix.Setxattr(capped, "security.capability", capV2(), 0) == nil
	if !withCap {
		t.Log("the temp filesystem refuses security.capability: capabilities are not checked")
	}
	return mkfs(t, src, 4), withCap
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func hasCap(p string) bool {
	_, err := unix.Lgetxattr(p, "security.capability", make([]byte, 64))
	return err == nil
}

// TestDefaultsDropPrivileges: extracting as root with the zero Options
// creates no device node, no set-id bit, no capability and no foreign owner.
func TestDefaultsDropPrivileges(t *testing.T) {
	requireRoot(t)
	requireTools(t, "mkfs.ext4")
	img, withCap := privImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Tree(context.Background(), openFS(t, img), dst, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "sda")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device node created without Devices (lstat: %v)", err)
	}
	if st := lstat(t, filepath.Join(dst, "suid")); st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 || st.Mode&0o777 != 0o755 {
		t.Errorf("suid extracted with mode %o, want 0755 without set-id bits", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "sgid")); st.Mode&unix.S_ISGID != 0 {
		t.Errorf("sgid directory keeps its setgid bit: %o", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "owned")); st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
		t.Errorf("owned belongs to %d:%d without SameOwner, want the extracting user", st.Uid, st.Gid)
	}
	if st := lstat(t, filepath.Join(dst, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo not created as a FIFO: %o", st.Mode)
	}
	if withCap && hasCap(filepath.Join(dst, "capped")) {
		t.Error("security.capability written without PreserveSetID")
	}
}

// TestPreserveAll: with every option, the same image comes back as it was.
func TestPreserveAll(t *testing.T) {
	requireRoot(t)
	requireTools(t, "mkfs.ext4")
	img, withCap := privImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Tree(context.Background(), openFS(t, img), dst, Options{SameOwner: true, Devices: true, PreserveSetID: true}); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(dst, "sda")); st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(8, 0) || st.Mode&0o777 != 0o666 {
		t.Errorf("sda: mode %o rdev %x, want a 0666 block device 8,0", st.Mode, st.Rdev)
	}
	if st := lstat(t, filepath.Join(dst, "suid")); st.Mode&0o7777 != 0o4755 || st.Uid != 0 {
		t.Errorf("suid: mode %o uid %d, want 4755 root", st.Mode&0o7777, st.Uid)
	}
	if st := lstat(t, filepath.Join(dst, "sgid")); st.Mode&0o7777 != 0o2775 {
		t.Errorf("sgid: mode %o, want 2775", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "owned")); st.Uid != 1234 || st.Gid != 1234 {
		t.Errorf("owned: %d:%d, want 1234:1234", st.Uid, st.Gid)
	}
	if withCap && !hasCap(filepath.Join(dst, "capped")) {
		t.Error("security.capability lost with PreserveSetID")
	}
}

// TestEachOptionAlone: Devices alone makes the node but no set-id bit, and
// PreserveSetID alone keeps the bit but makes no node.
func TestEachOptionAlone(t *testing.T) {
	requireRoot(t)
	requireTools(t, "mkfs.ext4")
	img, _ := privImage(t)
	dst := filepath.Join(t.TempDir(), "dev")
	if _, err := Tree(context.Background(), openFS(t, img), dst, Options{Devices: true}); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(dst, "sda")); st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Errorf("Devices: sda is not a block device: %o", st.Mode)
	}
	if st := lstat(t, filepath.Join(dst, "suid")); st.Mode&unix.S_ISUID != 0 {
		t.Errorf("Devices alone kept the setuid bit: %o", st.Mode&0o7777)
	}
	dst = filepath.Join(t.TempDir(), "setid")
	if _, err := Tree(context.Background(), openFS(t, img), dst, Options{PreserveSetID: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "sda")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PreserveSetID alone created the device node (lstat: %v)", err)
	}
	if st := lstat(t, filepath.Join(dst, "suid")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("PreserveSetID: suid mode %o, want 4755", st.Mode&0o7777)
	}
}

// duBytes is the content size of the tree at root.
func duBytes(t *testing.T, root string) (int64, int) {
	t.Helper()
	var n int64
	var entries int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entries++
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, entries
}

// TestDirectoryLoop: a directory hard-linked to its own ancestor (made with
// debugfs) ends with ErrLoop after writing the tree once, not 4 GiB.
func TestDirectoryLoop(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(filepath.Join(src, "a", "f"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	img := mkfs(t, src, 4)
	run(t, "debugfs", "-w", "-R", "link a a/b/loop", img)
	dst := filepath.Join(t.TempDir(), "out")
	_, err := Tree(context.Background(), openFS(t, img), dst, Options{})
	if !errors.Is(err, ErrLoop) {
		t.Fatalf("extract of a directory loop: err %v, want ErrLoop", err)
	}
	if !strings.Contains(err.Error(), "loop") || !strings.Contains(err.Error(), filepath.Join("a", "b", "loop")) {
		t.Errorf("error does not name the looping entry: %v", err)
	}
	n, entries := duBytes(t, dst)
	if n > int64(len(big)) || entries > 10 {
		t.Errorf("a loop wrote %d bytes in %d entries; want the tree once (%d bytes)", n, entries, len(big))
	}
}

// TestTooDeep: nesting beyond MaxDepth ends with ErrTooDeep. The image is
// made by debugfs mkdir in a chain.
func TestTooDeep(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	// One directory per level: "d/d/d/..." as a debugfs command file.
	img := filepath.Join(t.TempDir(), "deep.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "5000", img, "16M")
	var cmds strings.Builder
	for i := 0; i < MaxDepth+1; i++ {
		cmds.WriteString("mkdir d\ncd d\n")
	}
	cf := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(cf, []byte(cmds.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "debugfs", "-w", "-f", cf, img)
	dst := filepath.Join(t.TempDir(), "out")
	_, err := Tree(context.Background(), openFS(t, img), dst, Options{})
	if !errors.Is(err, ErrTooDeep) {
		t.Fatalf("err %v, want ErrTooDeep", err)
	}
}
