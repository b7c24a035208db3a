package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackThenRead(t *testing.T) {
	dir := t.TempDir()
	img, key := filepath.Join(dir, "img"), filepath.Join(dir, "key")
	mustRun(t, "pack", "--new-key", key, "--pbkdf", "pbkdf2", "--iterations", "1000", demoSrc, img)
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("new key: %v %v", st, err)
	}
	if _, err := exec.LookPath("cryptsetup"); err == nil {
		out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", key, img).CombinedOutput()
		if err != nil {
			t.Errorf("cryptsetup refuses the key: %v %s", err, out)
		}
	}
	want, _ := os.ReadFile(filepath.Join(demoSrc, "docs/numbers.txt"))
	if got := mustRun(t, "cat", "--key-file", key, img, "/docs/numbers.txt"); got != string(want) {
		t.Errorf("packed file differs")
	}
	// An existing image is not replaced without --force, and the refusal is one line.
	r := run(t, "pack", "--key-file", key, demoSrc, img)
	if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("pack over an existing image: exit %d, %q", r.code, r.stderr)
	}
}

func TestPackBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	img := filepath.Join(dir, "img")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{"pack", "--key-file", demoKey, filepath.Join(dir, "nope"), img}, "nope"},
		{"missing key file", []string{"pack", "--key-file", filepath.Join(dir, "nokey"), demoSrc, img}, "nokey"},
		{"empty key file", []string{"pack", "--key-file", empty, demoSrc, img}, "empty key"},
		{"no key", []string{"pack", demoSrc, img}, "--key-file"},
		{"unwritable image path", []string{"pack", "--key-file", demoKey, demoSrc, filepath.Join(dir, "no", "such", "img")}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q (want one line naming %q)", r.code, r.stderr, tc.want)
			}
		})
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind in %s: %v", dir, ents)
	}
}

// TestPackFullDisk packs onto a tmpfs too small for the image: a clear error
// and nothing left on it.
func TestPackFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	src := t.TempDir()
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, n), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, "pack", "--key-file", demoKey, "--pbkdf", "pbkdf2", "--iterations", "1000", src, filepath.Join(mnt, "img"))
	if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("pack onto a full disk: exit %d, %q", r.code, r.stderr)
	}
	ents, _ := os.ReadDir(mnt)
	if len(ents) != 0 {
		t.Errorf("left behind on the full disk: %v", ents)
	}
}
