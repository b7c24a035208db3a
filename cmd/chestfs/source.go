package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/pack"
)

func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "auth", Category: "Source", Value: "auto", Usage: "blob credentials: auto, anonymous, sas, azuread, sharedkey"},
		&cli.StringFlag{Name: "cache-size", Category: "Source", Value: "256M", Usage: "memory for cached blob chunks (`SIZE`, K/M/G suffixes)"},
		&cli.IntFlag{Name: "readahead", Category: "Source", Value: cache.DefaultReadahead, Usage: "chunks read ahead on sequential access (0 turns it off)"},
		&cli.StringFlag{Name: "fetch-size", Category: "Source", Value: "8M", Usage: "most bytes one readahead GET reads (`SIZE`): larger requests cost the service and the bill less"},
		&cli.IntFlag{Name: "retries", Category: "Source", Value: 5, Usage: "retries of a failed blob read"},
	}
}

// openSource opens a local path or an Azure Blob URL. Blobs get a chunk cache
// in front; the closers release them in reverse order.
func openSource(ctx context.Context, c *cli.Context, source string) (blockdev.Source, []io.Closer, error) {
	return openSourceAuth(ctx, c, source, c.String("auth"))
}

// openSourceAuth is openSource with the blob credential mode given.
func openSourceAuth(ctx context.Context, c *cli.Context, source, auth string) (blockdev.Source, []io.Closer, error) {
	if !blobsrc.IsURL(source) {
		f, err := blockdev.OpenFile(source)
		if err != nil {
			return nil, nil, err
		}
		return f, []io.Closer{f}, nil
	}
	size, err := pack.ParseSize(c.String("cache-size"))
	if err != nil {
		return nil, nil, fmt.Errorf("--cache-size: %w", err)
	}
	fetch, err := pack.ParseSize(c.String("fetch-size"))
	if err != nil || fetch <= 0 || fetch > 256<<20 {
		return nil, nil, fmt.Errorf("--fetch-size %q: want a size from 1 to 256M", c.String("fetch-size"))
	}
	// The packages read 0 as "the default"; on the command line 0 means none.
	retries, readahead := c.Int("retries"), c.Int("readahead")
	if retries == 0 {
		retries = -1
	}
	if readahead == 0 {
		readahead = -1
	}
	b, err := blobsrc.Open(ctx, source, blobsrc.Options{Auth: auth, Retries: retries})
	if err != nil {
		return nil, nil, err
	}
	ch := cache.New(b, cache.Options{MaxBytes: size, Readahead: readahead, FetchBytes: int(fetch)})
	slog.Debug("blob opened", "url", b.URL(), "type", b.Type(), "etag", b.ETag(), "size", b.Size(), "cache", size)
	return ch, []io.Closer{b, ch, statsLogger{ch}}, nil
}

// statsLogger logs the cache's figures when the source is closed (--debug).
type statsLogger struct{ c *cache.Cache }

func (s statsLogger) Close() error {
	st := s.c.Stats()
	slog.Debug("blob cache", "hits", st.Hits, "misses", st.Misses, "prefetches", st.Prefetches,
		"prefetch_hits", st.PrefetchHits, "bytes_fetched", st.BytesFetched, "retries", st.Retries,
		"fetch_errors", st.FetchErrors, "peak_bytes", st.PeakBytes)
	return nil
}
