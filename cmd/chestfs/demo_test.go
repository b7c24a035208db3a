package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	demoImg = "../../testdata/demo.img"
	demoKey = "../../testdata/demo.key"
	demoSrc = "../../testdata/demo-src"
)

func TestReadCommandsOnDemoImage(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, "cat", "--key-file", demoKey, demoImg, "/README.txt"); got != string(want) {
		t.Errorf("cat README.txt = %q, want %q", got, want)
	}
	if got := mustRun(t, "cat", "--key-file", demoKey, demoImg, "hello"); got != string(want) {
		t.Errorf("cat through the symlink hello = %q", got)
	}
	ls := mustRun(t, "ls", "--key-file", demoKey, demoImg, "/")
	for _, name := range []string{"README.txt", "docs", "hello -> README.txt", "lost+found"} {
		if !strings.Contains(ls, " "+name+"\n") {
			t.Errorf("ls / lacks %q:\n%s", name, ls)
		}
	}
	// The same key given in hex, as the sidecar's raw-key test mode does.
	key, _ := os.ReadFile(demoKey)
	hexKey := strings.ToLower(strings.TrimSpace(fmtHex(key)))
	if got := mustRun(t, "cat", "--key-hex", hexKey, demoImg, "/docs/config.yaml"); !strings.Contains(got, "replicas: 3") {
		t.Errorf("cat with --key-hex = %q", got)
	}
}

func fmtHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestFailuresAreOneLine(t *testing.T) {
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong.key")
	os.WriteFile(wrong, bytes.Repeat([]byte{7}, 32), 0o600)
	garbage := filepath.Join(dir, "garbage.img")
	os.WriteFile(garbage, bytes.Repeat([]byte{0x5a}, 1<<20), 0o600)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"wrong key", []string{"ls", "--key-file", wrong, demoImg}, "key"},
		{"no key for a LUKS volume", []string{"ls", demoImg}, "give a key"},
		{"missing source", []string{"ls", filepath.Join(dir, "nope.img")}, "no such file"},
		{"not ext4", []string{"ls", garbage}, "neither a luks header nor an ext4 filesystem"},
		{"inspect not luks", []string{"inspect", garbage}, "neither a luks header nor an ext4 filesystem"},
		{"two keys", []string{"ls", "--key-file", demoKey, "--key-hex", "00", demoImg}, "at most one"},
		{"bad hex", []string{"ls", demoImg}, "hex"}, // the key in $CHESTFS_KEY_HEX, below
		{"missing file in image", []string{"cat", "--key-file", demoKey, demoImg, "/nope"}, "not exist"},
		{"unknown flag", []string{"ls", "--bogus", demoImg}, "usage"},
		{"too many args", []string{"cat", "--key-file", demoKey, demoImg, "/a", "/b"}, "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad hex" {
				t.Setenv("CHESTFS_KEY_HEX", "zz")
			}
			r := run(t, tc.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", r.stdout)
			}
			msg := strings.TrimRight(r.stderr, "\n")
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "chestfs: ") {
				t.Errorf("stderr is not one line starting with chestfs: %q", r.stderr)
			}
			if !strings.Contains(strings.ToLower(msg), tc.want) {
				t.Errorf("stderr %q does not mention %q", msg, tc.want)
			}
			if bytes.Contains([]byte(msg), []byte("goroutine")) || strings.Contains(msg, "panic") {
				t.Errorf("panic: %s", msg)
			}
		})
	}
	// The key must never appear in an error.
	key, _ := os.ReadFile(demoKey)
	bad := append([]byte(nil), key...)
	bad[0] ^= 1
	r := run(t, "ls", "--key-hex", fmtHex(bad), demoImg)
	if r.code == 0 || strings.Contains(r.stderr, fmtHex(bad)) || strings.Contains(r.stderr, fmtHex(key)) {
		t.Errorf("wrong hex key: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestInspectAndDecrypt(t *testing.T) {
	out := mustRun(t, "inspect", demoImg)
	for _, want := range []string{"LUKS", "aes-xts-plain64", "pbkdf2"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "inspect", "--key-file", demoKey, demoImg)
	if !strings.Contains(out, "block size:   4096") {
		t.Errorf("inspect with a key lacks the ext4 figures:\n%s", out)
	}
	plain := filepath.Join(t.TempDir(), "plain.img")
	mustRun(t, "decrypt", "--key-file", demoKey, demoImg, plain)
	b, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2048 || b[1080] != 0x53 || b[1081] != 0xef {
		t.Fatalf("decrypted volume has no ext4 superblock magic")
	}
	// The plaintext reads as an unencrypted image with no key.
	want, _ := os.ReadFile(filepath.Join(demoSrc, "docs/numbers.txt"))
	if got := mustRun(t, "cat", plain, "/docs/numbers.txt"); got != string(want) {
		t.Errorf("cat of the decrypted image differs (%d vs %d bytes)", len(got), len(want))
	}
}

// compareWithSource checks every regular file and symlink of demo-src under mp.
func compareWithSource(t *testing.T, mp string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(demoSrc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(demoSrc, p)
		got := filepath.Join(mp, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, err := os.Readlink(got)
			if err != nil || a != b {
				t.Errorf("%s: link %q vs %q (%v)", rel, b, a, err)
			}
		case d.Type().IsRegular():
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(got)
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s: content differs (%v)", rel, err)
			}
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("walked only %d entries", n)
	}
}

func TestMountDemoImage(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	m := startMount(t, nil, "--key-file", demoKey, demoImg, mp)
	compareWithSource(t, mp)

	// Read-only: writes answer EROFS and change nothing.
	if err := os.WriteFile(filepath.Join(mp, "new"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create: %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(mp, "README.txt")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("unlink: %v, want EROFS", err)
	}
	// A second mount on the busy mountpoint fails with one clear line.
	r := run(t, "mount", "--key-file", demoKey, demoImg, mp)
	if r.code == 0 || !strings.Contains(r.stderr, "busy") {
		t.Errorf("second mount: exit %d, %q", r.code, r.stderr)
	}
	if err := m.stop(t); err != nil {
		t.Errorf("mount exit after SIGTERM: %v; stderr %s", err, m.stderr)
	}
	if isMounted(mp) {
		t.Errorf("%s still mounted after SIGTERM", mp)
	}
}

func TestMountWrongKeyFailsBeforeMounting(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	wrong := filepath.Join(t.TempDir(), "k")
	os.WriteFile(wrong, []byte("not the key"), 0o600)
	r := run(t, "mount", "--key-file", wrong, demoImg, mp)
	if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if isMounted(mp) {
		t.Errorf("mounted despite a wrong key")
	}
}
