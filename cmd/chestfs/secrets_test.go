package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
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
