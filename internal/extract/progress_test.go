package extract

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/internal/progress"
)

// TestProgress: the Progress writer gets the bar up to 100% with the
// entries, which Extract also returns with the bytes; quiet gets nothing.
func TestProgress(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	src := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(src, "d", "l")); err != nil {
		t.Fatal(err)
	}
	fsys := openFS(t, mkfs(t, src, 8))

	var out bytes.Buffer
	p := progress.New(&out, progress.Options{Prefix: "x", Mode: progress.ModeBar})
	res, err := Extract(context.Background(), fsys, filepath.Join(t.TempDir(), "out"), Options{Progress: p})
	if err != nil {
		t.Fatal(err)
	}
	// a, b, d, d/l and lost+found
	if res.Entries != 5 || res.Bytes != 2*int64(len(data)) {
		t.Errorf("result %+v, want 5 entries and %d bytes", res, 2*len(data))
	}
	if s := out.String(); !strings.Contains(s, "x: extracting (5 entries) 100%") || !strings.HasSuffix(s, "\n") {
		t.Errorf("progress %q", s)
	}
	if est := dataEstimate(fsys); est < res.Bytes || est > 2*res.Bytes {
		t.Errorf("data estimate %d for %d bytes of data", est, res.Bytes)
	}

	out.Reset()
	q := progress.New(&out, progress.Options{Mode: progress.ModeQuiet})
	if _, err := Extract(context.Background(), fsys, filepath.Join(t.TempDir(), "out"), Options{Progress: q}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("quiet: %q", out.String())
	}
}
