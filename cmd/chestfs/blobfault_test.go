package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
)

// faultFileSize is the random file in the fault tests' image: six times
// the mounts' cache, so that most of it is never cached, even with the
// kernel's readahead (up to 4 MiB on our mounts) on top.
const faultFileSize = 24 << 20

// faultImage packs a directory holding one random file into a LUKS2 image
// (fast PBKDF2) and returns the image, its key and the file's content.
func faultImage(t *testing.T) (img, key string, content []byte) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	content = make([]byte, faultFileSize)
	r := rand.NewChaCha8([32]byte{'c', 'h', 'e', 's', 't', 'f', 's'})
	r.Read(content)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	img, key = filepath.Join(dir, "fault.img"), filepath.Join(dir, "fault.key")
	mustRun(t, "pack", "--new-key", key, "--pbkdf", "pbkdf2", "--iterations", "1000", src, img)
	return img, key, content
}

// uploadBlob uploads img as a page blob with the emulator's shared key and
// returns the blob's ETag (without quotes).
func uploadBlob(t *testing.T, az *azuritetest.Server, img, url string) string {
	t.Helper()
	t.Setenv("AZURE_STORAGE_ACCOUNT", azuritetest.Account)
	t.Setenv("AZURE_STORAGE_KEY", azuritetest.Key)
	mustRun(t, "upload", "--overwrite", img, url)
	c, err := blob.NewClientWithSharedKeyCredential(url, az.Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Trim(string(*p.ETag), `"`)
}

// readRange reads n bytes at off of path through the mount, in a fresh open.
// A read that does not come back within 90 s fails the test (the mount is
// killed at cleanup, which releases it).
func readRange(t *testing.T, path string, off int64, n int) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer f.Close()
		b := make([]byte, n)
		m, err := f.ReadAt(b, off)
		ch <- res{b[:m], err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(90 * time.Second):
		t.Fatalf("read of %s [%d,+%d) hangs", path, off, n)
		return nil, nil
	}
}

// alive fails the test if the mount process exited or the mount is gone.
func (m *mountProc) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-m.done:
		m.done <- err
		t.Fatalf("the mount exited (%v): %s", err, m.stderr)
	default:
	}
	if !isMounted(m.mp) {
		t.Fatalf("%s is no longer mounted", m.mp)
	}
}

// TestBlobFaults mounts a blob and breaks the service under the live mount:
// Azurite killed and restarted, and the blob overwritten.
func TestBlobFaults(t *testing.T) {
	requireFUSE(t)
	az := azuritetest.StartPersistent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := az.CreateContainer(ctx, "pub", true); err != nil {
		t.Fatal(err)
	}
	img, key, content := faultImage(t)
	// A small cache and one quick retry: reads of uncached data fail soon
	// while the service is away.
	mountArgs := func(url, mp string) []string {
		return []string{"--auth", "anonymous", "--key-file", key, "--cache-size", "4M", "--retries", "1", url, mp}
	}

	t.Run("azurite killed and restarted", func(t *testing.T) {
		url := az.BlobURL("pub", "kill.img")
		etag := uploadBlob(t, az, img, url)
		// Azurite saves its metadata every few seconds: wait until the
		// blob is on disk, or the restarted service would not know it.
		if err := az.WaitSaved(ctx, etag); err != nil {
			t.Fatal(err)
		}
		mp := t.TempDir()
		m := startMount(t, nil, mountArgs(url, mp)...)
		big := filepath.Join(mp, "big.bin")
		got, err := readRange(t, big, 0, 256<<10)
		if err != nil || !bytes.Equal(got, content[:256<<10]) {
			t.Fatalf("first 256 KiB before the kill: %d bytes, %v", len(got), err)
		}

		az.Kill()
		// Far from what was read: neither in the page cache nor in the
		// 4 MiB chunk cache.
		down := []int64{14 << 20, 18 << 20, 22 << 20}
		for _, off := range down {
			got, err := readRange(t, big, off, 64<<10)
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("read at %d with azurite down: %d bytes, err %v; want EIO", off, len(got), err)
			}
		}
		m.alive(t)

		if err := az.Restart(); err != nil {
			t.Fatal(err)
		}
		// The first requests may meet connections of the killed process;
		// a few tries are allowed, but every answer must be right.
		for i, off := range down {
			var got []byte
			var err error
			for try := 0; try < 10; try++ {
				if got, err = readRange(t, big, off, 64<<10); err == nil {
					break
				}
				t.Logf("read at %d after the restart, try %d: %v", off, try+1, err)
				time.Sleep(time.Second)
			}
			if err != nil || !bytes.Equal(got, content[off:off+64<<10]) {
				t.Fatalf("read %d at %d after the restart: %d bytes, %v", i, off, len(got), err)
			}
		}
		whole, err := readRange(t, big, 0, faultFileSize+1)
		if err != nil && !errors.Is(err, io.EOF) || !bytes.Equal(whole, content) {
			t.Errorf("whole file after the restart: %d bytes, %v", len(whole), err)
		}
		m.alive(t)
		if err := m.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
		}
	})

	t.Run("blob overwritten", func(t *testing.T) {
		url := az.BlobURL("pub", "overwrite.img")
		uploadBlob(t, az, img, url)
		mp := t.TempDir()
		m := startMount(t, nil, mountArgs(url, mp)...)
		big := filepath.Join(mp, "big.bin")
		got, err := readRange(t, big, 0, 1<<20)
		if err != nil || !bytes.Equal(got, content[:1<<20]) {
			t.Fatalf("first MiB: %d bytes, %v", len(got), err)
		}

		// The new version keeps the LUKS header and inverts everything
		// after it: served to the mount, it would decrypt to other bytes.
		v2 := invertedCopy(t, img, 16<<20)
		uploadBlob(t, az, v2, url)

		const piece = 256 << 10
		failed := 0
		for off := int64(0); off < faultFileSize; off += piece {
			got, err := readRange(t, big, off, piece)
			switch {
			case errors.Is(err, syscall.EIO):
				failed++
			case err != nil:
				t.Errorf("read at %d: %v; want EIO or the old bytes", off, err)
			case !bytes.Equal(got, content[off:off+piece]):
				t.Fatalf("read at %d after the overwrite returned bytes of neither version's file (a foreign version)", off)
			}
		}
		if failed == 0 {
			t.Errorf("every read after the overwrite succeeded; want EIO for the data not cached")
		}
		t.Logf("%d of %d pieces failed with EIO, the rest came from the caches", failed, faultFileSize/piece)
		m.alive(t)
		if err := m.stop(t); err != nil {
			t.Errorf("exit after SIGTERM: %v; %s", err, m.stderr)
		}
		if !strings.Contains(m.stderr.String(), "modified after it was opened") {
			t.Errorf("the mount did not log the version change:\n%s", m.stderr)
		}
	})
}

// invertedCopy writes a copy of path with every byte from off on inverted.
func invertedCopy(t *testing.T, path string, off int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= off {
		t.Fatalf("%s: %d bytes, nothing after %d", path, len(b), off)
	}
	for i := off; i < len(b); i++ {
		b[i] = ^b[i]
	}
	out := filepath.Join(t.TempDir(), fmt.Sprintf("inverted-%s", filepath.Base(path)))
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
