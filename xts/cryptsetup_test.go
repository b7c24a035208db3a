package xts

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCryptsetup encrypts a file with cryptsetup (LUKS2, detached header, so
// the data stays at offset 0), reads the volume key back with luksDump, and
// checks that this package decrypts cryptsetup's output to the original and
// re-encrypts it to cryptsetup's bytes. This pins the IV conventions,
// including large sectors using IV = 8n, to the real tool.
func TestCryptsetup(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("cryptsetup reencrypt needs root here")
	}
	for _, tc := range []struct {
		cipher     string
		keyBits    int
		sectorSize int
	}{
		{"aes-xts-plain64", 512, 4096},
		{"aes-xts-plain64", 256, 512},
		{"aes-xts-plain", 512, 1024},
		{"aes-cbc-essiv:sha256", 256, 512},
		{"aes-cbc-plain64", 128, 4096},
	} {
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "passphrase")
		if err := os.WriteFile(keyFile, []byte("correct horse battery staple"), 0o600); err != nil {
			t.Fatal(err)
		}
		plain := make([]byte, 1<<20)
		for i := range plain {
			plain[i] = byte(i*7 + i/4096)
		}
		data := filepath.Join(dir, "data.img")
		if err := os.WriteFile(data, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		hdr := filepath.Join(dir, "hdr.img")
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		t.Cleanup(cancel)
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.CommandContext(ctx, "cryptsetup", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("cryptsetup %s: %v\n%s", args[0], err, out)
			}
			return string(out)
		}
		run("reencrypt", "--encrypt", "--type", "luks2", "--header", hdr, "--cipher", tc.cipher,
			"--key-size", itoa(tc.keyBits), "--sector-size", itoa(tc.sectorSize),
			"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, "--batch-mode", data)
		dump := run("luksDump", "--dump-volume-key", "--key-file", keyFile, "--batch-mode", hdr)
		key := parseMKDump(t, dump)
		if len(key)*8 != tc.keyBits {
			t.Fatalf("%s: volume key of %d bytes, want %d bits", tc.cipher, len(key), tc.keyBits)
		}
		enc, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != len(plain) || bytes.Equal(enc, plain) {
			t.Fatalf("%s: cryptsetup did not encrypt the file in place", tc.cipher)
		}
		c, err := New(tc.cipher, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(enc))
		c.DecryptSectors(got, enc, tc.sectorSize, 0)
		if !bytes.Equal(got, plain) {
			t.Fatalf("%s/%d/%d: decryption of cryptsetup's output differs at byte %d", tc.cipher, tc.keyBits, tc.sectorSize, firstDiff(got, plain))
		}
		// A run that starts mid-volume uses that sector's IV.
		off := 3 * tc.sectorSize
		c.DecryptSectors(got[:tc.sectorSize], enc[off:off+tc.sectorSize], tc.sectorSize, uint64(off/512))
		if !bytes.Equal(got[:tc.sectorSize], plain[off:off+tc.sectorSize]) {
			t.Fatalf("%s: decrypting sector 3 alone failed", tc.cipher)
		}
		Parallel(c, 2).EncryptSectors(got, plain, tc.sectorSize, 0)
		if !bytes.Equal(got, enc) {
			t.Fatalf("%s: re-encryption differs from cryptsetup's at byte %d", tc.cipher, firstDiff(got, enc))
		}
	}
}

// parseMKDump reads the hex bytes after "MK dump:" in luksDump's output.
func parseMKDump(t *testing.T, out string) []byte {
	t.Helper()
	_, rest, ok := strings.Cut(out, "MK dump:")
	if !ok {
		t.Fatal("luksDump printed no volume key")
	}
	var key []byte
	for _, f := range strings.Fields(rest) {
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 1 {
			break
		}
		key = append(key, b[0])
	}
	return key
}

func itoa(n int) string { return strconv.Itoa(n) }
