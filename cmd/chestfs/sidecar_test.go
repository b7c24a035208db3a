package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sidecarArgs(t *testing.T, fss ...map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"azure_filesystems": fss})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestSidecarConfigRefusals(t *testing.T) {
	key, _ := os.ReadFile(demoKey)
	img, _ := filepath.Abs(demoImg)
	cases := map[string]struct {
		args string
		want string
	}{
		"read_write": {sidecarArgs(t, map[string]any{"mount_point": "/tmp/x", "azure_url": img, "read_write": true, "raw_key": fmtHex(key)}), "read_write"},
		"dm_verity": {sidecarArgs(t, map[string]any{"mount_point": "/tmp/x", "azure_url": img, "raw_key": fmtHex(key),
			"dm_verity": map[string]any{"root_hash": "00"}}), "dm_verity"},
		"relative mount point": {sidecarArgs(t, map[string]any{"mount_point": "x", "azure_url": img, "raw_key": fmtHex(key)}), "absolute"},
		"no key":               {sidecarArgs(t, map[string]any{"mount_point": "/tmp/x", "azure_url": img}), "key"},
		"raw_key and key": {sidecarArgs(t, map[string]any{"mount_point": "/tmp/x", "azure_url": img, "raw_key": fmtHex(key),
			"key": map[string]any{"kid": "k", "kty": "oct-HSM", "authority": map[string]any{"endpoint": "maa.example"}, "akv": map[string]any{"endpoint": "kv.example"}}}),
			"both key and raw_key"},
		"not base64": {"!!!", "base64"},
		"bad verity_root_hash": {sidecarArgs(t, map[string]any{"mount_point": "/tmp/x", "azure_url": img, "raw_key": fmtHex(key),
			"verity_root_hash": "xyz"}), "verity_root_hash"},
		"empty list": {sidecarArgs(t), "no azure_filesystems"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binPath, "sidecar")
			cmd.Env = append(os.Environ(), "EncfsSideCarArgs="+tc.args)
			var se bytes.Buffer
			cmd.Stderr = &se
			err := cmd.Run()
			if err == nil || !strings.Contains(se.String(), tc.want) || strings.Count(strings.TrimSpace(se.String()), "\n") != 0 {
				t.Errorf("err %v, stderr %q (want one line naming %q)", err, se.String(), tc.want)
			}
		})
	}
}

// TestSidecarMountsEveryFilesystem runs the sidecar's configuration with one
// raw_key filesystem and one released through mock-kms.
func TestSidecarMountsEveryFilesystem(t *testing.T) {
	requireFUSE(t)
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	blob := filepath.Join(t.TempDir(), "key.json")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--out", blob, "--key-name", "sidecar-key")
	var keyBlob map[string]any
	b, _ := os.ReadFile(blob)
	if err := json.Unmarshal(b, &keyBlob); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(demoKey)
	img, _ := filepath.Abs(demoImg)
	base := t.TempDir()
	mp1, mp2 := filepath.Join(base, "share1"), filepath.Join(base, "share2")
	args := sidecarArgs(t,
		map[string]any{"mount_point": mp1, "azure_url": img, "azure_url_private": false, "read_write": false, "raw_key": fmtHex(key)},
		map[string]any{"mount_point": mp2, "azure_url": img, "azure_url_private": false, "key": keyBlob},
	)
	m := startSidecar(t, []string{"EncfsSideCarArgs=" + args}, []string{mp1, mp2}, "--attestation", "fake", "--ca", ca)
	compareWithSource(t, mp1)
	compareWithSource(t, mp2)
	if err := m.stop(t); err != nil {
		t.Errorf("sidecar exit: %v: %s", err, m.stderr)
	}
	if isMounted(mp1) || isMounted(mp2) {
		t.Errorf("left mounted")
	}
}

// TestSidecarRunsCommand: sidecar -- CMD mounts every filesystem, runs CMD
// with them, unmounts when it exits and exits with its status. raw_key
// warns that the key is not attested.
func TestSidecarRunsCommand(t *testing.T) {
	requireFUSE(t)
	key, _ := os.ReadFile(demoKey)
	img, _ := filepath.Abs(demoImg)
	base := t.TempDir()
	mp1, mp2 := filepath.Join(base, "a"), filepath.Join(base, "b")
	args := sidecarArgs(t,
		map[string]any{"mount_point": mp1, "azure_url": img, "raw_key": fmtHex(key)},
		map[string]any{"mount_point": mp2, "azure_url": img, "raw_key": fmtHex(key)},
	)
	cmd := exec.Command(binPath, "sidecar", "--", "sh", "-c", "cmp "+mp1+"/README.txt "+mp2+"/README.txt && exit 9")
	cmd.Env = append(os.Environ(), "EncfsSideCarArgs="+args)
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 9 {
		t.Errorf("exit %v, want the command's 9: %s", err, se.String())
	}
	if isMounted(mp1) || isMounted(mp2) {
		t.Error("a mount was left behind")
	}
	if strings.Count(se.String(), "raw_key") != 2 {
		t.Errorf("want a raw_key warning per filesystem: %s", se.String())
	}
}

// startSidecar starts `chestfs sidecar ARGS` with env added and waits until
// every mountpoint in mps is mounted; everything is torn down at cleanup.
func startSidecar(t *testing.T, env, mps []string, args ...string) *mountProc {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"sidecar"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mountProc{cmd: cmd, mp: mps[0], stderr: &se, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()
	t.Cleanup(func() {
		m.kill()
		for _, mp := range mps {
			if isMounted(mp) {
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for _, mp := range mps {
		for !isMounted(mp) {
			select {
			case err := <-m.done:
				m.done <- err
				t.Fatalf("sidecar exited: %v: %s", err, se.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not mounted after 60 s: %s", mp, se.String())
			}
		}
	}
	return m
}
