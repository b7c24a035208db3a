package verity

import (
	"bytes"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// memFile is an in-memory file: a blockdev.Source and an io.WriterAt.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.b))
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newTree formats an in-memory tree over data in a separate hash file.
func newTree(t testing.TB, data []byte, o FormatOptions) (*memFile, *memFile, *Params, []byte) {
	t.Helper()
	d := &memFile{b: data}
	h := &memFile{}
	p, root, err := Format(d, h, o)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	return d, h, p, root
}

func needVeritysetup(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("veritysetup not installed (Debian package cryptsetup-bin); skipping the interop test")
	}
}

func veritysetup(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("veritysetup", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rootFrom finds the root hash in veritysetup format's output.
func rootFrom(t *testing.T, out string) []byte {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "Root hash:"); ok {
			b, err := hex.DecodeString(strings.TrimSpace(rest))
			if err != nil {
				t.Fatalf("root hash in %q: %v", line, err)
			}
			return b
		}
	}
	t.Fatalf("no root hash in veritysetup output:\n%s", out)
	return nil
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll reads the whole verified image in reads of n bytes.
func readAll(t testing.TB, r *Reader, n int) []byte {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, n)
	for off := int64(0); off < r.Size(); off += int64(n) {
		k, err := r.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
		out.Write(buf[:k])
	}
	return out.Bytes()
}

func openRW(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }
