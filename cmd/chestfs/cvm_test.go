package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
)

// zeroPCR is a PCR never extended, as the tpm-sim provider leaves 0-7.
var zeroPCR = strings.Repeat("0", 64)

// importCVM runs import-key --cvm against the mock with extra flags and
// returns the key blob path and import-key's stderr (the policy it shows).
func importCVM(t *testing.T, url, ca, keyFile, name string, extra ...string) (string, string) {
	t.Helper()
	blob := filepath.Join(t.TempDir(), name+".json")
	args := append([]string{"import-key", "--vault", url, "--ca", ca, "--key-file", keyFile, "--out", blob, "--key-name", name, "--cvm"}, extra...)
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("chestfs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return blob, r.stderr
}

// refusedInOneLine fails unless r failed with one line (plus INSECURE warnings)
// that contains every want.
func refusedInOneLine(t *testing.T, what string, r result, want ...string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.Contains(l, "INSECURE") {
			lines = append(lines, l)
		}
	}
	msg := strings.Join(lines, "\n")
	t.Logf("%s: %s", what, msg)
	if r.code == 0 || len(lines) != 1 {
		t.Errorf("%s: exit %d, want one error line: %q", what, r.code, r.stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: %q lacks %q", what, msg, w)
		}
	}
}

// TestImportKeyCVM: import-key --cvm writes a confidential-VM policy; a
// vTPM guest (tpm-sim) gets the key, an SEV-SNP container (fake) and a VM
// in another boot state do not, each told which claim failed.
func TestImportKeyCVM(t *testing.T) {
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	blob, stderr := importCVM(t, url, ca, demoKey, "cvm-key", "--cvm-secure-boot", "--cvm-pcr", "7="+zeroPCR, "--cvm-pcr", "0="+zeroPCR)
	for _, w := range []string{`"azurevm"`, `"azure-compliant-cvm"`, `"x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable"`,
		`"secureboot"`, `"x-chestfs-pcrs.0"`, `"x-chestfs-pcrs.7"`} {
		if !strings.Contains(stderr, w) {
			t.Errorf("policy shown lacks %s:\n%s", w, stderr)
		}
	}

	want, _ := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	if got := mustRun(t, "cat", "--skr", blob, "--attestation", "tpm-sim", "--ca", ca, demoImg, "/README.txt"); got != string(want) {
		t.Errorf("cat through a vTPM release = %q", got)
	}
	refusedInOneLine(t, "SEV-SNP container evidence under a CVM policy",
		run(t, "ls", "--skr", blob, "--attestation", "fake", "--ca", ca, demoImg),
		"403", `claim x-ms-attestation-type is "sevsnpvm", policy requires "azurevm"`)

	other, _ := importCVM(t, url, ca, demoKey, "cvm-other-pcr", "--cvm-pcr", "7="+strings.Repeat("ab", 32))
	refusedInOneLine(t, "another PCR 7", run(t, "ls", "--skr", other, "--attestation", "tpm-sim", "--ca", ca, demoImg),
		"403", "x-chestfs-pcrs.7")

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"pcr without cvm":  {[]string{"--cvm-pcr", "7=" + zeroPCR}, "add --cvm"},
		"cvm and hostdata": {[]string{"--cvm", "--hostdata", strings.Repeat("ab", 32)}, "not two of them"},
		"cvm and policy":   {[]string{"--cvm", "--policy", "/nonexistent.json"}, "not two of them"},
		"unattested pcr":   {[]string{"--cvm", "--cvm-pcr", "9=" + zeroPCR}, "only PCRs [0 1 2 3 4 5 6 7] are attested"},
		"no index":         {[]string{"--cvm", "--cvm-pcr", zeroPCR}, "want N=HEX"},
		"short value":      {[]string{"--cvm", "--cvm-pcr", "7=abcd"}, "64 hex digits"},
		"twice":            {[]string{"--cvm", "--cvm-pcr", "7=" + zeroPCR, "--cvm-pcr", "7=" + zeroPCR}, "PCR 7 given twice"},
	} {
		args := append([]string{"import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--key-name", "refused",
			"--out", filepath.Join(t.TempDir(), "x.json")}, tc.args...)
		refusedInOneLine(t, name, run(t, args...), tc.want)
	}
}

// TestMountCVMEqualsKernel is the confidential-VM release end to end:
// import-key --cvm, then chestfs mount --attestation tpm-sim, whose tree
// equals the kernel's loop mount of the plaintext, and the released key is
// in no file.
func TestMountCVMEqualsKernel(t *testing.T) {
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
	blob, _ := importCVM(t, url, ca, keyFile, "cvm-fs-key", "--cvm-secure-boot", "--cvm-pcr", "7="+zeroPCR)

	plain := filepath.Join(t.TempDir(), "plain.img")
	mustRun(t, "decrypt", "--key-file", keyFile, img, plain)
	kernel, err := fstree.Snapshot(testimg.Image{Path: plain}.Mount(t))
	if err != nil {
		t.Fatal(err)
	}

	mp := t.TempDir()
	m := startMount(t, nil, "--skr", blob, "--attestation", "tpm-sim", "--ca", ca, img, mp)
	got, err := fstree.Snapshot(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fstree.Compare(kernel, got, fstree.Options{}) {
		t.Error(d)
	}
	if !strings.Contains(m.stderr.String(), "INSECURE") {
		t.Errorf("tpm-sim mounted without an INSECURE warning: %s", m.stderr)
	}
	kmsDir := filepath.Dir(ca) // the mock is the vault: its state holds the key by design
	for _, root := range []string{os.TempDir(), "/var/tmp", "/dev/shm"} {
		if hit := findInFiles(t, root, key, kmsDir, imgDir); hit != "" {
			t.Errorf("the released key is in %s", hit)
		}
	}
	if err := m.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
	}

	// The same key under SEV-SNP container evidence: refused, nothing mounted.
	r := run(t, "mount", "--skr", blob, "--attestation", "fake", "--ca", ca, img, mp)
	if r.code == 0 || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "x-ms-attestation-type") {
		t.Errorf("release under --attestation fake: exit %d, %q", r.code, r.stderr)
	}
	if isMounted(mp) {
		t.Error("mounted although the release was refused")
	}
}
