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
