package luks

import (
	"bytes"
	"context"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev"
)

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
}

// run runs a command with a timeout and returns its stdout.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// image is a LUKS image made by cryptsetup in a temp dir.
type image struct {
	dir     string
	path    string // data (and header unless detached)
	header  string // detached header path, or ""
	keyFile string
	key     []byte
}

// newImage creates a size-byte file and runs cryptsetup luksFormat with args
// and a 32-byte random key file.
func newImage(t testing.TB, size int64, args ...string) *image {
	t.Helper()
	needTool(t, "cryptsetup")
	dir := t.TempDir()
	im := &image{dir: dir, path: filepath.Join(dir, "img"), keyFile: filepath.Join(dir, "key")}
	im.key = pattern(32, uint64(len(args))+uint64(size))
	if err := os.WriteFile(im.keyFile, im.key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(im.path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(im.path, size); err != nil {
		t.Fatal(err)
	}
	full := []string{"luksFormat", "--batch-mode"}
	for _, a := range args {
		full = append(full, a)
		if a == "--header" {
			// A bare --header asks for a detached header file here.
			im.header = filepath.Join(dir, "hdr")
			full = append(full, im.header)
		}
	}
	full = append(full, im.path, im.keyFile)
	run(t, "cryptsetup", full...)
	return im
}

// volumeKey asks cryptsetup for the volume key.
func (im *image) volumeKey(t testing.TB) []byte {
	t.Helper()
	args := []string{"luksDump", "--dump-volume-key", "--batch-mode", "--key-file", im.keyFile}
	if im.header != "" {
		args = append(args, "--header", im.header)
	}
	out := run(t, "cryptsetup", append(args, im.path)...)
	m := regexp.MustCompile(`(?s)MK dump:\s*((?:[0-9a-f]{2}\s+)+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no MK dump in luksDump output")
	}
	key, err := hex.DecodeString(strings.Join(strings.Fields(string(m[1])), ""))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// fillEncrypted encrypts plain with Node (OpenSSL) under key and writes it to
// path at byte offset off.
func fillEncrypted(t testing.TB, path string, off int64, spec string, key []byte, sectorSize int, firstIV uint64, plain []byte) {
	t.Helper()
	needTool(t, "node")
	in := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/encrypt.js")
	if err != nil {
		t.Fatal(err)
	}
	run(t, "node", script, spec, hex.EncodeToString(key), itoa(int64(sectorSize)), itoa(int64(firstIV)), in, path, itoa(off))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func openFile(t testing.TB, path string) *blockdev.File {
	t.Helper()
	f, err := blockdev.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// checkReads compares random reads of v with want.
func checkReads(t *testing.T, v *Volume, want []byte, seed uint64) {
	t.Helper()
	if v.Size() < int64(len(want)) {
		t.Fatalf("volume size %d < %d", v.Size(), len(want))
	}
	r := rand.New(rand.NewPCG(seed, 1))
	// Whole, aligned and unaligned reads, including across chunk boundaries.
	cases := [][2]int64{{0, int64(len(want))}, {0, 1}, {511, 2}, {4095, 4098}, {int64(len(want)) - 1, 1}, {chunkSize - 7, chunkSize + 100}}
	for range 60 {
		off := r.Int64N(int64(len(want)))
		n := r.Int64N(min(int64(len(want))-off, 3<<20) + 1)
		cases = append(cases, [2]int64{off, n})
	}
	for _, c := range cases {
		off, n := c[0], c[1]
		if off+n > int64(len(want)) {
			continue
		}
		got := make([]byte, n)
		k, err := v.ReadAt(got, off)
		if err != nil || k != int(n) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, k, err)
		}
		if !bytes.Equal(got, want[off:off+n]) {
			t.Fatalf("ReadAt(%d bytes at %d): plaintext differs", n, off)
		}
	}
}

func bytesSource(b []byte) blockdev.Bytes { return blockdev.Bytes(b) }
