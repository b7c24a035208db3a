package diskcache

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/blockdev/cache"
)

// Through a real blob (Azurite) and the memory cache above, as the mount
// stacks them: a restart reads the same bytes with zero GETs, and an
// overwritten blob (new ETag) is fetched again.
func TestBlobRestartZeroGETs(t *testing.T) {
	srv := azuritetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.CreateContainer(ctx, "diskcache", false); err != nil {
		t.Fatal(err)
	}
	url := srv.BlobURL("diskcache", "img")
	opts := blobsrc.Options{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
		Logger: slog.New(slog.DiscardHandler)}
	upload := func(b []byte) {
		p := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := blobsrc.Upload(ctx, p, url, blobsrc.UploadOptions{Block: true, Auth: "sharedkey",
			AccountName: azuritetest.Account, AccountKey: azuritetest.Key, Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	// mount opens the blob through both caches and reads all of it.
	mount := func(want []byte) (blobsrc.Stats, Stats) {
		b, err := blobsrc.Open(ctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		dc, err := Open(dir, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dc.Wrap(b, b.URL(), b.ETag())
		if err != nil {
			t.Fatal(err)
		}
		// Fixed readahead requests of 8 chunks (a window of 128 split
		// into 16): the reader outruns Azurite, which would otherwise
		// widen the window (see cache.Options.MaxReadahead).
		mc := cache.New(s, cache.Options{MaxBytes: 256 << 20, Readahead: 128, MaxReadahead: -1})
		defer mc.Close()
		got, err := io.ReadAll(io.NewSectionReader(mc, 0, mc.Size()))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, %v; the bytes differ from the blob", len(got), err)
		}
		return b.Stats(), s.Stats()
	}
	v1 := data(11, 9<<20+512)
	upload(v1)
	cold, _ := mount(v1)
	if cold.Requests == 0 || cold.Requests > 4 {
		t.Fatalf("cold: %d GETs for 10 chunks, want a few multi-chunk GETs", cold.Requests)
	}
	warm, ds := mount(v1)
	if warm.Requests != 0 || ds.Hits != 10 {
		t.Fatalf("restart: %d GETs, cache %+v; want 0 GETs, 10 hits", warm.Requests, ds)
	}
	v2 := data(12, 9<<20+512)
	upload(v2)
	changed, ds := mount(v2)
	if changed.Requests == 0 || ds.Hits != 0 {
		t.Fatalf("new ETag: %d GETs, cache %+v; want everything fetched", changed.Requests, ds)
	}
	t.Logf("GETs: cold %d, warm restart %d, after overwrite %d", cold.Requests, warm.Requests, changed.Requests)
}
