package luks

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// compareDump checks that WriteText prints what `cryptsetup luksDump`
// prints for the image at path.
func compareDump(t *testing.T, path string) {
	t.Helper()
	want := string(run(t, "cryptsetup", "luksDump", "--disable-locks", path))
	want = regexp.MustCompile(`LUKS header information for \S+`).ReplaceAllString(want, "LUKS header information")
	h, err := ReadHeader(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := h.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		gl, wl := strings.Split(out.String(), "\n"), strings.Split(want, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Errorf("line %d: got %q, want %q", i+1, gl[i], wl[i])
				break
			}
		}
		t.Fatalf("WriteText differs from luksDump.\n--- got\n%s\n--- want\n%s", out.String(), want)
	}
}

// TestDumpTokensUnboundSegments: tokens (a built-in luks2-keyring token and
// an external one), unbound keyslots, config and segment flags, IV tweaks,
// and the linear segments and reencrypt keyslot of an interrupted
// encryption print as cryptsetup prints them.
func TestDumpTokensUnboundSegments(t *testing.T) {
	t.Run("tokens-unbound", func(t *testing.T) {
		im := newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
		key2 := filepath.Join(im.dir, "key2")
		must(t, os.WriteFile(key2, []byte("unbound"), 0o600))
		run(t, "cryptsetup", "luksAddKey", "--batch-mode", "--unbound", "--key-size", "256", "--pbkdf", "pbkdf2",
			"--pbkdf-force-iterations", "1000", "--key-file", im.keyFile, im.path, key2)
		tok := filepath.Join(im.dir, "token.json")
		must(t, os.WriteFile(tok, []byte(`{"type":"chestfs-test","keyslots":["0","1"],"x":{"y":[1]}}`), 0o600))
		run(t, "cryptsetup", "token", "import", "--json-file", tok, im.path)
		run(t, "cryptsetup", "token", "add", "--key-description", "chestfs:key", "--key-slot", "0", im.path)
		must(t, os.WriteFile(tok, []byte(`{"type":"no-keyslots","keyslots":[]}`), 0o600))
		run(t, "cryptsetup", "token", "import", "--token-id", "7", "--json-file", tok, im.path)
		compareDump(t, im.path)
	})
	t.Run("flags-iv-tweak", func(t *testing.T) {
		im := newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
		rewriteLUKS2(t, im.path, func(md map[string]any) {
			obj(md, "config")["flags"] = []any{"allow-discards", "no-read-workqueue"}
			obj(md, "segments", "0")["iv_tweak"] = "8"
		})
		compareDump(t, im.path)
	})
	t.Run("reencrypt-init", func(t *testing.T) {
		needTool(t, "cryptsetup")
		dir := t.TempDir()
		path, keyFile := filepath.Join(dir, "img"), filepath.Join(dir, "key")
		must(t, os.WriteFile(keyFile, pattern(32, 9), 0o600))
		must(t, os.WriteFile(path, pattern(8*mib, 3), 0o600))
		must(t, os.Truncate(path, 40*mib))
		run(t, "cryptsetup", "reencrypt", "--encrypt", "--init-only", "--batch-mode", "--type", "luks2",
			"--reduce-device-size", "16M", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, path)
		compareDump(t, path)
	})
	t.Run("reencrypt-checksum", func(t *testing.T) {
		im := newImage(t, 40*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
		run(t, "cryptsetup", "reencrypt", "--init-only", "--batch-mode", "--resilience", "checksum", "--pbkdf", "pbkdf2",
			"--pbkdf-force-iterations", "1000", "--key-file", im.keyFile, im.path)
		compareDump(t, im.path)
	})
}
