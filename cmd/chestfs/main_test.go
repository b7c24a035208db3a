package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/testimg"
)

// binPath is the chestfs binary built once for the CLI tests, in a directory
// every user can read so the unprivileged test can run it too.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chestfs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	binPath = filepath.Join(dir, "chestfs")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building chestfs: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	testimg.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary printed.
type result struct {
	stdout, stderr string
	code           int
}

// run runs chestfs with a deadline and returns its output and exit code.
func run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("chestfs %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustRun runs chestfs and fails the test on a non-zero exit.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("chestfs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// requireFUSE skips unless the test can mount FUSE filesystems (root and /dev/fuse).
func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE and loop filesystems (CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("needs fusermount3 (Debian package fuse3)")
	}
}

// isMounted reports whether mp is in the mount table.
func isMounted(mp string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == mp {
			return true
		}
	}
	return false
}

// mountProc is a running `chestfs mount`.
type mountProc struct {
	cmd    *exec.Cmd
	mp     string
	stderr *bytes.Buffer
	done   chan error
}

// startMount starts `chestfs mount ARGS... SOURCE MP` and waits until the
// filesystem shows at mp. The mount is torn down at cleanup whatever happens.
func startMount(t testing.TB, cmdMod func(*exec.Cmd), args ...string) *mountProc {
	t.Helper()
	mp := args[len(args)-1]
	cmd := exec.Command(binPath, append([]string{"mount"}, args...)...)
	var se bytes.Buffer
	cmd.Stderr = &se
	if cmdMod != nil {
		cmdMod(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mountProc{cmd: cmd, mp: mp, stderr: &se, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()
	t.Cleanup(func() { m.kill() })
	deadline := time.After(60 * time.Second)
	for !isMounted(mp) {
		select {
		case err := <-m.done:
			m.done <- err
			t.Fatalf("mount exited before mounting (%v): %s", err, se.String())
		case <-deadline:
			t.Fatalf("mount not ready after 60 s: %s", se.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return m
}

// stop sends SIGTERM and returns the exit error; it fails the test if the
// process does not exit within 30 s.
func (m *mountProc) stop(t testing.TB) error {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Errorf("mount did not exit 30 s after SIGTERM: %s", m.stderr.String())
		m.kill()
		return fmt.Errorf("killed")
	}
}

// kill makes sure nothing is left running or mounted.
func (m *mountProc) kill() {
	select {
	case err := <-m.done:
		m.done <- err
	default:
		m.cmd.Process.Kill()
		select {
		case err := <-m.done:
			m.done <- err
		case <-time.After(10 * time.Second):
		}
	}
	if isMounted(m.mp) {
		syscall.Unmount(m.mp, syscall.MNT_DETACH)
	}
}
