package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestKeyOffTheCommandLine: the key can come from standard input or the
// environment, and a key or token given on the command line draws a warning.
func TestKeyOffTheCommandLine(t *testing.T) {
	key, err := os.ReadFile(demoKey)
	if err != nil {
		t.Fatal(err)
	}
	runWith := func(stdin []byte, env []string, args ...string) (string, string, error) {
		cmd := exec.Command(binPath, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Env = append(os.Environ(), env...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		return so.String(), se.String(), err
	}
	out, se, err := runWith(key, nil, "cat", "--key-file", "-", demoImg, "/docs/config.yaml")
	if err != nil || !strings.Contains(out, "replicas: 3") || strings.Contains(se, "cmdline") {
		t.Errorf("--key-file -: err %v, out %q, stderr %q", err, out, se)
	}
	out, se, err = runWith(nil, []string{"CHESTFS_KEY_HEX=" + fmtHex(key)}, "cat", demoImg, "/docs/config.yaml")
	if err != nil || !strings.Contains(out, "replicas: 3") || strings.Contains(se, "cmdline") {
		t.Errorf("CHESTFS_KEY_HEX: err %v, out %q, stderr %q", err, out, se)
	}
	for _, args := range [][]string{
		{"cat", "--key-hex", fmtHex(key), demoImg, "/docs/config.yaml"},
		{"cat", "--key-file", demoKey, "--akv-token=tok-xyzzy", demoImg, "/docs/config.yaml"},
	} {
		out, se, err = runWith(nil, nil, args...)
		if err != nil || !strings.Contains(out, "replicas: 3") || !strings.Contains(se, "/proc/PID/cmdline") {
			t.Errorf("%v: err %v, stderr %q (want a warning naming /proc/PID/cmdline)", args[1:3], err, se)
		}
		if strings.Contains(se, fmtHex(key)) || strings.Contains(se, "xyzzy") {
			t.Errorf("%v: the warning repeats the secret: %q", args[1:3], se)
		}
	}
}

// TestProcessMemoryIsClosed: chestfs makes itself undumpable at start, so a
// process of the same user cannot open its /proc/PID/mem (where the key
// lives while it runs), and it writes no core files. Both run as nobody,
// since root could read any process's memory anyway.
func TestProcessMemoryIsClosed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run chestfs and the reader as the same ordinary user (CI runs as root)")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "chestfs-mem-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	asNobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd := exec.Command(binPath, "mock-kms", "--state-dir", filepath.Join(dir, "kms"))
	cmd.SysProcAttr = asNobody
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil { // its URL: it is up
		t.Fatalf("mock-kms as nobody did not start: %v", err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	limits, err := os.ReadFile("/proc/" + pid + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Max core file size\s+0\s+0\s`).Match(limits) {
		t.Errorf("core size is not 0:\n%s", limits)
	}
	probe := exec.Command("sh", "-c", "exec 3</proc/"+pid+"/mem && echo opened")
	probe.SysProcAttr = asNobody
	got, _ := probe.CombinedOutput()
	if strings.Contains(string(got), "opened") || !strings.Contains(string(got), "denied") {
		t.Errorf("a process of the same user opening /proc/%s/mem: %q (want permission denied)", pid, got)
	}
	// The same probe against an ordinary process of nobody opens it: the test can tell.
	sleeper := exec.Command("sleep", "30")
	sleeper.SysProcAttr = asNobody
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	control := exec.Command("sh", "-c", "exec 3</proc/"+strconv.Itoa(sleeper.Process.Pid)+"/mem && echo opened")
	control.SysProcAttr = asNobody
	if got, _ := control.CombinedOutput(); !strings.Contains(string(got), "opened") {
		t.Errorf("control: nobody could not open its own sleeper's memory (%q): the probe proves nothing", got)
	}
}
