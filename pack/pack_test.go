package pack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPackCryptsetup is the end-to-end check: cryptsetup reads the header and
// unlocks the keyslot, OpenSSL decrypts the data under the volume key that
// cryptsetup reports, e2fsck finds a clean ext4, and (as root) the kernel
// mounts it and it equals DIR.
func TestPackCryptsetup(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "node")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	makeTree(t, dir)
	key := []byte("a passphrase\nwith a newline, as keyfiles may have\n")
	keyFile := writeKey(t, tmp, key)
	image := filepath.Join(tmp, "out", "image.luks")
	if err := os.Mkdir(filepath.Dir(image), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(dir, image, key)
	opts.Label = "chestfs-test"
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(image)); len(ents) != 1 {
		t.Errorf("output directory holds %d files, want only the image", len(ents))
	}
	fi, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	// The 64 MiB sparse file holds 8 KiB of data: the estimate must not count its holes.
	if fi.Size()%4096 != 0 || fi.Size() > HeaderSize+48<<20 {
		t.Errorf("image size %d: not sector-aligned or larger than the contents need", fi.Size())
	}

	dump := mustRun(t, "cryptsetup", "luksDump", image)
	for _, want := range []string{"Version:       \t2", "Label:         \tchestfs-test", "offset: 16777216 [bytes]",
		"cipher: aes-xts-plain64", "sector: 4096 [bytes]", "PBKDF:      argon2id", "Time cost:  4", "Memory:     1024",
		"Threads:    4", "Key:        512 bits", "AF stripes: 4000", "Area offset:32768 [bytes]", "Area length:258048 [bytes]",
		"length: (whole device)"} {
		if !strings.Contains(dump, want) {
			t.Errorf("luksDump lacks %q:\n%s", want, dump)
		}
	}
	mustRun(t, "cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, image)
	wrong := writeKey(t, t.TempDir(), []byte("a passphrase\nwith a newline, as keyfiles may have"))
	if out, err := run(t, "cryptsetup", "open", "--test-passphrase", "--key-file", wrong, image); err == nil {
		t.Fatalf("cryptsetup accepted a wrong key: %s", out)
	}

	plain := decryptWithNode(t, image, dumpVolumeKey(t, image, keyFile))
	mustRun(t, "e2fsck", "-fn", plain)
	if userXattrs(filepath.Join(dir, "hello.txt")) == "" {
		t.Log("no user xattrs on this file system: xattrs not compared")
	}
	if !isRoot() {
		t.Skip("not root: cannot loop-mount the decrypted ext4 to compare it with DIR (e2fsck found it clean)")
	}
	compareTrees(t, dir, mountLoop(t, plain), nil)
}

// TestPackPBKDF2Sidecar packs with the Azure encfs sidecar's recipe (pbkdf2,
// 1000 iterations, a 32-byte random keyfile from WriteNewKey) and an
// explicit 64 MiB size.
func TestPackPBKDF2Sidecar(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte("sidecar"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "keyfile")
	key, err := WriteNewKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(tmp, "img")
	if _, err := Pack(testCtx(t), Options{Dir: dir, Image: image, Key: key, PBKDF: "pbkdf2", Iterations: 1000, Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(image); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("image: %v, %v; want 64 MiB", fi, err)
	}
	dump := mustRun(t, "cryptsetup", "luksDump", image)
	for _, want := range []string{"PBKDF:      pbkdf2", "Hash:       sha256", "Iterations: 1000"} {
		if !strings.Contains(dump, want) {
			t.Errorf("luksDump lacks %q:\n%s", want, dump)
		}
	}
	mustRun(t, "cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, image)
	if out, err := run(t, "cryptsetup", "open", "--test-passphrase", "--key-file", writeKey(t, t.TempDir(), key[:31]), image); err == nil {
		t.Fatalf("cryptsetup accepted a truncated key: %s", out)
	}
}

// TestPackOwner maps every inode to one UID:GID; e2fsck must find the
// patched inode checksums right, and debugfs the owners.
func TestPackOwner(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "debugfs", "node")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	makeTree(t, dir)
	key := []byte("owner test")
	keyFile := writeKey(t, tmp, key)
	image := filepath.Join(tmp, "img")
	owner := &[2]uint32{123456, 65537} // both need the high 16 bits
	opts := testOptions(dir, image, key)
	opts.Owner = owner
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	plain := decryptWithNode(t, image, dumpVolumeKey(t, image, keyFile))
	mustRun(t, "e2fsck", "-fn", plain)
	for _, p := range []string{"/", "/hello.txt", "/sub/dir/deep.txt", "/long-link", "/fifo", "/lost+found"} {
		out := mustRun(t, "debugfs", "-R", "stat "+p, plain)
		if !strings.Contains(out, "User: 123456   Group: 65537") {
			t.Errorf("%s: owner not mapped:\n%s", p, out)
		}
	}
	if isRoot() {
		compareTrees(t, dir, mountLoop(t, plain), owner)
	}
}

// TestPackAsNobody runs Pack in a process that is user nobody.
func TestPackAsNobody(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4", "setpriv", "e2fsck", "node")
	if !isRoot() {
		t.Skip("not root: cannot switch to user nobody")
	}
	// Every path component must be traversable by nobody: not t.TempDir().
	base, err := os.MkdirTemp("/tmp", "chestfs-pack-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(base, "pack.test")
	if err := os.WriteFile(helper, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, helper, "-test.run=^$"); err != nil {
		t.Skipf("cannot run a program from /tmp (mounted noexec?): %v %s", err, out)
	}
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("packed by nobody"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(base, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(out, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	key := []byte("nobody's key")
	image := filepath.Join(out, "img")
	res, err := run(t, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"env", "CHESTFS_PACK_HELPER=1", "CHESTFS_PACK_DIR="+src, "CHESTFS_PACK_IMAGE="+image,
		"CHESTFS_PACK_KEY="+string(key), "PATH=/usr/bin:/bin", // no sbin: Pack must find mkfs.ext4 itself
		helper, "-test.run=^TestHelperProcess$", "-test.v")
	if err != nil {
		t.Fatalf("pack as nobody: %v\n%s", err, res)
	}
	if !strings.Contains(res, "packed as uid 65534") {
		t.Fatalf("helper did not run as nobody:\n%s", res)
	}
	fi, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 {
		t.Errorf("image owned by uid %d, want nobody", st.Uid)
	}
	keyFile := writeKey(t, t.TempDir(), key)
	mustRun(t, "cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, image)
	plain := decryptWithNode(t, image, dumpVolumeKey(t, image, keyFile))
	mustRun(t, "e2fsck", "-fn", plain)
	got, err := os.ReadFile(filepath.Join(mountLoop(t, plain), "d", "f"))
	if err != nil || string(got) != "packed by nobody" {
		t.Fatalf("file in image: %q, %v", got, err)
	}
}

// TestHelperProcess is TestPackAsNobody's other half; it does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("CHESTFS_PACK_HELPER") != "1" {
		t.Skip("helper process for TestPackAsNobody")
	}
	opts := testOptions(os.Getenv("CHESTFS_PACK_DIR"), os.Getenv("CHESTFS_PACK_IMAGE"), []byte(os.Getenv("CHESTFS_PACK_KEY")))
	if _, err := Pack(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("packed as uid %d\n", os.Getuid())
}

// leftovers lists what is in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestPackFailureLeavesNothing: a missing DIR, a cancelled context (before,
// after mkfs, in the middle of encryption), a DIR that does not fit, and an
// existing IMAGE all fail without leaving IMAGE or a temporary file.
func TestPackFailureLeavesNothing(t *testing.T) {
	needTools(t, "mkfs.ext4")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte{1}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	key := []byte("k")

	check := func(name string, err error, want error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: Pack succeeded", name)
		} else if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: error %v, want %v", name, err, want)
		}
		if n := strings.Count(fmt.Sprint(err), "mkfs.ext4:"); n > 1 {
			t.Errorf("%s: %q says mkfs.ext4: %d times", name, err, n)
		}
		if strings.Contains(fmt.Sprint(err), string(key)+"\"") {
			t.Errorf("%s: error mentions the key", name)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Options, context.CancelFunc)
		want error
	}{
		{"missing dir", func(o *Options, _ context.CancelFunc) { o.Dir = filepath.Join(tmp, "nope") }, fs.ErrNotExist},
		{"cancelled", func(_ *Options, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"cancel after mkfs", func(_ *Options, cancel context.CancelFunc) { afterMkfsHook = cancel }, context.Canceled},
		{"cancel while encrypting", func(_ *Options, cancel context.CancelFunc) { afterChunkHook = cancel }, context.Canceled},
		{"too small", func(o *Options, _ context.CancelFunc) { o.Size = HeaderSize + 2<<20 }, ErrNoSpace},
		{"bad size", func(o *Options, _ context.CancelFunc) { o.Size = HeaderSize + 2<<20 + 1 }, nil},
		{"bad pbkdf", func(o *Options, _ context.CancelFunc) { o.PBKDF = "scrypt" }, nil},
		{"empty key", func(o *Options, _ context.CancelFunc) { o.Key = nil }, nil},
		{"long label", func(o *Options, _ context.CancelFunc) { o.Label = strings.Repeat("l", 48) }, nil},
		{"unwritable temp dir", func(o *Options, _ context.CancelFunc) { o.TempDir = filepath.Join(tmp, "nope") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			t.Cleanup(func() { afterMkfsHook, afterChunkHook = nil, nil })
			opts := testOptions(dir, filepath.Join(out, "img"), key)
			opts.TempDir = out
			tc.edit(&opts, cancel)
			_, err := Pack(ctx, opts)
			check(tc.name, err, tc.want)
			if names := leftovers(t, out); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
		})
	}

	t.Run("image exists", func(t *testing.T) {
		out := t.TempDir()
		image := filepath.Join(out, "img")
		if err := os.WriteFile(image, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Pack(testCtx(t), testOptions(dir, image, key))
		check("image exists", err, fs.ErrExist)
		if b, _ := os.ReadFile(image); string(b) != "precious" {
			t.Errorf("existing image changed")
		}
		if names := leftovers(t, out); len(names) != 1 {
			t.Errorf("left behind: %v", names)
		}
		opts := testOptions(dir, image, key)
		opts.Overwrite = true
		if _, err := Pack(testCtx(t), opts); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(image); len(b) < HeaderSize || !bytes.HasPrefix(b, []byte("LUKS\xba\xbe")) {
			t.Errorf("image not overwritten")
		}
		if names := leftovers(t, out); len(names) != 1 {
			t.Errorf("left behind: %v", names)
		}
	})
}

func TestWriteNewKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	k1, err := WriteNewKey(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != NewKeySize || len(k1) != NewKeySize {
		t.Errorf("key file mode %v size %d, key %d bytes", fi.Mode(), fi.Size(), len(k1))
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, k1) {
		t.Error("returned key differs from the file")
	}
	if _, err := WriteNewKey(p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteNewKey: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, k1) {
		t.Error("existing key overwritten")
	}
	k2, err := WriteNewKey(p + "2")
	if err != nil || bytes.Equal(k1, k2) {
		t.Errorf("two keys equal or error %v", err)
	}
}
