package extract

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/sys/unix"
)

// TestReportAndGoOn: entries the destination refuses (a user.* xattr on a
// symlink: EPERM; an xattr too large for it: ENOSPC; a second entry of the
// same name in one directory: EEXIST) or that cannot be made (a symlink
// whose target is empty once cut at its first NUL, as the kernel reads it)
// are each reported in one printable line while everything else is
// extracted; Tree then fails with the count, as tar does.
func TestReportAndGoOn(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	src := t.TempDir()
	for name, body := range map[string]string{"a": "hello\n", "z": "last\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-O", "ea_inode,^metadata_csum", "-d", src, img, "8M")
	cmds := strings.Join([]string{
		"symlink /sl target",
		"ea_set /sl user.x hello",
		"write " + filepath.Join(src, "a") + " dux",
		"write " + filepath.Join(src, "a") + " dup",
		"symlink /nul " + strings.Repeat("N", 100),
	}, "\n")
	cf := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(cf, []byte(cmds+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "debugfs", "-w", "-f", cf, img)
	// Too long for a command file line; fine as -R.
	run(t, "debugfs", "-w", "-R", "ea_set /a user.big "+strings.Repeat("x", 20000), img)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Rename "dux" to "dup" in the root directory block (no checksums);
	// fill the slow symlink's target with NULs (the 1 KiB of NULs once
	// printed raw to a terminal).
	if i := bytes.Index(raw, []byte("dux")); i < 0 || bytes.Count(raw, []byte("dux")) != 1 {
		t.Fatal("dux not found once")
	} else {
		raw[i+2] = 'p'
	}
	if i := bytes.Index(raw, bytes.Repeat([]byte("N"), 100)); i < 0 {
		t.Fatal("slow symlink target not found")
	} else {
		copy(raw[i:], make([]byte, 100))
	}
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "out")
	var reported []string
	var lines []string
	n, err := Tree(context.Background(), openFS(t, img), dst, Options{Report: func(p string, err error) {
		reported = append(reported, p)
		lines = append(lines, err.Error())
	}})
	var inc *IncompleteError
	if !errors.As(err, &inc) {
		t.Fatalf("Tree: %v, want an *IncompleteError", err)
	}
	t.Logf("%d extracted; %v", n, err)
	for _, l := range lines {
		t.Logf("reported: %s", l)
		for _, r := range l {
			if !unicode.IsPrint(r) {
				t.Errorf("reported line has %q: %s", r, strconv.Quote(l))
			}
		}
		if len(l) > 2*maxLine {
			t.Errorf("reported line of %d bytes", len(l))
		}
	}
	want := map[string]bool{"/sl": true, "/dup": true, "/nul": true}
	// ENOSPC for 20000 bytes needs a destination that cannot hold them.
	if err := setXattr(t, filepath.Join(t.TempDir(), "probe"), 20000); err != nil {
		want["/a"] = true
	}
	if inc.Failed != len(want) || len(reported) != len(want) {
		t.Errorf("%d failed, reported %q; want %d: %v", inc.Failed, reported, len(want), want)
	}
	for _, p := range reported {
		if !want[p] {
			t.Errorf("reported %q, not expected", p)
		}
	}
	if !strings.Contains(err.Error(), strconv.Itoa(len(want))+" entries could not be extracted") {
		t.Errorf("final error %q lacks the count", err)
	}
	for name, body := range map[string]string{"a": "hello\n", "z": "last\n", "dup": "hello\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != body {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	if tgt, err := os.Readlink(filepath.Join(dst, "sl")); err != nil || tgt != "target" {
		t.Errorf("sl: %q %v (the symlink itself is made; only its xattr fails)", tgt, err)
	}
}

// setXattr probes whether the destination filesystem takes an n-byte
// user xattr.
func setXattr(t *testing.T, p string, n int) error {
	t.Helper()
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return lsetxattr(p, "user.probe", make([]byte, n))
}

func lsetxattr(p, name string, v []byte) error { return unix.Lsetxattr(p, name, v, 0) }

// TestEntryErrorPrintable: raw bytes of the image (a name with a newline,
// a link target of NULs inside an os error) never reach the line raw.
func TestEntryErrorPrintable(t *testing.T) {
	target := string(make([]byte, 1024))
	e := &EntryError{Path: "/d/bad\nname\x00", Err: &os.LinkError{Op: "symlink", Old: target, New: "/x/" + target, Err: unix.EEXIST}}
	line := e.Error()
	if strings.ContainsAny(line, "\x00\n") || len(line) > 200 {
		t.Errorf("line %q", line)
	}
	if want := `extract: "/d/bad\nname\x00": symlink: file exists`; line != want {
		t.Errorf("line %s, want %s", line, want)
	}
	if !errors.Is(e, unix.EEXIST) {
		t.Error("EntryError does not unwrap to its cause")
	}
	long := &EntryError{Path: strings.Repeat("\x01", 5000), Err: errors.New(strings.Repeat("\x02", 5000))}
	if l := long.Error(); len(l) > 6*maxLine || strings.ContainsAny(l, "\x01\x02") {
		t.Errorf("long line of %d bytes", len(l))
	}
}
