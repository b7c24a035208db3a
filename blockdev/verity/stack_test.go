package verity

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/luks"
)

// TestUnderLUKS stacks a LUKS2 volume (made by cryptsetup) on the verified
// reader of the image with its tree appended, as chestfs reads it: the
// plaintext equals that of the volume read directly, and a flipped
// ciphertext byte makes the volume's read fail with EIO.
func TestUnderLUKS(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed (Debian package cryptsetup-bin)")
	}
	dir := t.TempDir()
	img, key := filepath.Join(dir, "img"), []byte("secret")
	if err := os.WriteFile(img, make([]byte, 20<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "key", key)
	if out, err := exec.Command("cryptsetup", "luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--batch-mode", "--key-file", keyFile, img).CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksFormat: %v\n%s", err, out)
	}
	plain := luksPlaintext(t, img, key, nil)

	off := AppendedHashOffset(20<<20, 4096)
	_, root := formatFile(t, img, img, FormatOptions{DataBlocks: uint64(off / 4096), HashOffset: off})
	if got := luksPlaintext(t, img, key, root); !bytes.Equal(got, plain) {
		t.Fatal("plaintext through verity differs from the plaintext read directly")
	}

	b := readFileT(t, img)
	b[16<<20+5*4096+9] ^= 1 // the sixth ciphertext sector
	writeFile(t, dir, "img", b)
	f, _ := blockdev.OpenFile(img)
	defer f.Close()
	r, err := Open(f, f, off, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := luks.Open(r, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	if _, err := vol.ReadAt(buf, 5*4096); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the tampered sector through LUKS: %v, want EIO", err)
	}
	if n, err := vol.ReadAt(buf, 0); err != nil || !bytes.Equal(buf[:n], plain[:8192]) {
		t.Fatalf("read of good sectors: %v", err)
	}
}

// luksPlaintext reads the first MiB of the volume, through verity when root is set.
func luksPlaintext(t *testing.T, img string, key, root []byte) []byte {
	t.Helper()
	f, err := blockdev.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var src blockdev.Source = f
	if root != nil {
		if src, err = Open(f, f, AppendedHashOffset(20<<20, 4096), root, nil); err != nil {
			t.Fatal(err)
		}
	}
	vol, err := luks.Open(src, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if vol.Size() != 4<<20 {
		t.Fatalf("volume of %d bytes, want 4 MiB (the tree is not part of it)", vol.Size())
	}
	buf := make([]byte, 1<<20)
	if _, err := vol.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf
}
