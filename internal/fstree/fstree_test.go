package fstree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSnapshotCompare(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "d/l")); err != nil {
		t.Fatal(err)
	}
	t1, err := Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(t1) != 4 || t1["d/l"].Target != "a" || t1["a"].SHA256 == "" {
		t.Fatalf("snapshot: %v", t1.Paths())
	}
	if d := Compare(t1, t1, Options{}); len(d) != 0 {
		t.Fatalf("self-compare: %v", d)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "a"), 0o600)
	os.Remove(filepath.Join(dir, "d/l"))
	os.WriteFile(filepath.Join(dir, "new"), nil, 0o644)
	t2, err := Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := strings.Join(Compare(t1, t2, Options{IgnoreCtime: true, IgnoreAtime: true}), "\n")
	for _, want := range []string{"a: mode", "a: sha256", "d/l: missing", "new: unexpected"} {
		if !strings.Contains(d, want) {
			t.Errorf("differences lack %q:\n%s", want, d)
		}
	}
}
