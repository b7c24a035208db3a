package fusefs

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
	"golang.org/x/sys/unix"
)

// syncBuffer is a log sink shared by the serve loop's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// captureLogs sends slog's default logger (all levels) to a buffer until
// the test ends.
func captureLogs(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return buf
}

// Markers that must never reach the debug trace.
const (
	markerData   = "MARKER-DATA-7f3a91"
	markerName   = "marker-name-c2e8d4"
	markerTarget = "marker-target-5b06e1"
	markerXattr  = "marker-xattr-0d9c77"
)

// markerImage holds a file with markerData under the name markerName, a
// link to markerTarget and an xattr valued markerXattr.
func markerImage(t *testing.T) *ext4.FS {
	src := t.TempDir()
	file := filepath.Join(src, markerName)
	if err := os.WriteFile(file, []byte("secret: "+markerData+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(file, "user."+markerXattr, []byte(markerXattr), 0); err != nil {
		t.Logf("no xattr on the source tree: %v", err)
	}
	if err := os.Symlink(markerTarget, filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	img := testimg.FromDir(t, src)
	fh, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, _ := fh.Stat()
	fsys, err := ext4.Open(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// exercise reads everything with a marker through the mount.
func exercise(t *testing.T, mnt string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, markerName))
	if err != nil || !strings.Contains(string(b), markerData) {
		t.Fatalf("read through the mount: %q %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(mnt, "link")); target != markerTarget || err != nil {
		t.Fatalf("readlink: %q %v", target, err)
	}
	if ents, err := os.ReadDir(mnt); err != nil || len(ents) < 2 {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	sz, _ := unix.Listxattr(filepath.Join(mnt, markerName), make([]byte, 256))
	val := make([]byte, 64)
	unix.Getxattr(filepath.Join(mnt, markerName), "user."+markerXattr, val)
	if sz == 0 {
		t.Log("no xattrs listed")
	}
	if _, err := os.Stat(filepath.Join(mnt, markerName+"-absent")); err == nil {
		t.Fatal("absent name found")
	}
}

// TestDebugTraceHasNoContent: with Options.Debug the trace shows the
// operations (and inode numbers, sizes, results) but no file data, names,
// link targets or xattrs.
func TestDebugTraceHasNoContent(t *testing.T) {
	requireFUSE(t)
	fsys := markerImage(t)
	logs := captureLogs(t)
	t.Run("debug", func(t *testing.T) {
		mnt, srv := mountFUSE(t, fsys, Options{Debug: true})
		exercise(t, mnt)
		if err := srv.Unmount(); err != nil {
			t.Fatal(err)
		}
	})
	out := logs.String()
	for _, op := range []string{"op=lookup", "op=read ", "op=readlink", "op=getattr"} {
		if !strings.Contains(out, op) {
			t.Errorf("the trace lacks %q", op)
		}
	}
	if !strings.Contains(out, "n=") || !strings.Contains(out, "status=OK") || !strings.Contains(out, "dur=") {
		t.Error("the trace lacks sizes, results or times")
	}
	for _, m := range []string{markerData, markerName, markerTarget, markerXattr} {
		if strings.Contains(out, m) {
			t.Errorf("the debug trace contains %q", m)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("trace:\n%s", out)
	}
}

// TestUnsafeTraceContent: the option named unsafe does show content, which
// proves the test above can see a leak.
func TestUnsafeTraceContent(t *testing.T) {
	requireFUSE(t)
	fsys := markerImage(t)
	logs := captureLogs(t)
	t.Run("unsafe", func(t *testing.T) {
		mnt, srv := mountFUSE(t, fsys, Options{UnsafeTraceContent: true})
		exercise(t, mnt)
		if err := srv.Unmount(); err != nil {
			t.Fatal(err)
		}
	})
	if out := logs.String(); !strings.Contains(out, markerName) {
		t.Errorf("go-fuse's trace shows no names:\n%.2000s", out)
	}
}
