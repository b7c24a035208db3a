package ext4_test

import (
	"math/rand"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

var reLogged = regexp.MustCompile(`FS block (\d+) logged at journal block`)

// TestJournalReplay opens images copied from a live read-write mount
// (needs_recovery set) whose journaled blocks were also wiped at home, so
// only a replay can show the last changes, and compares with the kernel's
// mount of the same damaged copy (which replays the journal itself).
func TestJournalReplay(t *testing.T) {
	testimg.RequireRoot(t)
	for _, name := range []string{"default1k", "ext3", "sidecar64m"} {
		t.Run(name, func(t *testing.T) {
			v, _ := testimg.Lookup(name)
			dirty := testimg.BuildDirty(t, v)
			raw, err := os.ReadFile(dirty)
			if err != nil {
				t.Fatal(err)
			}
			if raw[1024+0x60]&0x4 == 0 {
				t.Skip("the copy does not need recovery (journal checkpointed already)")
			}
			f0, err := openPath(t, dirty)
			if err != nil {
				t.Fatal(err)
			}
			bs := int64(f0.BlockSize())
			logged := map[int64]bool{}
			for _, m := range reLogged.FindAllStringSubmatch(debugfs(t, dirty, "logdump -a"), -1) {
				b, _ := strconv.ParseInt(m[1], 10, 64)
				logged[b] = true
			}
			// Wipe the home copies of the new directory's first block and
			// of the inode table block of its last file.
			var wiped int
			for _, cmd := range []string{"bmap /journaled 0", "imap /journaled/file-29"} {
				out := debugfs(t, dirty, cmd)
				var b int64
				if m := reNum.FindStringSubmatch(out); m != nil {
					b, _ = strconv.ParseInt(m[1], 10, 64)
				} else {
					s := strings.TrimSpace(out)
					b, _ = strconv.ParseInt(s[strings.LastIndex(s, "\n")+1:], 10, 64)
				}
				if b > 0 && logged[b] {
					clear(raw[b*bs : (b+1)*bs])
					wiped++
				}
			}
			if wiped == 0 {
				t.Skip("the new blocks are not in the journal")
			}
			if err := os.WriteFile(dirty, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			kcopy := t.TempDir() + "/kernel.img"
			if err := os.WriteFile(kcopy, raw, 0o644); err != nil {
				t.Fatal(err)
			}

			f, err := openPath(t, dirty)
			if err != nil {
				t.Fatalf("open with replay: %v", err)
			}
			got, err := fstree.FromExt4(f)
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			if e, ok := got["journaled/file-29"]; !ok || e.Size != 2900 {
				t.Fatalf("journaled/file-29 after replay: %+v", e)
			}
			if _, ok := got["medium"]; ok {
				t.Error("medium was deleted before the snapshot")
			}
			if !f.Info().JournalReplayed {
				t.Error("Info does not report the replay")
			}
			mnt := testimg.MountReplay(t, kcopy)
			want, err := fstree.Snapshot(mnt)
			if err != nil {
				t.Fatal(err)
			}
			var ks unix.Statfs_t
			if err := unix.Statfs(mnt, &ks); err != nil {
				t.Fatal(err)
			}
			if ps := f.Statfs(); ps.BFree != ks.Bfree || ps.FFree != ks.Ffree || ps.Blocks != ks.Blocks {
				t.Errorf("statfs after replay: kernel blocks %d bfree %d ffree %d, parser %+v", ks.Blocks, ks.Bfree, ks.Ffree, ps)
			}
			for _, d := range fstree.Compare(want, got, fstree.Options{}) {
				t.Error(d)
			}
			corruptReplay(t, dirty)
		})
	}
}

// corruptReplay damages the blocks that opening a needs_recovery image
// reads (journal superblock, descriptors, revoke and commit blocks) and
// checks the result is an error or a walkable filesystem, never a panic.
func corruptReplay(t *testing.T, path string) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	rec := &recordingReader{r: fh}
	if _, err := ext4.Open(rec, st.Size()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 60; i++ {
		flips := map[int64]byte{}
		for k := 1 + rng.Intn(4); k > 0; k-- {
			reg := rec.offs[rng.Intn(len(rec.offs))]
			flips[reg[0]+rng.Int63n(reg[1])] = byte(1 << rng.Intn(8))
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("damaged journal %v: panic: %v", flips, r)
				}
			}()
			if f, err := ext4.Open(&flipReader{r: fh, flips: flips}, st.Size()); err == nil {
				walkAll(f, 200)
			}
		}()
	}
}
