package ext4_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// Tests of the rules by which chestfs follows the kernel on damaged
// images: each damages a small image made by mkfs.ext4 and debugfs and
// compares with the kernel's read-only mount of the same bytes.

// smallTree writes a few files for mkfs.ext4 -d.
func smallTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "a"), []byte("hello\n"), 0o644))
	must(os.Mkdir(filepath.Join(src, "d"), 0o755))
	for i := 0; i < 20; i++ {
		must(os.WriteFile(filepath.Join(src, "d", fmt.Sprintf("f%02d", i)), []byte(strconv.Itoa(i)), 0o644))
	}
	must(os.Symlink("target-of-s", filepath.Join(src, "s")))
	return src
}

var reLogBlock = regexp.MustCompile(`Found expected sequence \d+, type (\d+) \([a-z ]+\) at block (\d+)`)

// journalLayout returns the log blocks of the descriptor and commit blocks
// of a dirty image's journal (debugfs logdump) and a function mapping a
// log block to its filesystem block.
func journalLayout(t *testing.T, img string) (desc, commit []int64, phys func(int64) int64) {
	t.Helper()
	for _, m := range reLogBlock.FindAllStringSubmatch(testimg.Debugfs(t, img, false, "logdump"), -1) {
		b, _ := strconv.ParseInt(m[2], 10, 64)
		switch m[1] {
		case "1":
			desc = append(desc, b)
		case "2":
			commit = append(commit, b)
		}
	}
	if len(desc) == 0 || len(commit) == 0 {
		t.Skip("the journal of the dirty copy holds no transaction")
	}
	phys = func(l int64) int64 {
		out := strings.TrimSpace(testimg.Debugfs(t, img, false, fmt.Sprintf("bmap <8> %d", l)))
		p, err := strconv.ParseInt(out[strings.LastIndex(out, "\n")+1:], 10, 64)
		if err != nil {
			t.Fatalf("bmap <8> %d: %q", l, out)
		}
		return p
	}
	return desc, commit, phys
}

// kernelAgrees opens p with chestfs and with the kernel (replaying the
// journal on a copy) and checks that both refuse or both read file a as
// want.
func kernelAgrees(t *testing.T, p string, replay bool, want string) {
	t.Helper()
	kcopy := testimg.CopyFile(t, p)
	f, err := openPath(t, p)
	mnt, kerr := testimg.TryMount(t, kcopy, replay)
	t.Logf("chestfs: %v; kernel: %v", err, kerr)
	switch {
	case kerr != nil && err == nil:
		t.Fatalf("the kernel refuses the image, chestfs opens it")
	case kerr == nil && err != nil:
		t.Fatalf("the kernel mounts the image, chestfs refuses it: %v", err)
	case kerr != nil:
		if !errors.Is(err, ext4.ErrCorrupt) && !errors.Is(err, ext4.ErrUnsupported) {
			t.Errorf("refusal is not ErrCorrupt or ErrUnsupported: %v", err)
		}
		prefixedOnce(t, err)
		return
	}
	kb, kerr := os.ReadFile(filepath.Join(mnt, "a"))
	if kerr != nil {
		t.Fatal(kerr)
	}
	b, err := f.IOFS().ReadFile("a")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(kb) || string(b) != want {
		t.Errorf("a reads %q, the kernel %q, want %q", b, kb, want)
	}
}

// TestJournalChecksumsKernel: jbd2 checksums (csum v3, set by the kernel's
// first read-write mount of a metadata_csum filesystem). A bad journal
// superblock checksum makes the kernel refuse the filesystem even with a
// clean journal; a damaged descriptor, commit or logged data block of a
// transaction to replay makes its recovery fail, and the mount with it.
func TestJournalChecksumsKernel(t *testing.T) {
	testimg.RequireRoot(t)
	base := testimg.Mkfs(t, smallTree(t), 8, "-b", "1024")
	dirty := testimg.DirtyCopy(t, base, func(mnt string) error {
		if err := os.WriteFile(filepath.Join(mnt, "a"), []byte("changed\n"), 0o644); err != nil {
			return err
		}
		return os.Mkdir(filepath.Join(mnt, "new"), 0o755)
	})
	// base, unmounted cleanly, now has a csum v3 journal with nothing to replay.
	if out := testimg.Debugfs(t, base, false, "logdump"); !strings.Contains(out, "Journal starts at block") {
		t.Fatalf("logdump: %s", out)
	}
	desc, commit, phys := journalLayout(t, dirty)
	jsb := phys(0) * 1024
	flip := func(src string, off int64) string {
		p := testimg.CopyFile(t, src)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		testimg.PatchFile(t, p, off, []byte{raw[off] ^ 0x55})
		return p
	}
	t.Run("intact", func(t *testing.T) { kernelAgrees(t, testimg.CopyFile(t, dirty), true, "changed\n") })
	t.Run("clean-intact", func(t *testing.T) { kernelAgrees(t, testimg.CopyFile(t, base), false, "changed\n") })
	t.Run("superblock-csum", func(t *testing.T) {
		p := flip(dirty, jsb+0xFC)
		kernelAgrees(t, p, true, "")
		_, err := openPath(t, p)
		if !errors.Is(err, ext4.ErrChecksum) || !strings.Contains(err.Error(), "journal superblock checksum") {
			t.Errorf("error %v does not name the journal superblock checksum", err)
		}
	})
	t.Run("clean-superblock-csum", func(t *testing.T) { kernelAgrees(t, flip(base, jsb+0xFC), false, "") })
	t.Run("descriptor-csum", func(t *testing.T) { kernelAgrees(t, flip(dirty, phys(desc[0])*1024+1020), true, "") })
	t.Run("data-csum", func(t *testing.T) { kernelAgrees(t, flip(dirty, phys(desc[0]+1)*1024+100), true, "") })
	t.Run("commit-csum", func(t *testing.T) { kernelAgrees(t, flip(dirty, phys(commit[0])*1024+16), true, "") })
}

// kernelNames lists dir in a kernel mount, sorted; the error of a listing
// the kernel cuts short is ignored (what was read is compared).
func kernelNames(t *testing.T, mnt, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(mnt, dir))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func chestNames(t *testing.T, f *ext4.FS, dir string) []string {
	t.Helper()
	ino, err := f.Resolve(dir, ext4.Follow)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := f.ReadDir(ino)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	return names
}

// sameListing opens p with chestfs and the kernel and compares the
// listing of dir; it returns the chestfs FS for further checks.
func sameListing(t *testing.T, p, dir string, wantN int) *ext4.FS {
	t.Helper()
	mnt, err := testimg.TryMount(t, testimg.CopyFile(t, p), false)
	if err != nil {
		t.Fatalf("the kernel refuses the image: %v", err)
	}
	f, err := openPath(t, p)
	if err != nil {
		t.Fatalf("the kernel mounts the image, chestfs refuses it: %v", err)
	}
	k, c := kernelNames(t, mnt, dir), chestNames(t, f, dir)
	if strings.Join(k, "/") != strings.Join(c, "/") {
		t.Errorf("%s: kernel lists %q, chestfs %q", dir, k, c)
	}
	if len(k) != wantN {
		t.Errorf("%s: %d names, want %d: %q", dir, len(k), wantN, k)
	}
	return f
}

// TestUnwrittenDirKernel: a directory whose extent is flagged unwritten
// is read from disk by the kernel (ext4_bread), not as zeros.
func TestUnwrittenDirKernel(t *testing.T) {
	testimg.RequireRoot(t)
	p := testimg.Mkfs(t, smallTree(t), 8, "-b", "1024")
	if out := testimg.Debugfs(t, p, false, "stat /d"); !strings.Contains(out, "(0):") {
		t.Fatalf("/d is not one extent of one block: %s", out)
	}
	// i_block[4]: ee_len of the first extent (1) and ee_start_hi (0).
	testimg.Debugfs(t, p, true, "sif /d block[4] 0x8001")
	if out := testimg.Debugfs(t, p, false, "stat /d"); !strings.Contains(out, "[u]") {
		t.Fatalf("the extent is not unwritten: %s", out)
	}
	sameListing(t, p, "d", 20)
}

// TestGroupDescChecksumKernel: the kernel mounts read-only a filesystem
// whose group descriptor fails its checksum (with a message); chestfs
// opens it, warns once, and reads the same. A descriptor placing the
// inode table outside the filesystem is refused by both.
func TestGroupDescChecksumKernel(t *testing.T) {
	testimg.RequireRoot(t)
	base := testimg.Mkfs(t, smallTree(t), 8, "-b", "1024")
	t.Run("checksum", func(t *testing.T) {
		p := testimg.CopyFile(t, base)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(2*1024 + 0x1E) // bg_checksum of group 0 (1 KiB blocks: descriptors in block 2)
		testimg.PatchFile(t, p, off, []byte{raw[off] ^ 0xFF})
		var logged bytes.Buffer
		old := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
		defer slog.SetDefault(old)
		f := sameListing(t, p, "d", 20)
		if n := strings.Count(logged.String(), "group descriptor checksums"); n != 1 {
			t.Errorf("%d warnings about group descriptor checksums, want 1: %s", n, logged.String())
		}
		if b, err := f.IOFS().ReadFile("d/f07"); err != nil || string(b) != "7" {
			t.Errorf("d/f07: %q %v", b, err)
		}
	})
	t.Run("inode-table-outside", func(t *testing.T) {
		p := testimg.CopyFile(t, base)
		testimg.Debugfs(t, p, true, "set_bg 0 inode_table 900000")
		kernelAgrees(t, p, false, "")
		if _, err := openPath(t, p); !strings.Contains(fmt.Sprint(err), "inode table for group 0") {
			t.Errorf("error does not name the inode table: %v", err)
		}
	})
}

// TestSymlinkNULKernel: a slow symlink's target ends at its first NUL, as
// the kernel reads it; a fast symlink with a NUL before i_size is refused
// by the kernel's iget (lstat fails with EUCLEAN) and by chestfs's Stat.
func TestSymlinkNULKernel(t *testing.T) {
	testimg.RequireRoot(t)
	src := smallTree(t)
	if err := os.Symlink(strings.Repeat("L", 100), filepath.Join(src, "slow")); err != nil {
		t.Fatal(err)
	}
	p := testimg.Mkfs(t, src, 8, "-b", "1024")
	// "target-of-s": i_block[1] holds "et-o"; make it "t\0-o".
	testimg.Debugfs(t, p, true, "sif /s block[1] 0x6f2d0074")
	out := strings.TrimSpace(testimg.Debugfs(t, p, false, "bmap /slow 0"))
	blk, err := strconv.ParseInt(out[strings.LastIndex(out, "\n")+1:], 10, 64)
	if err != nil {
		t.Fatalf("bmap: %q", out)
	}
	testimg.PatchFile(t, p, blk*1024+10, []byte("LLL\x00MM"))
	mnt, err := testimg.TryMount(t, testimg.CopyFile(t, p), false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := openPath(t, p)
	if err != nil {
		t.Fatal(err)
	}
	kt, kerr := os.Readlink(filepath.Join(mnt, "slow"))
	ino := lookupPath(t, f, "slow")
	ct, err := f.Readlink(ino)
	if kerr != nil || err != nil || ct != kt || ct != strings.Repeat("L", 13) {
		t.Errorf("slow symlink: kernel %q %v, chestfs %q %v", kt, kerr, ct, err)
	}
	_, kerr = os.Lstat(filepath.Join(mnt, "s"))
	s, err := f.Lookup(ext4.RootIno, "s")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Stat(s)
	if !errors.Is(kerr, syscall.EUCLEAN) || !errors.Is(err, ext4.ErrCorrupt) {
		t.Errorf("fast symlink with a NUL: kernel %v, chestfs %v", kerr, err)
	}
}

// TestDirEntriesKernel damages one entry of a directory block the ways
// __ext4_check_dir_entry names; the kernel lists the entries before it and
// skips the rest of the block, and so does chestfs; lookups agree name by
// name.
func TestDirEntriesKernel(t *testing.T) {
	testimg.RequireRoot(t)
	base := testimg.Mkfs(t, smallTree(t), 8, "-b", "1024", "-O", "^metadata_csum")
	out := strings.TrimSpace(testimg.Debugfs(t, base, false, "bmap /d 0"))
	blk, err := strconv.ParseInt(out[strings.LastIndex(out, "\n")+1:], 10, 64)
	if err != nil {
		t.Fatalf("bmap: %q", out)
	}
	raw, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	// ".", ".." and f00..f04 take 12 bytes each: f05's entry is at 84.
	e := blk*1024 + 84
	if string(raw[e+8:e+11]) != "f05" {
		t.Fatalf("entry at 84 is %q", raw[e+8:e+11])
	}
	for _, c := range []struct {
		name string
		at   int64
		b    []byte
	}{
		{"rec_len-below-minimum", 4, []byte{10, 0}},
		{"rec_len-unaligned", 4, []byte{14, 0}},
		{"name_len-beyond-rec_len", 6, []byte{16}},
		{"past-the-block", 4, []byte{0, 4}},
		{"inode-out-of-bounds", 0, []byte{0xFF, 0xFF, 0, 0}},
		{"too-close-to-end", 4, []byte{0xA8, 3}}, // 936: ends 4 bytes before the block end
	} {
		t.Run(c.name, func(t *testing.T) {
			p := testimg.CopyFile(t, base)
			testimg.PatchFile(t, p, e+c.at, c.b)
			// The lookup of every name too: ext4_search_dir follows rec_len
			// past a damaged entry, so names after it may still be found.
			var names []string
			for i := 0; i < 20; i++ {
				names = append(names, fmt.Sprintf("f%02d", i))
			}
			if k := dirAgrees(t, p, "d", names); len(k) != 5 {
				t.Errorf("the kernel lists %d names, want 5", len(k))
			}
		})
	}
}
