package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/internal/fstree"
	"github.com/chestfs/chestfs/internal/testimg"
)

// TestBlob uploads images to Azurite with `chestfs upload` and reads and
// mounts them by URL with each kind of credential.
func TestBlob(t *testing.T) {
	az := azuritetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := az.CreateContainer(ctx, "pub", true); err != nil {
		t.Fatal(err)
	}
	if err := az.CreateContainer(ctx, "priv", false); err != nil {
		t.Fatal(err)
	}
	sharedKey := func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_ACCOUNT", azuritetest.Account)
		t.Setenv("AZURE_STORAGE_KEY", azuritetest.Key)
	}
	pageURL := az.BlobURL("pub", "demo.img")
	blockURL := az.BlobURL("priv", "demo.img")
	t.Run("upload", func(t *testing.T) {
		sharedKey(t)
		mustRun(t, "upload", demoImg, pageURL)
		mustRun(t, "upload", "--block", demoImg, blockURL)
		// An existing blob is left alone unless asked; a missing container is made when asked.
		if r := run(t, "upload", demoImg, pageURL); r.code == 0 || !strings.Contains(r.stderr, "--overwrite") {
			t.Errorf("upload over an existing blob: exit %d, %q", r.code, r.stderr)
		}
		if r := run(t, "upload", "--overwrite", demoImg, pageURL); r.code != 0 || !strings.Contains(r.stderr, "content-md5") {
			t.Errorf("upload --overwrite: exit %d, %q (want a summary line with the MD5)", r.code, r.stderr)
		}
		newURL := az.BlobURL("made-by-upload", "demo.img")
		if r := run(t, "upload", demoImg, newURL); r.code == 0 || !strings.Contains(r.stderr, "--create-container") {
			t.Errorf("upload into a missing container: exit %d, %q", r.code, r.stderr)
		}
		mustRun(t, "upload", "--create-container", "-q", demoImg, newURL)
	})
	want, _ := os.ReadFile(filepath.Join(demoSrc, "docs/numbers.txt"))

	t.Run("public page blob, anonymous", func(t *testing.T) {
		got := mustRun(t, "cat", "--auth", "anonymous", "--key-file", demoKey, pageURL, "/docs/numbers.txt")
		if got != string(want) {
			t.Errorf("content differs")
		}
	})
	t.Run("block blob, SAS", func(t *testing.T) {
		u, err := az.SASURL("priv", "demo.img", sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// The SAS stays off the command line: from a file, or from $CHESTFS_SAS.
		base, query, _ := strings.Cut(u, "?")
		sasFile := filepath.Join(t.TempDir(), "sas")
		if err := os.WriteFile(sasFile, []byte(query+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got := mustRun(t, "cat", "--key-file", demoKey, "--sas-file", sasFile, base, "/docs/numbers.txt")
		if got != string(want) {
			t.Errorf("content differs")
		}
		// In the URL it still works, with a warning that every user can read it.
		r := run(t, "cat", "--key-file", demoKey, u, "/docs/numbers.txt")
		if r.code != 0 || r.stdout != string(want) || !strings.Contains(r.stderr, "/proc/PID/cmdline") {
			t.Errorf("SAS in the URL: exit %d, stderr %q", r.code, r.stderr)
		}
		// A SAS whose signature does not match is refused in one line naming 403.
		t.Setenv("CHESTFS_SAS", strings.Replace(query, "sig=", "sig=AAAA", 1))
		r = run(t, "ls", "--key-file", demoKey, base)
		if r.code == 0 || !strings.Contains(r.stderr, "403") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("wrong SAS: exit %d, %q", r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "sig=") {
			t.Errorf("the SAS signature leaked into the error: %q", r.stderr)
		}
	})
	t.Run("disk cache", func(t *testing.T) {
		// Chunks land in --cache-dir (ciphertext, with a checksum trailer) and serve the next run.
		dir := filepath.Join(t.TempDir(), "cache")
		for i := 0; i < 2; i++ {
			if got := mustRun(t, "cat", "--auth", "anonymous", "--key-file", demoKey, "--cache-dir", dir, "--cache-dir-size", "64M",
				pageURL, "/docs/numbers.txt"); got != string(want) {
				t.Fatalf("run %d through the disk cache: content differs", i)
			}
		}
		var files int
		var plaintext bool
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				files++
				if b, _ := os.ReadFile(p); strings.Contains(string(b), "chestfs") {
					plaintext = true
				}
			}
			return nil
		})
		if files == 0 || plaintext {
			t.Errorf("disk cache: %d files, plaintext on disk %v", files, plaintext)
		}
	})
	t.Run("shared key", func(t *testing.T) {
		sharedKey(t)
		ls := mustRun(t, "ls", "--key-file", demoKey, blockURL, "/docs")
		if !strings.Contains(ls, "numbers.txt") {
			t.Errorf("ls by shared key:\n%s", ls)
		}
		r := run(t, "ls", "--key-file", demoKey, az.BlobURL("priv", "missing.img"))
		if r.code == 0 || !strings.Contains(r.stderr, "404") {
			t.Errorf("missing blob: exit %d, %q", r.code, r.stderr)
		}
	})
	t.Run("mount page blob", func(t *testing.T) {
		requireFUSE(t)
		mp := t.TempDir()
		m := startMount(t, nil, "--auth", "anonymous", "--key-file", demoKey, pageURL, mp)
		compareWithSource(t, mp)
		if err := m.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
		}
	})
	t.Run("speculative reads on and off", func(t *testing.T) {
		requireFUSE(t)
		for _, off := range []bool{false, true} {
			mp := t.TempDir()
			args := []string{"--auth", "anonymous", "--key-file", demoKey, "--debug"}
			if off {
				args = append(args, "--no-sibling-push", "--no-metadata-prefetch")
			}
			m := startMount(t, nil, append(args, pageURL, mp)...)
			compareWithSource(t, mp)
			if err := m.stop(t); err != nil {
				t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
			}
			if got := strings.Contains(m.stderr.String(), "metadata prefetch"); got == off {
				t.Errorf("--no-metadata-prefetch %v: the log says the metadata prefetch ran: %v", off, got)
			}
		}
	})
	t.Run("mount equals the kernel's view", func(t *testing.T) {
		requireFUSE(t)
		v, _ := testimg.Lookup("default1k")
		img := testimg.Build(t, v)
		url := az.BlobURL("pub", "default1k.img")
		func() {
			sharedKey(t)
			mustRun(t, "upload", img.Path, url)
		}()
		kernel, err := fstree.Snapshot(img.Mount(t))
		if err != nil {
			t.Fatal(err)
		}
		mp := t.TempDir()
		m := startMount(t, nil, "--auth", "anonymous", "--cache-size", "8M", url, mp)
		got, err := fstree.Snapshot(mp)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range fstree.Compare(kernel, got, fstree.Options{IgnoreAtime: true, IgnoreRootAttrs: true}) {
			t.Error(d)
		}
		if err := m.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
		}
	})
}
