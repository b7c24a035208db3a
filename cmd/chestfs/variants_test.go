package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
	"github.com/chestfs/chestfs/xts"
)

// copyFile copies a shared test image so that it can be encrypted in place.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func cryptsetup(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("cryptsetup", append([]string{"--batch-mode"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// encryptPlain encrypts a file in place as plain dm-crypt aes-xts-plain64
// with 512-byte sectors would, using the xts package (itself checked against
// OpenSSL in its own tests).
func encryptPlain(t *testing.T, path string, key []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xts.New("aes-xts-plain64", key)
	if err != nil {
		t.Fatal(err)
	}
	c.EncryptSectors(b, b, 512, 0)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMountEncryptedEqualsKernel encrypts real ext4 images as LUKS2 (header
// in front, as reencrypt --encrypt makes it), LUKS1 with a detached header,
// and plain dm-crypt, mounts each with chestfs and compares the whole tree,
// field by field, with the kernel's loop mount of the plaintext image.
func TestMountEncryptedEqualsKernel(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("needs cryptsetup (Debian package cryptsetup-bin)")
	}
	for _, name := range []string{"default1k", "inline", "ext3"} {
		t.Run(name, func(t *testing.T) {
			v, ok := testimg.Lookup(name)
			if !ok {
				t.Fatalf("no variant %s", name)
			}
			img := testimg.Build(t, v)
			kernel, err := fstree.Snapshot(img.Mount(t))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "key")
			key := make([]byte, 64)
			rand.Read(key)
			if err := os.WriteFile(keyFile, key, 0o600); err != nil {
				t.Fatal(err)
			}

			luks2 := filepath.Join(dir, "luks2.img")
			copyFile(t, img.Path, luks2)
			if err := os.Truncate(luks2, fileSize(t, img.Path)+16<<20); err != nil {
				t.Fatal(err)
			}
			sector := "512" // cryptsetup refuses sectors larger than the filesystem's blocks
			if name == "inline" {
				sector = "4096"
			}
			cryptsetup(t, "reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "16M",
				"--sector-size", sector, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, luks2)

			// LUKS1 with a detached header: cryptsetup formats the header, and the data
			// is encrypted under the volume key it reports (reencrypt of LUKS1 needs dm-crypt).
			luks1, hdr := filepath.Join(dir, "luks1.img"), filepath.Join(dir, "luks1.hdr")
			copyFile(t, img.Path, luks1)
			if err := os.WriteFile(hdr, make([]byte, 4<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			cryptsetup(t, "luksFormat", "--type", "luks1", "--cipher", "aes-xts-plain64", "--key-size", "512",
				"--pbkdf-force-iterations", "1000", "--header", hdr, "--key-file", keyFile, luks1)
			encryptPlain(t, luks1, volumeKey(t, hdr, keyFile))

			plain := filepath.Join(dir, "plain.img")
			copyFile(t, img.Path, plain)
			encryptPlain(t, plain, key)

			for _, tc := range []struct {
				name string
				args []string
			}{
				{"luks2", []string{"--key-file", keyFile, luks2}},
				{"luks1-detached", []string{"--key-file", keyFile, "--header", hdr, luks1}},
				{"plain", []string{"--plain", "--key-size", "512", "--key-file", keyFile, plain}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					mp := t.TempDir()
					m := startMount(t, nil, append(tc.args, mp)...)
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
				})
			}
		})
	}
}

// volumeKey asks cryptsetup for the volume key of a LUKS header.
func volumeKey(t *testing.T, hdr, keyFile string) []byte {
	t.Helper()
	out, err := exec.Command("cryptsetup", "luksDump", "--batch-mode", "--dump-volume-key", "--key-file", keyFile, hdr).CombinedOutput()
	if err != nil {
		t.Fatalf("luksDump --dump-volume-key: %v\n%s", err, out)
	}
	text := string(out)
	i := strings.Index(text, "MK dump:")
	if i < 0 {
		t.Fatalf("no MK dump in:\n%s", text)
	}
	var hexDigits []byte
	for _, line := range strings.Split(text[i+len("MK dump:"):], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || len(hexDigits) > 0 && strings.Contains(line, ":") {
			break
		}
		for _, w := range f {
			hexDigits = append(hexDigits, w...)
		}
	}
	key, err := hex.DecodeString(string(hexDigits))
	if err != nil || len(key) != 64 {
		t.Fatalf("volume key %q: %v", hexDigits, err)
	}
	return key
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestExtractEqualsKernel extracts an image as root and compares the copy
// with the kernel's view (inode numbers, link counts of directories, ctimes
// and block counts necessarily differ on a new filesystem).
func TestExtractEqualsKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the kernel's loop mount and to keep owners and device nodes")
	}
	v, _ := testimg.Lookup("default1k")
	img := testimg.Build(t, v)
	kernel, err := fstree.Snapshot(img.Mount(t))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	r := run(t, "extract", "--preserve", img.Path, dst)
	if r.code != 0 {
		t.Fatalf("extract: %s", r.stderr)
	}
	got, err := fstree.Snapshot(dst)
	if err != nil {
		t.Fatal(err)
	}
	opts := fstree.Options{IgnoreIno: true, IgnoreCtime: true, IgnoreBtime: true, IgnoreBlocks: true,
		IgnoreDirSize: true, IgnoreRootAttrs: true, IgnoreAtime: true}
	for _, d := range fstree.Compare(kernel, got, opts) {
		if strings.Contains(d, "lost+found") {
			continue
		}
		t.Error(d)
	}
	// Sparse files stay sparse: the copy uses no more blocks than the original content.
	if !bytes.Contains([]byte(r.stderr), []byte("extracted")) {
		t.Errorf("extract printed no summary: %q", r.stderr)
	}
}

// TestExtractSafeByDefault: even as root, extract creates no device nodes and
// keeps no set-id bits or foreign owners unless asked, as tar does.
func TestExtractSafeByDefault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the point is what root extracts without asking")
	}
	v, _ := testimg.Lookup("default1k")
	img := testimg.Build(t, v)
	dst := filepath.Join(t.TempDir(), "out")
	if r := run(t, "extract", img.Path, dst); r.code != 0 {
		t.Fatalf("extract: %s", r.stderr)
	}
	devices, setid := 0, 0
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
			devices++
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 && !fi.IsDir() {
			setid++
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			t.Errorf("%s: owner %d, want the extracting user", p, st.Uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if devices != 0 || setid != 0 {
		t.Errorf("extract without --devices/--preserve-setid made %d device nodes and %d set-id files", devices, setid)
	}
	// The image does hold them: --preserve recreates them.
	dst2 := filepath.Join(t.TempDir(), "out")
	if r := run(t, "extract", "--preserve", img.Path, dst2); r.code != 0 {
		t.Fatalf("extract --preserve: %s", r.stderr)
	}
	found := 0
	filepath.Walk(dst2, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeDevice != 0 {
			found++
		}
		return nil
	})
	if found == 0 {
		t.Error("the test image has no device nodes: the test proves nothing")
	}
}
