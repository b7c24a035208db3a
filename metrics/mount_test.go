package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/blockdev/diskcache"
	"github.com/chestfs/chestfs/blockdev/verity"
	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/fusefs"
	"github.com/chestfs/chestfs/internal/testimg"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

var quietVerity = &verity.Options{Logger: slog.New(slog.DiscardHandler)}

// appendTree appends a dm-verity tree to the image at path and opens a
// verified view of it.
func appendTree(t *testing.T, path string) (*blockdev.File, *verity.Reader) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	p, root, err := verity.FormatAppended(f, st.Size(), verity.FormatOptions{})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	src, err := blockdev.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	vr, err := verity.Open(src, src, p.HashOffset, root, quietVerity)
	if err != nil {
		t.Fatal(err)
	}
	return src, vr
}

// TestMountMetrics reads through a real FUSE mount (file -> verity ->
// cache -> ext4 -> fusefs) and scrapes /metrics before and after: the FUSE,
// cache and verity counters move, and /readyz is 200 only while mounted.
func TestMountMetrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("metrics: the mount test needs root (mkfs through testimg and a FUSE mount; CI runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("metrics: /dev/fuse unavailable: %v", err)
	}
	dir := t.TempDir()
	data := randomFile(t, dir, "data", 3<<20+123, 1)
	img := testimg.FromDir(t, dir)
	_, vr := appendTree(t, img.Path)
	c := cache.New(vr, cache.Options{ChunkSize: 256 << 10, MaxBytes: 4 << 20})
	t.Cleanup(func() { c.Close() })
	fsys, err := ext4.Open(c, c.Size())
	if err != nil {
		t.Fatal(err)
	}

	m := New()
	m.AddCache("img", c)
	m.AddVerity("img", vr)
	var mounted atomic.Bool
	base, _, _ := serve(t, m, mounted.Load)
	if code, _ := get(t, base, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the mount: %d", code)
	}

	mnt := t.TempDir()
	srv, err := fusefs.Mount(fsys, mnt, fusefs.Options{Observe: m.FUSEObserver("img"), KeepXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	unmounted := false
	t.Cleanup(func() {
		if !unmounted {
			srv.Unmount()
		}
	})
	mounted.Store(true)
	if code, _ := get(t, base, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while mounted: %d", code)
	}

	before := scrape(t, base)
	got, err := os.ReadFile(filepath.Join(mnt, "data"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the mount: %d bytes, %v", len(got), err)
	}
	if _, err := unix.Getxattr(filepath.Join(mnt, "data"), "user.absent", make([]byte, 16)); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("getxattr: %v", err)
	}
	after := scrape(t, base)

	fs := []string{"fs", "img"}
	if d := diff(before, after, "chestfs_fuse_read_bytes_total", fs...); d < float64(len(data)) {
		t.Errorf("fuse read bytes grew by %v for a file of %d bytes", d, len(data))
	}
	if d := diff(before, after, "chestfs_fuse_request_duration_seconds", "fs", "img", "op", "read"); d < 1 {
		t.Errorf("read requests observed: %v", d)
	}
	if d := diff(before, after, "chestfs_fuse_request_errors_total", "fs", "img", "op", "getxattr", "errno", "ENODATA"); d != 1 {
		t.Errorf("getxattr ENODATA errors grew by %v, want 1", d)
	}
	if d := diff(before, after, "chestfs_cache_misses_total", fs...); d < 1 {
		t.Errorf("cache misses grew by %v", d)
	}
	if d := diff(before, after, "chestfs_cache_fetched_bytes_total", fs...); d < float64(len(data)) {
		t.Errorf("cache fetched bytes grew by %v for a file of %d bytes", d, len(data))
	}
	if v := value(after, "chestfs_cache_max_bytes", fs...); v != 4<<20 {
		t.Errorf("cache max bytes %v", v)
	}
	if d := diff(before, after, "chestfs_verity_verified_blocks_total", fs...); d < float64(len(data)/4096) {
		t.Errorf("verified blocks grew by %v for a file of %d blocks", d, len(data)/4096)
	}
	if v := value(after, "chestfs_verity_failures_total", fs...); v != 0 {
		t.Errorf("verity failures %v on an intact image", v)
	}

	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	unmounted = true
	mounted.Store(false)
	if code, _ := get(t, base, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after unmount: %d", code)
	}
	if code, _ := get(t, base, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after unmount: %d", code)
	}
}

// TestVerityFailures: each read refused for a changed block counts one
// failure.
func TestVerityFailures(t *testing.T) {
	dir := t.TempDir()
	randomFile(t, dir, "img", 64*4096, 2)
	path := filepath.Join(dir, "img")
	_, vr := appendTree(t, path)
	// Change a byte of data block 10 behind the reader's back.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, 10*4096+5)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, 10*4096+5); err != nil {
		t.Fatal(err)
	}
	f.Close()

	m := New()
	m.AddVerity("v", vr)
	base, _, _ := serve(t, m, nil)
	buf := make([]byte, 4096)
	for i := 0; i < 2; i++ {
		if _, err := vr.ReadAt(buf, 10*4096); !errors.Is(err, verity.ErrMismatch) {
			t.Fatalf("read of the changed block: %v", err)
		}
	}
	if _, err := vr.ReadAt(buf, 11*4096); err != nil {
		t.Fatal(err)
	}
	f2 := scrape(t, base)
	if v := value(f2, "chestfs_verity_failures_total", "fs", "v"); v != 2 {
		t.Errorf("verity failures %v, want 2", v)
	}
	// Open checks the first and last blocks; then block 11.
	if v := value(f2, "chestfs_verity_verified_blocks_total", "fs", "v"); v != 3 {
		t.Errorf("verified blocks %v, want 3", v)
	}
	// Remove drops the series; adding under the same name replaces.
	m.Remove("v")
	if v := value(scrape(t, base), "chestfs_verity_failures_total", "fs", "v"); v != -1 {
		t.Errorf("after Remove the series is still there: %v", v)
	}
	m.AddVerity("v", vr)
	m.AddVerity("v", vr)
	if v := value(scrape(t, base), "chestfs_verity_failures_total", "fs", "v"); v != 2 {
		t.Errorf("after adding twice: %v", v)
	}
}

// TestBlobMetrics reads a blob from Azurite through the cache; then the
// blob is replaced, and the next read of the pinned version fails for good.
func TestBlobMetrics(t *testing.T) {
	az := azuritetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := az.CreateContainer(ctx, "metrics", false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := randomFile(t, dir, "img", 2<<20, 3)
	url := az.BlobURL("metrics", "img")
	up := blobsrc.UploadOptions{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key}
	if err := blobsrc.Upload(ctx, filepath.Join(dir, "img"), url, up); err != nil {
		t.Fatal(err)
	}
	b, err := blobsrc.Open(ctx, url, blobsrc.Options{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c := cache.New(b, cache.Options{ChunkSize: 256 << 10, NoReadahead: true, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { c.Close() })
	m := New()
	m.AddBlob("img", b)
	m.AddCache("img", c)
	base, _, _ := serve(t, m, nil)

	got := make([]byte, 1<<20)
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:1<<20]) {
		t.Fatalf("read through the cache: %v", err)
	}
	f := scrape(t, base)
	fs := []string{"fs", "img"}
	if v := value(f, "chestfs_blob_get_requests_total", fs...); v < 1 {
		t.Errorf("GETs %v", v)
	}
	if v := value(f, "chestfs_blob_received_bytes_total", fs...); v != 1<<20 {
		t.Errorf("received bytes %v, want %d", v, 1<<20)
	}
	if v := value(f, "chestfs_cache_misses_total", fs...); v < 1 {
		t.Errorf("cache misses %v", v)
	}
	if v := value(f, "chestfs_cache_fetched_bytes_total", fs...); v != 1<<20 {
		t.Errorf("cache fetched bytes %v, want %d", v, 1<<20)
	}
	if v := value(f, "chestfs_blob_read_failures_total", fs...); v != 0 {
		t.Errorf("failures %v", v)
	}

	// A new version of the blob: the source is pinned to the old ETag.
	randomFile(t, dir, "img", 2<<20, 4)
	up.Overwrite = true
	if err := blobsrc.Upload(ctx, filepath.Join(dir, "img"), url, up); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(got, 1<<20); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read of a replaced blob: %v", err)
	}
	f = scrape(t, base)
	if v := value(f, "chestfs_blob_read_failures_total", fs...); v < 1 {
		t.Errorf("failures %v after reading a replaced blob", v)
	}
	if v := value(f, "chestfs_cache_fetch_errors_total", fs...); v < 1 {
		t.Errorf("cache fetch errors %v after reading a replaced blob", v)
	}
}

// TestDiskCacheRestartMetrics reads a blob through the persistent cache,
// then again through a fresh blob source and cache over the same directory,
// as a restarted mount would: the second round's metrics show every chunk
// from disk and not one GET.
func TestDiskCacheRestartMetrics(t *testing.T) {
	az := azuritetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := az.CreateContainer(ctx, "restart", false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := randomFile(t, dir, "img", 3<<20, 5)
	url := az.BlobURL("restart", "img")
	up := blobsrc.UploadOptions{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key}
	if err := blobsrc.Upload(ctx, filepath.Join(dir, "img"), url, up); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(dir, "cache")
	round := func(name string) map[string]*dto.MetricFamily {
		b, err := blobsrc.Open(ctx, url, blobsrc.Options{Auth: "sharedkey", AccountName: azuritetest.Account,
			AccountKey: azuritetest.Key, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		dc, err := diskcache.Open(cacheDir, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		d, err := dc.Wrap(b, b.URL(), b.ETag())
		if err != nil {
			t.Fatal(err)
		}
		c := cache.New(d, cache.Options{NoReadahead: true, Logger: slog.New(slog.DiscardHandler)})
		defer c.Close()
		m := New()
		m.AddBlob(name, b)
		m.AddDiskCache(name, d)
		base, _, stop := serve(t, m, nil)
		defer stop()
		got := make([]byte, len(data))
		if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read through the disk cache: %v", name, err)
		}
		return scrape(t, base)
	}
	fs := []string{"fs", "img"}
	cold := round("img")
	if v := value(cold, "chestfs_blob_get_requests_total", fs...); v < 1 {
		t.Errorf("cold: GETs %v", v)
	}
	if v := value(cold, "chestfs_diskcache_misses_total", fs...); v < 1 {
		t.Errorf("cold: disk cache misses %v", v)
	}
	warm := round("img")
	if v := value(warm, "chestfs_blob_get_requests_total", fs...); v != 0 {
		t.Errorf("warm restart: %v GETs, want 0", v)
	}
	if v := value(warm, "chestfs_diskcache_misses_total", fs...); v != 0 {
		t.Errorf("warm restart: disk cache misses %v, want 0", v)
	}
	if v := value(warm, "chestfs_diskcache_hits_total", fs...); v < 1 {
		t.Errorf("warm restart: disk cache hits %v", v)
	}
	if v := value(warm, "chestfs_diskcache_served_bytes_total", fs...); v != float64(len(data)) {
		t.Errorf("warm restart: %v bytes served from disk, want %d", v, len(data))
	}
}
