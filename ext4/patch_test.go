package ext4_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
)

// TestPatchInode changes owner, permissions and times of the root and a
// file in place, as chestfs pack does, and checks the result with e2fsck
// (every inode checksum) and by reading it back.
func TestPatchInode(t *testing.T) {
	if _, err := exec.LookPath("e2fsck"); err != nil {
		t.Skip("e2fsck not installed")
	}
	for _, name := range []string{"default4k", "ext3", "nocsum32", "legacyhash2k"} {
		t.Run(name, func(t *testing.T) {
			path := copyImage(t, variant(t, name))
			fh, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			f, err := ext4.Open(fh, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			perm := uint16(0o1750)
			mtime := time.Unix(1<<32, 123456789) // after 2038: needs the epoch bits
			atime := time.Unix(1000, 5)
			p := ext4.InodePatch{Owner: &[2]uint32{70000, 80000}, Perm: &perm, Mtime: &mtime, Atime: &atime}
			inos := []uint64{ext4.RootIno, lookupPath(t, f, "tiny")}
			for _, ino := range inos {
				off, size, err := f.InodeLocation(ino)
				if err != nil {
					t.Fatal(err)
				}
				rec := make([]byte, size)
				if _, err := fh.ReadAt(rec, off); err != nil {
					t.Fatal(err)
				}
				if err := f.PatchInode(ino, rec, p); err != nil {
					t.Fatal(err)
				}
				if _, err := fh.WriteAt(rec, off); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck: %v\n%s", err, out)
			}
			f, err = ext4.Open(fh, st.Size()) // a fresh cache
			if err != nil {
				t.Fatal(err)
			}
			wideInodes := name != "ext3" // 128-byte inodes keep whole seconds only
			for _, ino := range inos {
				s, err := f.Stat(ino)
				if err != nil {
					t.Fatal(err)
				}
				if s.Uid != 70000 || s.Gid != 80000 || s.Mode&0o7777 != 0o1750 {
					t.Errorf("inode %d: uid %d gid %d mode %o", ino, s.Uid, s.Gid, s.Mode)
				}
				wantM, wantA := mtime, atime
				if !wideInodes {
					wantM, wantA = time.Unix(int64(int32(uint32(mtime.Unix()))), 0), time.Unix(1000, 0)
				}
				if !s.Mtime.Equal(wantM) || !s.Atime.Equal(wantA) {
					t.Errorf("inode %d: mtime %v atime %v", ino, s.Mtime, s.Atime)
				}
			}
			rec := make([]byte, 3)
			if err := f.PatchInode(ext4.RootIno, rec, p); err == nil || !strings.Contains(err.Error(), "record") {
				t.Errorf("short record: %v", err)
			}
		})
	}
}

// TestInodeChecksumNoExtraFields: with i_extra_isize 0 in a 256-byte inode
// the checksum is crc32c over the whole record cut to 16 bits, as e2fsck and
// the kernel compute it; reading and patching such an inode agree with them.
func TestInodeChecksumNoExtraFields(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	path, src := dir+"/img", dir+"/src"
	if err := os.WriteFile(src, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"truncate", "-s", "8M", path},
		{"mkfs.ext4", "-q", "-b", "4096", "-I", "256", path},
		{"debugfs", "-w", "-R", "write " + src + " h", path},
		{"debugfs", "-w", "-R", "sif /h extra_isize 0", path},
		{"e2fsck", "-fn", path},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", args, err, out)
		}
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := ext4.Open(fh, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	ino := lookupPath(t, f, "h")
	if _, err := f.Stat(ino); err != nil {
		t.Fatalf("stat of an inode without extra fields: %v", err)
	}
	off, size, err := f.InodeLocation(ino)
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, size)
	fh.ReadAt(rec, off)
	perm := uint16(0o600)
	if err := f.PatchInode(ino, rec, ext4.InodePatch{Perm: &perm}); err != nil {
		t.Fatal(err)
	}
	fh.WriteAt(rec, off)
	if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck after the patch: %v\n%s", err, out)
	}
	rec[0x30] ^= 1 // a damaged record is refused, not re-signed
	if err := f.PatchInode(ino, rec, ext4.InodePatch{Perm: &perm}); !errors.Is(err, ext4.ErrChecksum) {
		t.Fatalf("damaged record: %v", err)
	}
}
