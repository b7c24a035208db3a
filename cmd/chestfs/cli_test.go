package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVersionHelpAndUnknown: version and --version, help for a command, an
// unknown command with the nearest one suggested, flags after the
// positional arguments.
func TestVersionHelpAndUnknown(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out := mustRun(t, args...); !strings.Contains(out, "chestfs") || !strings.Contains(out, "go1.") {
			t.Errorf("%v: %q", args, out)
		}
	}
	if out := mustRun(t, "help", "mount"); !strings.Contains(out, "--key-file") || !strings.Contains(out, "--ready-file") {
		t.Errorf("help mount: %q", out)
	}
	r := run(t, "moutn")
	if r.code != exitUsage || !strings.Contains(r.stderr, "unknown command 'moutn'") || !strings.Contains(r.stderr, "'mount'") {
		t.Errorf("unknown command: exit %d, %q", r.code, r.stderr)
	}
	if out := mustRun(t, "cat", demoImg, "/README.txt", "--key-file", demoKey); !strings.Contains(out, "chestfs") {
		t.Errorf("flags after the arguments: %q", out)
	}
}

// TestCompletionAndMan: completion scripts for three shells, the words they
// ask chestfs for, and the manual page.
func TestCompletionAndMan(t *testing.T) {
	for sh, want := range map[string]string{"bash": "complete -o default", "zsh": "#compdef chestfs", "fish": "complete -c chestfs"} {
		if out := mustRun(t, "completion", sh); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q", sh, want)
		}
	}
	if r := run(t, "completion", "tcsh"); r.code != exitUsage {
		t.Errorf("completion tcsh: exit %d", r.code)
	}
	if out := mustRun(t, "--generate-bash-completion"); !strings.Contains(out, "mount") || !strings.Contains(out, "verity") {
		t.Errorf("completion words: %q", out)
	}
	if out := mustRun(t, "man"); !strings.Contains(out, ".TH") || !strings.Contains(out, "verity") {
		t.Errorf("man page: %.200q", out)
	}
	if _, err := exec.LookPath("bash"); err == nil {
		script := mustRun(t, "completion", "bash")
		cmd := exec.Command("bash", "-c", script+"\nCOMP_WORDS=("+binPath+" veri); COMP_CWORD=1; _chestfs; echo \"${COMPREPLY[@]}\"")
		if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "verity" {
			t.Errorf("bash completion of 'veri': %q, %v", out, err)
		}
	}
}

// TestExitCodes: each kind of failure has its own status.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("nope"), 0o600)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, bytes.Repeat([]byte{7}, 1<<20), 0o600)
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"usage", []string{"ls", "--bogus", demoImg}, exitUsage},
		{"malformed flag value", []string{"ls", "--verity-root", "zz", demoImg}, exitUsage},
		{"malformed size", []string{"ls", "--cache-size", "lots", demoImg}, exitUsage},
		{"verity: root of no algorithm", []string{"verity", "verify", demoImg, "00"}, exitUsage},
		{"verity: no tree", []string{"verity", "dump", garbage}, exitCorrupt},
		{"no key", []string{"ls", demoImg}, exitUsage},
		{"wrong key", []string{"ls", "--key-file", wrong, demoImg}, exitKey},
		{"missing source", []string{"ls", filepath.Join(dir, "nope.img")}, exitNotFound},
		{"missing path", []string{"cat", "--key-file", demoKey, demoImg, "/nope"}, exitNotFound},
		{"not an image", []string{"ls", garbage}, exitCorrupt},
		{"network", []string{"ls", "--retries", "0", "--io-timeout", "2s", "http://127.0.0.1:1/devstoreaccount1/c/b.img"}, exitIO},
	}
	for _, tc := range cases {
		if r := run(t, tc.args...); r.code != tc.code {
			t.Errorf("%s: exit %d, want %d (%s)", tc.name, r.code, tc.code, strings.TrimSpace(r.stderr))
		}
	}
}

// TestMountFailureStatus: a FUSE mount that cannot be made exits 32, as
// mount(8) does, and says so before any key is asked for. The test's own
// private mount namespace puts a plain file where /dev/fuse is.
func TestMountFailureStatus(t *testing.T) {
	requireFUSE(t)
	empty := filepath.Join(t.TempDir(), "not-fuse")
	os.WriteFile(empty, nil, 0o666)
	mp := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		"mount --bind "+shQuote(empty)+" /dev/fuse && exec "+shQuote(binPath)+" mount --key-file "+shQuote(demoKey)+" "+shQuote(demoImg)+" "+shQuote(mp))
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitMountFail {
		t.Errorf("exit %v, want %d: %s", err, exitMountFail, se.String())
	}
	// A key blob whose services do not exist: /dev/fuse is checked before them.
	blob := filepath.Join(t.TempDir(), "key.json")
	os.WriteFile(blob, []byte(`{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"https://127.0.0.1:1"},"akv":{"endpoint":"https://127.0.0.1:1"}}`), 0o600)
	cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		"mount -t tmpfs none /dev && exec "+shQuote(binPath)+" mount --attestation fake --skr "+shQuote(blob)+" "+shQuote(demoImg)+" "+shQuote(mp))
	se.Reset()
	cmd.Stderr = &se
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitMountFail || !strings.Contains(se.String(), "/dev/fuse") {
		t.Errorf("no /dev/fuse: %v, %s (want exit %d naming /dev/fuse before the key release)", err, se.String(), exitMountFail)
	}
}

// TestDecryptOutputs: a device is written in place and stays a device,
// "-" is standard output, an existing file needs --force.
func TestDecryptOutputs(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	mustRun(t, "decrypt", "--key-file", demoKey, demoImg, plain)
	want, _ := os.ReadFile(plain)
	if got := mustRun(t, "decrypt", "--key-file", demoKey, demoImg, "-"); got != string(want) {
		t.Errorf("decrypt to -: %d bytes, want %d", len(got), len(want))
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
		t.Error("decrypt - made a file named -")
	}
	os.WriteFile(plain, []byte("precious"), 0o644)
	if r := run(t, "decrypt", "--key-file", demoKey, demoImg, plain); r.code != exitUsage || !strings.Contains(r.stderr, "--force") {
		t.Errorf("existing file: exit %d, %q", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(plain); string(b) != "precious" {
		t.Error("an existing file was replaced without --force")
	}
	mustRun(t, "decrypt", "--force", "--key-file", demoKey, demoImg, plain)
	if b, _ := os.ReadFile(plain); !bytes.Equal(b, want) {
		t.Error("--force did not replace the file")
	}
	if os.Geteuid() != 0 {
		t.Skip("a device node needs root (mknod)")
	}
	null := filepath.Join(dir, "null")
	if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "decrypt", "--key-file", demoKey, demoImg, null)
	if st, err := os.Stat(null); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("%s after decrypt: %v, %v (want still a character device)", null, st.Mode(), err)
	}
}

// TestFstabStyleMount: mount.fuse3 runs "chestfs SOURCE MOUNTPOINT -o
// OPTS" for an fstab line of type fuse.chestfs; it returns once the mount
// serves, which keeps running in the background. -o works for run too.
func TestFstabStyleMount(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	r := run(t, demoImg, mp, "-o", "ro,nodev,nosuid,key_file="+demoKey+",cache_size=64M,x-systemd.automount")
	if r.code != 0 {
		t.Fatalf("fstab-style mount: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { syscall.Unmount(mp, syscall.MNT_DETACH) })
	if b, err := os.ReadFile(filepath.Join(mp, "README.txt")); err != nil || len(b) == 0 {
		t.Fatalf("read: %v", err)
	}
	mustRun(t, "unmount", mp)
	deadline := time.Now().Add(20 * time.Second)
	for isMounted(mp) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if out := mustRun(t, "run", "-o", "key_file="+demoKey, demoImg, mp, "--", "cat", filepath.Join(mp, "hello")); !strings.Contains(out, "chestfs") {
		t.Errorf("run -o: %q", out)
	}
	if r := run(t, demoImg, mp, "-o", "key_file="+demoKey+",bogus_option=1"); r.code != exitUsage || !strings.Contains(r.stderr, "bogus-option") {
		t.Errorf("unknown -o option: exit %d, %q", r.code, r.stderr)
	}
}
