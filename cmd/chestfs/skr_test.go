package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
)

// startMockKMS runs `chestfs mock-kms` and returns its URL and CA file.
func startMockKMS(t *testing.T) (url, ca string) {
	t.Helper()
	dir := t.TempDir()
	ca = filepath.Join(dir, "ca.pem")
	cmd := exec.Command(binPath, "mock-kms", "--state-dir", dir, "--token", "test-token")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
	}()
	select {
	case url = <-line:
	case <-time.After(60 * time.Second):
		t.Fatal("mock-kms did not print its URL within 60 s")
	}
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("mock-kms printed %q", url)
	}
	return url, ca
}

func TestKeyReleaseThroughMockKMS(t *testing.T) {
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	blob := filepath.Join(t.TempDir(), "key.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", blob, "--key-name", "demo-key")

	want, _ := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	got := mustRun(t, "cat", "--skr", blob, "--attestation", "fake", "--ca", ca, demoImg, "/README.txt")
	if got != string(want) {
		t.Errorf("cat through key release = %q", got)
	}

	// A policy that wants other host data: Key Vault refuses with 403, said in one line.
	other := filepath.Join(t.TempDir(), "other.json")
	ir := run(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", other,
		"--hostdata", strings.Repeat("ab", 32), "--key-name", "other-key")
	// It shows the policy it set: the four claims that tie the key to an attested UVM.
	for _, claim := range []string{"x-ms-sevsnpvm-hostdata", "x-ms-compliance-status", "x-ms-sevsnpvm-vmpl", "x-ms-sevsnpvm-is-debuggable", strings.Repeat("ab", 32)} {
		if ir.code != 0 || !strings.Contains(ir.stderr, claim) {
			t.Errorf("import-key: exit %d, printed policy lacks %q: %s", ir.code, claim, ir.stderr)
		}
	}
	r := run(t, "ls", "--skr", other, "--attestation", "fake", "--ca", ca, demoImg)
	if r.code == 0 || !strings.Contains(r.stderr, "403") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 2 {
		t.Errorf("policy mismatch: exit %d, stderr %q", r.code, r.stderr)
	}
	// Without the mock's CA the TLS check fails, named as such.
	r = run(t, "ls", "--skr", blob, "--attestation", "fake", demoImg)
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "certificate") {
		t.Errorf("unknown CA: exit %d, stderr %q", r.code, r.stderr)
	}
	// A wrong bearer token is a 401.
	t.Setenv("CHESTFS_AKV_TOKEN", "wrong")
	r = run(t, "ls", "--skr", blob, "--attestation", "fake", "--ca", ca, demoImg)
	if r.code == 0 || !strings.Contains(r.stderr, "401") {
		t.Errorf("wrong token: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestMountWithKeyRelease(t *testing.T) {
	requireFUSE(t)
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	// A fresh key, so that finding its bytes in a file means chestfs put them there.
	imgDir := t.TempDir()
	img, keyFile := filepath.Join(imgDir, "img"), filepath.Join(imgDir, "key")
	mustRun(t, "pack", "--new-key", keyFile, "--pbkdf", "pbkdf2", "--iterations", "1000", demoSrc, img)
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(t.TempDir(), "key.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", keyFile, "--out", blob, "--key-name", "fs-key")
	mp := t.TempDir()
	m := startMount(t, nil, "--skr", blob, "--attestation", "fake", "--ca", ca, img, mp)
	compareWithSource(t, mp)
	// The mount equals the kernel's view of the plaintext (decrypted by chestfs, mounted by the kernel).
	plain := filepath.Join(t.TempDir(), "plain.img")
	mustRun(t, "decrypt", "--key-file", keyFile, img, plain)
	kernel, err := fstree.Snapshot(testimg.Image{Path: plain}.Mount(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fstree.Snapshot(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fstree.Compare(kernel, got, fstree.Options{}) {
		t.Error(d)
	}
	kmsDir := filepath.Dir(ca) // the mock is the vault: its state holds the key by design
	for _, root := range []string{os.TempDir(), "/var/tmp", "/dev/shm"} {
		if hit := findInFiles(t, root, key, kmsDir, imgDir); hit != "" {
			t.Errorf("the released key is in %s", hit)
		}
	}
	if err := m.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}

	// A key whose policy wants other host data is refused and nothing is mounted.
	other := filepath.Join(t.TempDir(), "other.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", other,
		"--hostdata", strings.Repeat("cd", 32), "--key-name", "refused-key")
	r := run(t, "mount", "--skr", other, "--attestation", "fake", "--ca", ca, img, mp)
	if r.code == 0 || !strings.Contains(r.stderr, "403") {
		t.Errorf("refused release: exit %d, %q", r.code, r.stderr)
	}
	if isMounted(mp) {
		t.Errorf("mounted although the release was refused")
	}
}

// findInFiles returns a regular file under root (skipping skip) that
// contains needle, or "". Large files are skipped: the key would sit in a
// small file if anywhere.
func findInFiles(t *testing.T, root string, needle []byte, skip ...string) string {
	t.Helper()
	found := ""
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		for _, s := range skip {
			if p == s {
				return filepath.SkipDir
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 64<<20 {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
			found = p
		}
		return nil
	})
	return found
}
