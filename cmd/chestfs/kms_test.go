package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/attest"
)

const sidecarExamples = "../../skr/testdata/sidecar-examples"

// fillExample reads one of Microsoft's example files and replaces its
// "<...>" placeholders.
func fillExample(t *testing.T, name string, fill map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sidecarExamples, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range fill {
		if !strings.Contains(s, k) {
			t.Fatalf("%s has no placeholder %s", name, k)
		}
		s = strings.ReplaceAll(s, k, v)
	}
	if i := strings.Index(s, `"<`); i >= 0 {
		t.Fatalf("%s: placeholder left: %.60s", name, s[i:])
	}
	return []byte(s)
}

// uvmContextDir writes a UVM security-context directory from the real
// Azure data (security policy and UVM reference info) and returns it with
// the policy's HOST_DATA.
func uvmContextDir(t *testing.T, withRef bool) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pol, err := os.ReadFile("../../attest/testdata/uvm_security_policy.base64")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "security-policy-base64"), pol, 0o644)
	if withRef {
		ref, _ := os.ReadFile("../../attest/testdata/body.uvm_reference_info.bin")
		enc := make([]byte, 0, len(ref)*2)
		enc = append(enc, []byte(b64std(ref))...)
		os.WriteFile(filepath.Join(dir, "reference-info-base64"), enc, 0o644)
	}
	raw, err := attest.DecodeBase64(string(pol))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(raw)
	return dir, hex.EncodeToString(h[:])
}

func TestImportKeyNeedsAuthority(t *testing.T) {
	r := run(t, "import-key", "--vault", "myvault.vault.azure.net", "--key-name", "k", "--key-file", demoKey, "--hostdata", strings.Repeat("ab", 32))
	if r.code == 0 || !strings.Contains(r.stderr, "--authority is required") || !strings.Contains(r.stderr, "attest.azure.net") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestImportKeyOctLengthAndKty(t *testing.T) {
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	long := filepath.Join(t.TempDir(), "long.key")
	os.WriteFile(long, bytes.Repeat([]byte{7}, 64), 0o600)
	r := run(t, "import-key", "--vault", url, "--ca", ca, "--key-file", long, "--key-name", "long")
	if r.code == 0 || !strings.Contains(r.stderr, "16, 24 or 32 bytes") {
		t.Errorf("64-byte oct key: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, "import-key", "--vault", url, "--ca", ca, "--key-file", demoKey, "--key-name", "x", "--kty", "EC-HSM")
	if r.code == 0 || !strings.Contains(r.stderr, "RSA-HSM") {
		t.Errorf("EC-HSM: exit %d, stderr %q", r.code, r.stderr)
	}
	// RSA-HSM without --derived-key-out is refused: the image needs the derived key.
	r = run(t, "import-key", "--vault", url, "--ca", ca, "--key-name", "rsa", "--kty", "RSA-HSM")
	if r.code == 0 || !strings.Contains(r.stderr, "--derived-key-out") {
		t.Errorf("RSA-HSM without --derived-key-out: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestImportKeyRSAHSM: import-key --kty RSA-HSM derives the filesystem key;
// an image packed with it opens through the release (salt and label travel
// in the key blob).
func TestImportKeyRSAHSM(t *testing.T) {
	url, ca := startMockKMS(t)
	t.Setenv("CHESTFS_AKV_TOKEN", "test-token")
	dir := t.TempDir()
	blob, key, img := filepath.Join(dir, "blob.json"), filepath.Join(dir, "derived.key"), filepath.Join(dir, "img")
	mustRun(t, "import-key", "--vault", url, "--ca", ca, "--key-name", "rsa-key", "--kty", "RSA-HSM",
		"--salt", "00112233445566778899aabbccddeeff", "--label", "chestfs test", "--derived-key-out", key, "--out", blob)
	var kb struct {
		KTY           string                       `json:"kty"`
		KeyDerivation struct{ Salt, Label string } `json:"key_derivation"`
	}
	b, _ := os.ReadFile(blob)
	if err := json.Unmarshal(b, &kb); err != nil || kb.KTY != "RSA-HSM" || kb.KeyDerivation.Salt != "00112233445566778899aabbccddeeff" || kb.KeyDerivation.Label != "chestfs test" {
		t.Fatalf("key blob %s (%v)", b, err)
	}
	if st, err := os.Stat(key); err != nil || st.Size() != 32 || st.Mode().Perm() != 0o600 {
		t.Fatalf("derived key: %v %v", st, err)
	}
	mustRun(t, "pack", "--key-file", key, demoSrc, img)
	want, _ := os.ReadFile(filepath.Join(demoSrc, "README.txt"))
	if got := mustRun(t, "cat", "--skr", blob, "--attestation", "fake", "--ca", ca, img, "/README.txt"); got != string(want) {
		t.Errorf("cat = %q", got)
	}
}

// TestImportKeyConfigPlaceholders: Microsoft's file as it is names the
// first placeholder to fill in.
func TestImportKeyConfigPlaceholders(t *testing.T) {
	r := run(t, "import-key", "--config", filepath.Join(sidecarExamples, "importkeyconfig.json"))
	if r.code == 0 || !strings.Contains(r.stderr, "placeholder") || !strings.Contains(r.stderr, "fill it in") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSidecarReadWriteSaysWhatToChange(t *testing.T) {
	r := run(t, "sidecar", "--config", filepath.Join(sidecarExamples, "encfs-sidecar-args.json"))
	if r.code == 0 || !strings.Contains(r.stderr, "placeholder") {
		t.Errorf("example as it is: exit %d, stderr %q", r.code, r.stderr)
	}
	img, _ := filepath.Abs(demoImg)
	cfg := fillExample(t, "encfs-sidecar-args.json", map[string]string{
		"<azure-blob-storage-url>": img, "<key-vault-akv-key-identifier>": "k", "<key-type-of-key-imported-to-akv>": "oct-HSM",
		"<authority-of-key-imported-to-akv>": "sharedeus2.eus2.attest.azure.net", "<key-vault-akv-endpoint>": "v.vault.azure.net",
		"<salt-for-key-derivation-valid-only-for-RSA-HSM-keys>": "", "<label-for-derived-key-valid-only-for-RSA-HSM-keys>": ""})
	path := filepath.Join(t.TempDir(), "args.json")
	os.WriteFile(path, cfg, 0o600)
	r = run(t, "sidecar", "--config", path)
	if r.code == 0 || !strings.Contains(r.stderr, `set "read_write": false`) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("read_write: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestSidecarExampleFilesEndToEnd takes Microsoft's example files with
// their placeholders filled in for mock-kms: import-key --config with the
// importkeyconfig.json (an RSA-HSM key, Microsoft's claims including
// x-ms-compliance-status), a UVM security context holding the real policy
// and reference info, then `chestfs sidecar` with encfs-sidecar-args.json
// (read_write set false), which mounts and reads.
func TestSidecarExampleFilesEndToEnd(t *testing.T) {
	requireFUSE(t)
	url, ca := startMockKMS(t)
	ctxDir, hostdata := uvmContextDir(t, true)
	t.Setenv("UVM_SECURITY_CONTEXT_DIR", ctxDir)
	ep := strings.TrimPrefix(url, "https://")
	dir := t.TempDir()
	const salt, label = "92a631483ca875aad7e2477da755d58cac3876b77d10bcdd7b33bfa11e7d8b8e", "Encryption Key"
	cfg := fillExample(t, "importkeyconfig.json", map[string]string{
		"<key-vault-key-identifier>": "encfs-key", "<key-type-of-key-imported-to-akv>": "RSA-HSM",
		"<authority-of-key-imported-to-akv>": ep, "<key-vault-akv-endpoint>": ep, "<aad-token-with-permissions-to-akv>": "test-token",
		"<salt-for-key-derivation-valid-only-for-RSA-HSM-keys>": salt, "<label-for-derived-key-valid-only-for-RSA-HSM-keys>": label,
		"<hash-digest-of-the-security-policy>": hostdata})
	cfgPath, key, img := filepath.Join(dir, "importkeyconfig.json"), filepath.Join(dir, "keyfile.bin"), filepath.Join(dir, "encfs.img")
	os.WriteFile(cfgPath, cfg, 0o600)
	mustRun(t, "import-key", "--config", cfgPath, "--ca", ca, "--derived-key-out", key, "--out", filepath.Join(dir, "blob.json"))
	mustRun(t, "pack", "--key-file", key, demoSrc, img)

	mp := filepath.Join(dir, "mnt", "remote", "share")
	args := fillExample(t, "encfs-sidecar-args.json", map[string]string{
		"<azure-blob-storage-url>": img, "<key-vault-akv-key-identifier>": "encfs-key", "<key-type-of-key-imported-to-akv>": "RSA-HSM",
		"<authority-of-key-imported-to-akv>": ep, "<key-vault-akv-endpoint>": ep,
		"<salt-for-key-derivation-valid-only-for-RSA-HSM-keys>": salt, "<label-for-derived-key-valid-only-for-RSA-HSM-keys>": label})
	args = bytes.Replace(args, []byte(`"/mnt/remote/share"`), []byte(`"`+mp+`"`), 1)
	args = bytes.Replace(args, []byte(`"read_write": true`), []byte(`"read_write": false`), 1)
	argsPath := filepath.Join(dir, "encfs-sidecar-args.json")
	os.WriteFile(argsPath, args, 0o600)

	m := startSidecar(t, []string{"CHESTFS_AKV_TOKEN=test-token"}, []string{mp}, "--attestation", "fake", "--ca", ca, "--config", argsPath)
	compareWithSource(t, mp)
	if err := m.stop(t); err != nil {
		t.Errorf("sidecar exit: %v: %s", err, m.stderr)
	}
}

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Issue 18 item 5: azure_info's identity and certcache reach every key blob
// (unless a blob names its own); a bad certcache is refused up front.
func TestSidecarAzureInfo(t *testing.T) {
	key := `{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"sharedeus2.eus2.attest.azure.net"},"akv":{"endpoint":"v.vault.azure.net:443"}}`
	own := `{"kid":"k2","kty":"oct-HSM","authority":{"endpoint":"a.attest.azure.net"},"akv":{"endpoint":"v.vault.azure.net"},"identity":{"client_id":"own"}}`
	cfg, err := parseSidecarConfig(`{"azure_info":{"identity":{"client_id":"11111111-2222-3333-4444-555555555555"},
		"certcache":{"endpoint_type":"AzCache","endpoint":"global.acccache.azure.net","tee_type":"SevSnpVM","api_version":"api-version=2020-10-15-preview","client_id":"clientId=ConfidentialACI"}},
		"azure_filesystems":[{"mount_point":"/mnt/a","azure_url":"https://x.blob.core.windows.net/c/a.img","key":` + key + `},
		{"mount_point":"/mnt/b","azure_url":"https://x.blob.core.windows.net/c/b.img","key":` + own + `}]}`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.AzureFilesystems[0].Key, cfg.AzureFilesystems[1].Key
	if a.Identity == nil || a.Identity.ClientID != "11111111-2222-3333-4444-555555555555" || a.CertCache == nil || a.CertCache.EndpointType != "AzCache" {
		t.Errorf("first key blob: %+v", a)
	}
	if b.Identity.ClientID != "own" || b.CertCache == nil {
		t.Errorf("second key blob: %+v", b)
	}
	_, err = parseSidecarConfig(`{"azure_info":{"certcache":{"endpoint_type":"Intel","endpoint":"x"}},
		"azure_filesystems":[{"mount_point":"/mnt/a","azure_url":"https://x.blob.core.windows.net/c/a.img","key":` + key + `}]}`)
	if err == nil || !strings.Contains(err.Error(), "endpoint_type") {
		t.Errorf("bad certcache: %v", err)
	}
}
