package pack

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

const benchSize = 256 << 20

// plainFile is a benchSize file of non-zero bytes.
func plainFile(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "plain")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	for off := 0; off < benchSize; off += len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkEncryptStream is pack's data path: read ext4, encrypt, write.
// Compare with BenchmarkCryptsetupReencrypt on the same amount of data.
func BenchmarkEncryptStream(b *testing.B) {
	src := plainFile(b)
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(b.TempDir(), "img"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	key := randBytes(volumeKeySize)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if err := encryptStream(context.Background(), in, out, benchSize, key, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCryptsetupReencrypt encrypts the same data in place with
// cryptsetup (offline reencryption, the unprivileged alternative to pack).
func BenchmarkCryptsetupReencrypt(b *testing.B) {
	needTools(b, "cryptsetup")
	src := plainFile(b)
	dir := b.TempDir()
	keyFile := writeKey(b, dir, []byte("bench"))
	b.SetBytes(benchSize)
	for range b.N {
		b.StopTimer()
		img := filepath.Join(dir, "img")
		os.Remove(img)
		mustRun(b, "cp", src, img)
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(benchSize + 16<<20) // room for the header: --reduce-device-size takes it from the end
		f.Close()
		b.StartTimer()
		mustRun(b, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--batch-mode", "--sector-size", "4096",
			"--cipher", "aes-xts-plain64", "--key-size", "512", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
			"--reduce-device-size", "16M", "--key-file", keyFile, img)
	}
}
