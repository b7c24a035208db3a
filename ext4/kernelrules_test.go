package ext4_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
