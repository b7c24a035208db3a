package blobsrc_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
)

// BenchmarkBlobSequential reads a 16 MiB blob from start to end in 128 KiB
// reads (what FUSE sends) through the cache, and downloads it with one GET
// (the best a single stream does), both behind a proxy that adds 10 ms to
// each request and limits each response to 8 MiB/s, as one TCP stream from
// a distant storage account. It reports both rates and their ratio
// ("speedup"); on a loaded machine Azurite's own CPU time caps both.
func BenchmarkBlobSequential(b *testing.B) {
	const size = 16 << 20
	const rate = 8 << 20
	data := imageData(11, size)
	srv := needAzurite(b)
	c := newContainer(b, false)
	upload(b, data, srv.BlobURL(c, "bench.img"), true)
	p := newFaultProxy(b, srv.Host)
	p.set(10*time.Millisecond, pass)
	p.setRate(rate)
	url := p.Endpoint() + "/" + c + "/bench.img"
	raw, err := blob.NewClientWithSharedKeyCredential(url, srv.Credential(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var rawTime, cacheTime time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		// One GET of the whole blob.
		start := time.Now()
		resp, err := raw.DownloadStream(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != size {
			b.Fatalf("raw download: %d, %v", n, err)
		}
		resp.Body.Close()
		rawTime += time.Since(start)

		// The cache, cold.
		start = time.Now()
		o := keyOpts
		o.Logger = slog.New(slog.DiscardHandler)
		bl, err := blobsrc.Open(ctx, url, o)
		if err != nil {
			b.Fatal(err)
		}
		cc := cache.New(bl, cache.Options{Logger: o.Logger})
		buf := make([]byte, 128<<10)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := cc.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
		cacheTime += time.Since(start)
		b.Logf("cache %+v blob %+v", cc.Stats(), bl.Stats())
		cc.Close()
		bl.Close()
	}
	mbs := func(d time.Duration) float64 { return float64(b.N) * size / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(rawTime), "raw-MB/s")
	b.ReportMetric(mbs(cacheTime), "cache-MB/s")
	b.ReportMetric(rawTime.Seconds()/cacheTime.Seconds(), "speedup")
}
