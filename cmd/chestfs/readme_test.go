package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeWalkthrough runs the README's laptop walk-through as it stands,
// in an empty directory with chestfs on PATH, and checks what it printed:
// a README that works as written.
func TestReadmeWalkthrough(t *testing.T) {
	requireFUSE(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "<!-- walkthrough:begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("the README has no walkthrough markers")
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(strings.TrimSuffix(block, "```"), "```sh")
	dir := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binPath)+":"+os.Getenv("PATH"), "HOME="+dir)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the walk-through did not finish: %s", se.String())
	}
	t.Cleanup(func() {
		mnt := filepath.Join(dir, "mnt")
		if isMounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if err != nil {
		t.Fatalf("the README's walk-through failed: %v\nstdout: %s\nstderr: %s", err, so.String(), se.String())
	}
	if !strings.Contains(so.String(), "hello from my image") {
		t.Errorf("the walk-through did not read the file back: %q", so.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "my.key")); !os.IsNotExist(err) {
		t.Error("my.key is still there")
	}
	if isMounted(filepath.Join(dir, "mnt")) {
		t.Error("the walk-through left a mount")
	}
}
