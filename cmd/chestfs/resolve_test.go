package main

import (
	"os"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/internal/testimg"
)

// TestCatFollowsSymlinksAsTheKernel: cat resolves paths with ext4's one
// resolver, so a link's relative target starts at the link's directory
// (a/b/link -> ../x reads /a/x), as the kernel's path walk does.
func TestCatFollowsSymlinksAsTheKernel(t *testing.T) {
	dir := t.TempDir()
	if err := testimg.SymlinkTree(dir); err != nil {
		t.Fatal(err)
	}
	img := testimg.FromDir(t, dir)
	for _, p := range []string{"a/b/link", "/a/b/abs", "a/b/dotdot", "a/b/escape"} {
		want, err := os.ReadFile(dir + "/a/x")
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRun(t, "cat", img.Path, p); got != string(want) {
			t.Errorf("cat %s = %q, want %q", p, got, want)
		}
	}
	if r := run(t, "cat", img.Path, "a/b/nothere"); r.code == 0 || !strings.Contains(r.stderr, "a/b/nothere: no such file") {
		t.Errorf("missing path: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, "cat", img.Path, "loop1"); r.code == 0 || !strings.Contains(r.stderr, "too many levels of symbolic links") {
		t.Errorf("link loop: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := mustRun(t, "cat", img.Path, "chain1"); !strings.Contains(got, "content of /a/x") {
		t.Errorf("cat chain1 = %q", got)
	}
}
