package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startMockKMS runs `chestfs mock-kms` and returns its URL and CA file.
func startMockKMS(t *testing.T) (url, ca string) {
	t.Helper()
	dir := t.TempDir()
	ca = filepath.Join(dir, "ca.pem")
	cmd := exec.Command(binPath, "mock-kms", "--ca-out", ca, "--token", "test-token")
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
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", blob, "demo-key")

	want, _ := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	got := mustRun(t, "cat", "--skr", blob, "--attestation", "fake", "--ca", ca, demoImg, "/README.txt")
	if got != string(want) {
		t.Errorf("cat through key release = %q", got)
	}

	// A policy that wants other host data: Key Vault refuses with 403, said in one line.
	other := filepath.Join(t.TempDir(), "other.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", other,
		"--hostdata", strings.Repeat("ab", 32), "other-key")
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
	blob := filepath.Join(t.TempDir(), "key.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", blob, "demo-key")
	mp := t.TempDir()
	m := startMount(t, nil, "--skr", blob, "--attestation", "fake", "--ca", ca, demoImg, mp)
	compareWithSource(t, mp)
	if err := m.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
