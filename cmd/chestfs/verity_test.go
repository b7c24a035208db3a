package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
)

// verityImage is an image packed with --verity, its plaintext and root hash.
type verityImage struct {
	path, plain, root string
	dataBlocks        int64
}

// packVerity packs demo-src (plus extra, a file of its own) with --verity.
func packVerity(t *testing.T, dir, name, extra string) verityImage {
	t.Helper()
	src := filepath.Join(dir, name+"-src")
	if err := exec.Command("cp", "-a", demoSrc, src).Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "version.txt"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	v := verityImage{path: filepath.Join(dir, name+".img"), plain: filepath.Join(dir, name+".plain")}
	rootFile := filepath.Join(dir, name+".root")
	out := mustRun(t, "pack", "--key-file", demoKey, "--pbkdf", "pbkdf2", "--iterations", "1000",
		"--verity", "--verity-root-file", rootFile, src, v.path)
	b, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	v.root = strings.TrimSpace(string(b))
	if !strings.Contains(out, v.root) || len(v.root) != 64 {
		t.Fatalf("pack printed %q, root file %q", out, v.root)
	}
	dump := mustRun(t, "verity", "dump", v.path)
	for _, line := range strings.Split(dump, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "Data" && f[1] == "blocks:" {
			v.dataBlocks, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if v.dataBlocks == 0 {
		t.Fatalf("verity dump shows no data blocks:\n%s", dump)
	}
	mustRun(t, "decrypt", "--key-file", demoKey, "--verity-root", v.root, v.path, v.plain)
	return v
}

// flip changes one byte of a file.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// debugfsBlock asks debugfs for a block of the plaintext ext4: "bmap PATH 0"
// (a file's first data block) or "imap PATH" (its inode's table block).
func debugfsBlock(t *testing.T, plain, request string) int64 {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, plain).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", request, err, out)
	}
	s := string(out)
	if i := strings.Index(s, "located at block "); i >= 0 { // imap
		s = s[i+len("located at block "):]
		s = s[:strings.IndexAny(s, ",")]
	} else {
		lines := strings.Fields(s)
		s = lines[len(lines)-1]
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("debugfs %s: %q", request, out)
	}
	return n
}

// ciphertextOffset is where plaintext block blk of a packed image is stored.
func ciphertextOffset(blk int64) int64 { return 16<<20 + blk*4096 }

func needVeritysetup(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"veritysetup", "debugfs", "cryptsetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages cryptsetup-bin, e2fsprogs)", tool)
		}
	}
}

// TestVerityPackAndMount: pack --verity writes a tree that veritysetup
// accepts with the printed root hash; the mount with --verity-root shows
// what the kernel shows of the plaintext; the LUKS2 volume is unchanged for
// cryptsetup.
func TestVerityPackAndMount(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	v := packVerity(t, dir, "v", "one")
	off := strconv.FormatInt(v.dataBlocks*4096, 10)
	if out, err := exec.Command("veritysetup", "verify", "--hash-offset="+off, "--data-blocks="+strconv.FormatInt(v.dataBlocks, 10),
		v.path, v.path, v.root).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup verify refuses pack's tree: %v\n%s", err, out)
	}
	if out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", demoKey, v.path).CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup refuses the image: %v\n%s", err, out)
	}
	out, _ := exec.Command("cryptsetup", "luksDump", v.path).CombinedOutput()
	if !strings.Contains(string(out), "length: ") {
		t.Errorf("the data segment is not fixed in size:\n%s", out)
	}
	mustRun(t, "verity", "verify", v.path, v.root)
	if got := mustRun(t, "cat", "--key-file", demoKey, "--verity-root", v.root, "--require-verity", v.path, "/version.txt"); got != "one" {
		t.Errorf("cat version.txt = %q", got)
	}
	if os.Geteuid() != 0 {
		t.Skip("the kernel comparison needs root (loop mount) and FUSE")
	}
	requireFUSE(t)
	img := testimg.Image{Path: v.plain}
	kernel, err := fstree.Snapshot(img.Mount(t))
	if err != nil {
		t.Fatal(err)
	}
	mp := t.TempDir()
	m := startMount(t, nil, "--key-file", demoKey, "--verity-root", v.root, v.path, mp)
	got, err := fstree.Snapshot(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fstree.Compare(kernel, got, fstree.Options{}) {
		t.Error(d)
	}
	if err := m.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
	}
}

// TestVerityTamper: one flipped byte in a file's ciphertext, in an inode
// table block, in a directory block or in the hash tree makes the reads
// that need it fail with EIO, never return other bytes; the rest reads.
func TestVerityTamper(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	v := packVerity(t, dir, "v", "one")
	numbers := debugfsBlock(t, v.plain, "bmap /docs/numbers.txt 0")
	inodeTable := debugfsBlock(t, v.plain, "imap /docs/config.yaml")
	docsDir := debugfsBlock(t, v.plain, "bmap /docs 0")
	size := fileSize(t, v.path)
	cases := []struct {
		name    string
		off     int64
		failing []string // cat PATH must fail: the block does not match
		others  bool     // README.txt still reads (its blocks are elsewhere)
	}{
		{"file data", ciphertextOffset(numbers) + 100, []string{"/docs/numbers.txt"}, true},
		// The small image's inodes share one table block: all of them fail.
		{"inode table", ciphertextOffset(inodeTable) + 10, []string{"/docs/config.yaml", "/README.txt"}, false},
		{"directory", ciphertextOffset(docsDir) + 30, []string{"/docs/config.yaml", "/docs/numbers.txt"}, true},
		// A leaf hash block over none of the blocks README.txt needs.
		{"leaf hash block", leafAway(t, v, size), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "bad.img")
			copyFile(t, v.path, img)
			flip(t, img, tc.off)
			for _, p := range tc.failing {
				r := run(t, "cat", "--key-file", demoKey, "--verity-root", v.root, img, p)
				if r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "does not match the hash tree") {
					t.Errorf("cat %s: exit %d, %d bytes out, stderr %q (want a mismatch, no bytes)", p, r.code, len(r.stdout), r.stderr)
				}
			}
			if tc.others {
				if got := mustRun(t, "cat", "--key-file", demoKey, "--verity-root", v.root, img, "/README.txt"); !strings.Contains(got, "chestfs") {
					t.Errorf("README.txt beside the damage: %q", got)
				}
			}
			if tc.name == "leaf hash block" {
				// Every block under the damaged hash block is refused: verify says which.
				r := run(t, "verity", "verify", img, v.root)
				if r.code == 0 || !strings.Contains(r.stderr, "does not match the hash tree") {
					t.Errorf("verity verify of a damaged tree: exit %d, %q", r.code, r.stderr)
				}
			}
		})
	}
	t.Run("top hash block", func(t *testing.T) {
		// The tree's first block is its top level: the root hash no longer matches.
		img := filepath.Join(t.TempDir(), "bad.img")
		copyFile(t, v.path, img)
		flip(t, img, v.dataBlocks*4096+4096+8)
		r := run(t, "ls", "--key-file", demoKey, "--verity-root", v.root, img)
		if r.code == 0 || !strings.Contains(r.stderr, "does not match the root hash") {
			t.Errorf("exit %d, %q", r.code, r.stderr)
		}
	})
	t.Run("mount stays up", func(t *testing.T) {
		requireFUSE(t)
		img := filepath.Join(t.TempDir(), "bad.img")
		copyFile(t, v.path, img)
		flip(t, img, ciphertextOffset(numbers)+100)
		mp := t.TempDir()
		m := startMount(t, nil, "--key-file", demoKey, "--verity-root", v.root, img, mp)
		if b, err := os.ReadFile(filepath.Join(mp, "docs/numbers.txt")); err == nil || !isEIO(err) {
			t.Errorf("read of the tampered file: %d bytes, %v (want EIO)", len(b), err)
		}
		if b, err := os.ReadFile(filepath.Join(mp, "docs/config.yaml")); err != nil || !strings.Contains(string(b), "replicas") {
			t.Errorf("other file: %v", err)
		}
		if err := m.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
		}
		if !strings.Contains(m.stderr.String(), "data_block=") {
			t.Errorf("no log line names the bad block: %s", m.stderr)
		}
	})
}

// leafAway is a byte in a leaf hash block of v's tree that covers none of
// the blocks reading /README.txt needs, nor the first and last data blocks
// (Open checks those).
func leafAway(t *testing.T, v verityImage, size int64) int64 {
	leaves := (v.dataBlocks + 127) / 128
	used := map[int64]bool{0: true, leaves - 1: true}
	for _, req := range []string{"bmap /README.txt 0", "imap /README.txt", "bmap / 0"} {
		used[(debugfsBlock(t, v.plain, req)+4096)/128] = true
	}
	used[4096/128] = true // the ext4 superblock and group descriptors
	for k := leaves - 2; k > 0; k-- {
		if !used[k] {
			return size - (leaves-k)*4096 + 8
		}
	}
	t.Fatal("no leaf hash block away from README.txt")
	return 0
}

func isEIO(err error) bool {
	var errno syscall.Errno
	for e := err; e != nil; {
		if pe, ok := e.(*os.PathError); ok {
			e = pe.Err
			continue
		}
		errno, _ = e.(syscall.Errno)
		break
	}
	return errno == syscall.EIO
}

// TestVerityRollbackAndBadInput: an older image under the newer root hash
// is refused at open; so are a truncated tree, a wrong salt, a tree for
// another image, an unknown algorithm and a root hash of the wrong length,
// each in one line.
func TestVerityRollbackAndBadInput(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	v1 := packVerity(t, dir, "v1", "one")
	v2 := packVerity(t, dir, "v2", "two")
	sbOff := v1.dataBlocks * 4096
	patched := func(name string, patch func(path string)) string {
		p := filepath.Join(dir, name)
		copyFile(t, v1.path, p)
		patch(p)
		return p
	}
	truncated := patched("trunc.img", func(p string) { os.Truncate(p, fileSize(t, p)-4096) })
	badSalt := patched("salt.img", func(p string) { flip(t, p, sbOff+88) })
	badAlg := patched("alg.img", func(p string) {
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		f.WriteAt(append([]byte("md5"), make([]byte, 29)...), sbOff+32)
		f.Close()
	})
	// v2's tree, cut out into a file of its own, given for v1.
	v2Tree := filepath.Join(dir, "v2.tree")
	b, _ := os.ReadFile(v2.path)
	os.WriteFile(v2Tree, b[v2.dataBlocks*4096:], 0o644)
	v1Data := patched("v1data.img", func(p string) { os.Truncate(p, v1.dataBlocks*4096) })
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rollback", []string{v1.path, "--verity-root", v2.root}, "verity"},
		{"truncated tree", []string{truncated, "--verity-root", v1.root}, "verity"},
		{"wrong salt", []string{badSalt, "--verity-root", v1.root}, "verity"},
		{"unknown algorithm", []string{badAlg, "--verity-root", v1.root}, "md5"},
		{"tree of another image", []string{v1Data, "--verity-hash", v2Tree, "--verity-root", v2.root}, "verity"},
		{"root of the wrong length", []string{v1.path, "--verity-root", v1.root[:40]}, "root hash of 20 bytes"},
		{"root not hex", []string{v1.path, "--verity-root", "xyz"}, "hex"},
		{"required", []string{v1.path, "--require-verity"}, "no root hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.args[0]
			r := run(t, append([]string{"ls", "--key-file", demoKey}, append(tc.args[1:], img)...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 || strings.Count(msg, "\n") != 0 || !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.want)) {
				t.Errorf("exit %d, stderr %q (want one line naming %q)", r.code, r.stderr, tc.want)
			}
		})
	}
	// Its own root still opens v1: the refusals above are the damage's doing.
	mustRun(t, "ls", "--key-file", demoKey, "--verity-root", v1.root, v1.path)
}

// TestVeritySidecarRecipe: an image made by cryptsetup as the Azure
// sidecar's generatefs makes it (LUKS2, 4096-byte sectors, pbkdf2 1000,
// ext4 inside), given a tree by veritysetup format (appended), mounts with
// --verity-root and shows the files it was made from; chestfs verity format
// of the same image is accepted by veritysetup verify.
func TestVeritySidecarRecipe(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "sidecar.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-b", "4096", "-d", demoSrc, img, "48M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	cryptsetup(t, "reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "16M", "--sector-size", "4096",
		"--cipher", "aes-xts-plain64", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", demoKey, img)
	ours := filepath.Join(dir, "ours.img")
	copyFile(t, img, ours)

	size := fileSize(t, img)
	out, err := exec.Command("veritysetup", "format", "--hash-offset="+strconv.FormatInt(size, 10),
		"--data-blocks="+strconv.FormatInt(size/4096, 10), img, img).CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup format: %v\n%s", err, out)
	}
	root := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Root hash:") {
			root = strings.TrimSpace(strings.TrimPrefix(line, "Root hash:"))
		}
	}
	if got := mustRun(t, "cat", "--key-file", demoKey, "--verity-root", root, img, "/docs/config.yaml"); !strings.Contains(got, "replicas: 3") {
		t.Errorf("cat through veritysetup's tree: %q", got)
	}
	mustRun(t, "verity", "verify", img, root)

	fo := mustRun(t, "verity", "format", "--root-hash-file", filepath.Join(dir, "root"), ours)
	rb, _ := os.ReadFile(filepath.Join(dir, "root"))
	ourRoot := strings.TrimSpace(string(rb))
	if !strings.Contains(fo, ourRoot) {
		t.Fatalf("verity format printed %q, root file %q", fo, ourRoot)
	}
	if out, err := exec.Command("veritysetup", "verify", "--hash-offset="+strconv.FormatInt(size, 10),
		"--data-blocks="+strconv.FormatInt(size/4096, 10), ours, ours, ourRoot).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup verify refuses chestfs verity format's tree: %v\n%s", err, out)
	}
	if r := run(t, "verity", "format", ours); r.code == 0 || !strings.Contains(r.stderr, "already") {
		t.Errorf("a second format: exit %d, %q", r.code, r.stderr)
	}
	if !requireFUSEOK() {
		return
	}
	mp := t.TempDir()
	m := startMount(t, nil, "--key-file", demoKey, "--verity-root", ourRoot, ours, mp)
	compareWithSource(t, mp)
	m.stop(t)
}

// requireFUSEOK reports whether FUSE mounts can run here (root and /dev/fuse).
func requireFUSEOK() bool {
	_, err := exec.LookPath("fusermount3")
	return os.Geteuid() == 0 && err == nil
}

// TestVerityBlob: from a blob (Azurite), one flipped byte of ciphertext
// makes reads of that file fail with EIO; the others read.
func TestVerityBlob(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	v := packVerity(t, dir, "v", "one")
	numbers := debugfsBlock(t, v.plain, "bmap /docs/numbers.txt 0")
	flip(t, v.path, ciphertextOffset(numbers)+100)
	az := azuritetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := az.CreateContainer(ctx, "pub", true); err != nil {
		t.Fatal(err)
	}
	url := az.BlobURL("pub", "v.img")
	t.Setenv("AZURE_STORAGE_ACCOUNT", azuritetest.Account)
	t.Setenv("AZURE_STORAGE_KEY", azuritetest.Key)
	mustRun(t, "upload", v.path, url)
	r := run(t, "cat", "--key-file", demoKey, "--verity-root", v.root, url, "/docs/numbers.txt")
	if r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "does not match the hash tree") {
		t.Errorf("tampered file from the blob: exit %d, %d bytes, %q", r.code, len(r.stdout), r.stderr)
	}
	if got := mustRun(t, "cat", "--key-file", demoKey, "--verity-root", v.root, url, "/docs/config.yaml"); !strings.Contains(got, "replicas: 3") {
		t.Errorf("untouched file from the blob: %q", got)
	}
}
