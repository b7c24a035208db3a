package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// TestSiblingPush: reading a file of a directory from its start pushes
// the following small regular files into the kernel's page cache;
// they then read, with the image's bytes, without a READ request. Files
// too large to push, empty files and subdirectories are skipped.
func TestSiblingPush(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	const n = 48
	want := map[string][]byte{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%03d", i)
		size := 1 + i*997%20000
		switch i {
		case 5:
			size = maxPushFile + 1
		case 6:
			size = 0
		}
		want[name] = testimg.Pattern(uint32(i+1), size)
		if err := os.WriteFile(filepath.Join(src, name), want[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "f007sub"), 0o755); err != nil {
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
	var reads atomic.Int64
	obs := func(op string, d time.Duration, n int, err error) {
		if op == "read" {
			reads.Add(1)
		}
	}
	mnt, srv := mountFUSE(t, fsys, Options{Observe: obs})
	// In the directory's order (pushes follow it), not sorted.
	dir, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	listed, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel holds every node (a push to a node it does not know is
	// refused), as it does for a program that stats what it reads.
	var names []string
	for _, name := range listed {
		if _, err := os.Lstat(filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		// lost+found stays: the pusher's window counts every entry of the
		// listing, wherever the hash order puts it.
		names = append(names, name)
	}
	if len(names) != n+2 {
		t.Fatalf("%d entries, want %d", len(names), n+2)
	}
	check := func(name string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if name == "f007sub" || name == "lost+found" {
			return
		}
		if err != nil || !bytes.Equal(got, want[name]) {
			t.Fatalf("%s: %d bytes (%v), want %d", name, len(got), err, len(want[name]))
		}
	}
	// A READ of entry i pushes the small non-empty regular files among
	// the next w entries; they then read without a READ request.
	window := func(i, w int) {
		t.Helper()
		pushed := srv.raw.sib.pushed.Load()
		before := reads.Load()
		check(names[i])
		if reads.Load() == before {
			t.Fatalf("%s: read without a READ request", names[i])
		}
		var pushable int64
		for _, name := range names[i+1 : i+1+w] {
			if w, ok := want[name]; ok && len(w) > 0 && len(w) <= maxPushFile {
				pushable++
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for srv.raw.sib.pushed.Load()-pushed < pushable {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %d files pushed, want %d", names[i], srv.raw.sib.pushed.Load()-pushed, pushable)
			}
			time.Sleep(10 * time.Millisecond)
		}
		before = reads.Load()
		for _, name := range names[i+1 : i+1+w] {
			if len(want[name]) <= maxPushFile {
				check(name)
			}
		}
		if got := reads.Load(); got != before {
			t.Errorf("after %s: %d READ requests for pushed files, want none", names[i], got-before)
		}
	}
	// The first file read in the directory pushes a few, the next READ
	// (the first file not pushed) a whole window.
	// (From the first regular file on: the hash order may put a directory
	// first, whose reading is no READ.)
	file := func(i int) int {
		for len(want[names[i]]) == 0 {
			i++
		}
		return i
	}
	first := file(0)
	window(first, pushWindow/4)
	window(file(first+pushWindow/4+1), pushWindow)
	// The large file and the rest read through the server as usual.
	for _, name := range names {
		check(name)
	}
}

// TestSiblingPushOff: Options.NoSiblingPush pushes nothing.
func TestSiblingPushOff(t *testing.T) {
	requireFUSE(t)
	fsys, _ := openImage(t, "default4k")
	mnt, srv := mountFUSE(t, fsys, Options{NoSiblingPush: true})
	ents, err := os.ReadDir(filepath.Join(mnt, "dirs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if _, err := os.ReadFile(filepath.Join(mnt, "dirs", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if srv.raw.sib.jobs != nil || srv.raw.sib.pushed.Load() != 0 {
		t.Fatal("pushed with NoSiblingPush")
	}
}
