package pack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testOptions keep the keyslot cheap (argon2id, 4 passes over 1 MiB) and
// the image small.
func testOptions(dir, image string, key []byte) Options {
	return Options{Dir: dir, Image: image, Key: key, Iterations: 4, MemoryKiB: 1024, Parallel: 4, Headroom: "10%+1M"}
}

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err == nil {
			continue
		}
		if _, err := findMkfs(""); tool == "mkfs.ext4" && err == nil {
			continue
		}
		if _, err := os.Stat("/usr/sbin/" + tool); err == nil {
			continue
		}
		t.Skipf("%s not installed", tool)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if p, err := exec.LookPath(name); err == nil {
		name = p
	} else if _, err := os.Stat("/usr/sbin/" + name); err == nil {
		name = "/usr/sbin/" + name
	} else if _, err := os.Stat("/sbin/" + name); err == nil {
		name = "/sbin/" + name
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func writeKey(t testing.TB, dir string, key []byte) string {
	t.Helper()
	p := filepath.Join(dir, "key")
	if err := os.WriteFile(p, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var mkDumpRE = regexp.MustCompile(`(?s)MK dump:\s*((?:[0-9a-f]{2}\s*)+)`)

// dumpVolumeKey asks cryptsetup for the volume key of image.
func dumpVolumeKey(t testing.TB, image, keyFile string) []byte {
	t.Helper()
	out := mustRun(t, "cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, image)
	m := mkDumpRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MK dump in cryptsetup output")
	}
	key, err := hex.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	if err != nil || len(key) != 64 {
		t.Fatalf("volume key from cryptsetup: %d bytes, %v", len(key), err)
	}
	return key
}

// nodeDecrypt is an independent AES-256-XTS (OpenSSL through node's crypto):
// it decrypts the data segment (from 16 MiB, 4096-byte sectors, IV 8n).
const nodeDecrypt = `
const crypto = require('crypto'), fs = require('fs');
const [img, out, keyHex, offStr] = process.argv.slice(2);
const key = Buffer.from(keyHex, 'hex'), off = Number(offStr);
const fin = fs.openSync(img, 'r'), fout = fs.openSync(out, 'w');
const size = fs.fstatSync(fin).size, chunk = 1 << 20, buf = Buffer.alloc(chunk), iv = Buffer.alloc(16);
for (let pos = off; pos < size; ) {
  const r = fs.readSync(fin, buf, 0, Math.min(chunk, size - pos), pos);
  if (r <= 0 || r % 4096 != 0) throw new Error('short read');
  for (let s = 0; s < r; s += 4096) {
    const sector = (pos - off + s) / 4096;
    iv.fill(0); iv.writeBigUInt64LE(BigInt(sector) * 8n);
    const d = crypto.createDecipheriv('aes-256-xts', key, iv);
    const p = Buffer.concat([d.update(buf.subarray(s, s + 4096)), d.final()]);
    fs.writeSync(fout, p, 0, 4096, pos - off + s);
  }
  pos += r;
}
fs.closeSync(fout);
`

// decryptWithNode writes the plaintext data segment of image to a file and returns its path.
func decryptWithNode(t testing.TB, image string, volumeKey []byte) string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "decrypt.js")
	if err := os.WriteFile(script, []byte(nodeDecrypt), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "plain.ext4")
	mustRun(t, "node", script, image, out, hex.EncodeToString(volumeKey), "16777216")
	return out
}

// mountLoop mounts an ext4 image read-only (root only) and unmounts it on cleanup.
func mountLoop(t testing.TB, image string) string {
	t.Helper()
	mnt := t.TempDir()
	mustRun(t, "mount", "-t", "ext4", "-o", "loop,ro", image, mnt)
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if _, err := run(t, "umount", mnt); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		run(t, "umount", "-l", mnt)
	})
	return mnt
}

// entry is what the comparison checks of one path.
type entry struct {
	mode    os.FileMode
	uid     uint32
	gid     uint32
	size    int64
	mtime   int64 // nanoseconds
	content [32]byte
	link    string
	rdev    uint64
	xattrs  string
	ino     uint64
	blocks  int64
}

func lstatEntry(t testing.TB, path string) entry {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), ino: st.Ino, blocks: st.Blocks}
	switch {
	case fi.Mode().IsRegular():
		e.size = fi.Size()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		e.content = sha256.Sum256(b)
	case fi.Mode()&os.ModeSymlink != 0:
		e.link, _ = os.Readlink(path)
	case fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0:
		e.rdev = st.Rdev
	}
	e.xattrs = userXattrs(path)
	return e
}

// userXattrs lists user.* attributes as name=value lines.
func userXattrs(path string) string {
	buf := make([]byte, 64<<10)
	n, err := syscall.Listxattr(path, buf)
	if err != nil || n <= 0 {
		return ""
	}
	var lines []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := syscall.Getxattr(path, name, v)
		if err != nil {
			// symlinks cannot carry user.* xattrs and Getxattr follows them
			continue
		}
		lines = append(lines, name+"="+string(v[:m]))
	}
	return strings.Join(lines, "\n")
}

// compareTrees checks that got (a mounted image) equals want (DIR), path by
// path; owner, if set, is the UID:GID every inode must have instead.
func compareTrees(t *testing.T, want, got string, owner *[2]uint32) {
	t.Helper()
	wantLinks := map[uint64]uint64{} // DIR inode -> image inode
	n := 0
	err := filepath.Walk(want, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		w := lstatEntry(t, p)
		g := lstatEntry(t, filepath.Join(got, rel))
		n++
		if owner != nil {
			w.uid, w.gid = owner[0], owner[1]
		} else if !isRoot() {
			w.uid, w.gid = g.uid, g.gid // only root can make files of other owners
		}
		if w.mode != g.mode || w.uid != g.uid || w.gid != g.gid || w.size != g.size || w.content != g.content ||
			w.link != g.link || w.rdev != g.rdev || w.xattrs != g.xattrs {
			t.Errorf("%s differs:\n DIR   %+v\n image %+v", rel, w, g)
		}
		if w.mtime != g.mtime {
			t.Errorf("%s: mtime %d in DIR, %d in image", rel, w.mtime, g.mtime)
		}
		if w.mode.IsRegular() {
			if prev, ok := wantLinks[w.ino]; ok && prev != g.ino {
				t.Errorf("%s: hard link not kept (inode %d, expected %d)", rel, g.ino, prev)
			}
			wantLinks[w.ino] = g.ino
			if w.blocks < w.size/512-16 && g.blocks > w.blocks+64 {
				t.Errorf("%s: sparse file lost its holes: %d blocks, DIR %d", rel, g.blocks, w.blocks)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// and nothing extra in the image (apart from lost+found)
	m := 0
	filepath.Walk(got, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && fi.Name() == "lost+found" && filepath.Dir(p) == got {
			return filepath.SkipDir
		}
		m++
		return nil
	})
	if m != n {
		t.Errorf("image has %d entries, DIR %d", m, n)
	}
	if n < 10 {
		t.Fatalf("only %d entries compared", n)
	}
}

// makeTree fills dir with what mkfs.ext4 -d has to carry over.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w := func(name string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
	}
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	w("hello.txt", []byte("hello, world\n"), 0o644)
	w("empty", nil, 0o600)
	w("big.bin", big, 0o640)
	w("sub/dir/deep.txt", []byte("deep"), 0o444)
	w("exec.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	w("setuid", []byte("x"), 0o4755)
	w("ünïcødé name with spaces", []byte("u"), 0o644)
	must(os.MkdirAll(filepath.Join(dir, "emptydir"), 0o700))
	must(os.MkdirAll(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o755|os.ModeSticky))
	must(os.Symlink("hello.txt", filepath.Join(dir, "short-link")))
	must(os.Symlink(strings.Repeat("long/", 30)+"target", filepath.Join(dir, "long-link")))
	must(os.Link(filepath.Join(dir, "hello.txt"), filepath.Join(dir, "sub/hardlink")))
	// sparse: 1 byte at 0, 4 KiB at 40 MiB, size 64 MiB
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	_, err = sp.WriteAt([]byte("a"), 0)
	must(err)
	_, err = sp.WriteAt(bytes.Repeat([]byte("s"), 4096), 40<<20)
	must(err)
	must(sp.Truncate(64 << 20))
	must(sp.Close())
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	if err := syscall.Setxattr(filepath.Join(dir, "hello.txt"), "user.comment", []byte("kept"), 0); err != nil {
		if !errors.Is(err, syscall.ENOTSUP) {
			t.Fatal(err)
		}
	} else {
		must(syscall.Setxattr(filepath.Join(dir, "big.bin"), "user.big", bytes.Repeat([]byte("x"), 300), 0))
	}
	if isRoot() {
		must(syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, int(1<<8|3)))
		must(syscall.Mknod(filepath.Join(dir, "blk"), syscall.S_IFBLK|0o600, int(7<<8|200)))
		must(os.Lchown(filepath.Join(dir, "hello.txt"), 1000, 1001))
		must(os.Lchown(filepath.Join(dir, "sub"), 4242, 0))
		must(os.Lchown(filepath.Join(dir, "short-link"), 77, 88))
	}
	tm := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	for i, name := range []string{"hello.txt", "big.bin", "sub/dir/deep.txt", "empty", "sparse", "sub/dir", "emptydir", "sub", "."} {
		must(os.Chtimes(filepath.Join(dir, name), tm, tm.Add(time.Duration(i)*time.Hour+time.Duration(i))))
	}
	must(os.Chmod(dir, 0o751))
}
