package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewCommandsRefuseBadInput feeds the key-release, upload and blob entry
// points garbage: each answers one line naming the problem, never a panic or
// a hang (run's own deadline is two minutes).
func TestNewCommandsRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	os.WriteFile(garbage, []byte("{not json"), 0o600)
	blob := filepath.Join(dir, "key.json")
	os.WriteFile(blob, []byte(`{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"https://127.0.0.1:1"},"akv":{"endpoint":"https://127.0.0.1:1"}}`), 0o600)
	hostdata := strings.Repeat("ab", 32)
	unreachable := "http://127.0.0.1:1/devstoreaccount1/c/b"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"upload: missing image", []string{"upload", filepath.Join(dir, "nope.img"), unreachable}, "no such file"},
		{"upload: not a URL", []string{"upload", demoImg, "notaurl"}, "not an http(s) blob url"},
		{"blob: zero fetch size", []string{"ls", "--fetch-size", "0", "--auth", "anonymous", unreachable}, "--fetch-size"},
		{"blob: garbage fetch size", []string{"ls", "--fetch-size", "lots", "--auth", "anonymous", unreachable}, "--fetch-size"},
		{"blob: unreachable", []string{"ls", "--retries", "1", "--auth", "anonymous", unreachable}, "connection refused"},
		{"mock-kms: no CA destination", []string{"mock-kms"}, "--state-dir"},
		{"import-key: missing key file", []string{"import-key", "--vault", "https://127.0.0.1:1", "--key-name", "k",
			"--key-file", filepath.Join(dir, "nokey")}, "no such file"},
		{"import-key: bad hostdata", []string{"import-key", "--vault", "https://127.0.0.1:1", "--key-name", "k",
			"--key-file", demoKey, "--hostdata", "zz"}, "64 hex digits"},
		{"import-key: not https", []string{"import-key", "--vault", "ftp://x", "--authority", "https://127.0.0.1:1", "--key-name", "k",
			"--key-file", demoKey, "--hostdata", hostdata}, "https"},
		{"import-key: garbage policy", []string{"import-key", "--vault", "https://127.0.0.1:1", "--key-name", "k",
			"--key-file", demoKey, "--policy", garbage}, "policy"},
		{"--skr: garbage key blob", []string{"ls", "--skr", garbage, demoImg}, "key blob"},
		{"--skr: missing key blob", []string{"ls", "--skr", filepath.Join(dir, "none.json"), demoImg}, "no such file"},
		{"--attestation: unknown provider", []string{"ls", "--skr", blob, "--attestation", "nope", demoImg}, "unknown evidence provider"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 || strings.Contains(msg, "\n") || strings.Contains(msg, "panic") {
				t.Fatalf("exit %d, stderr %q: want one line and a failure", r.code, r.stderr)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.want)) {
				t.Errorf("stderr %q does not name %q", msg, tc.want)
			}
		})
	}
}
