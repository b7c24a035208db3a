package pack

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/luks"
)

// TestReadBackWithLuks opens a packed image with chestfs's own LUKS reader
// and checks that it gives the same plaintext as OpenSSL.
func TestReadBackWithLuks(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4", "node")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "f"), bytes.Repeat([]byte("0123456789abcdef"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	key := []byte("read back")
	keyFile := writeKey(t, tmp, key)
	image := filepath.Join(tmp, "img")
	if _, err := Pack(testCtx(t), testOptions(dir, image, key)); err != nil {
		t.Fatal(err)
	}
	plain := decryptWithNode(t, image, dumpVolumeKey(t, image, keyFile))
	readBackWithLuks(t, image, key, plain)
}

// readBackWithLuks opens image with chestfs's own LUKS reader and checks
// that it gives the same plaintext as OpenSSL.
func readBackWithLuks(t *testing.T, image string, key []byte, plainPath string) {
	t.Helper()
	src, err := blockdev.OpenFile(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	v, err := luks.Open(src, nil, key)
	if err != nil {
		t.Fatalf("luks.Open: %v", err)
	}
	want, err := os.ReadFile(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() != int64(len(want)) {
		t.Fatalf("luks volume of %d bytes, want %d", v.Size(), len(want))
	}
	got := make([]byte, len(want))
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("luks reader and OpenSSL disagree on the plaintext")
	}
	if _, err := luks.Open(src, nil, append(key, 'x')); err == nil {
		t.Error("luks reader accepted a wrong key")
	}
}
