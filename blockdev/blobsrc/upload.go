package blobsrc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// Limits of the Blob service.
const (
	pageSize     = 512
	maxPutPages  = 4 << 20    // Put Page: at most 4 MiB per request
	maxBlocks    = 50000      // Put Block List: at most 50,000 blocks
	maxBlockSize = 4000 << 20 // Put Block: at most 4000 MiB
	defBlockSize = 8 << 20
)

// UploadOptions configures Upload.
type UploadOptions struct {
	// Block uploads a block blob; the default is a page blob (what the Azure
	// sidecar and dm-crypt-style remote mounts expect).
	Block bool
	// Auth, AccountName, AccountKey, Credential: as in Options.
	Auth                    string
	AccountName, AccountKey string
	Credential              azcore.TokenCredential
	// Parallel is the number of requests in flight; 0 means 8.
	Parallel int
	// BlockSize for block blobs; 0 means 8 MiB, raised as needed to stay
	// within 50,000 blocks.
	BlockSize int64
	// Retries and TryTimeout per request, as in Options (0: defaults).
	Retries    int
	TryTimeout time.Duration
	// Progress, when set, is called with the bytes done so far (all-zero
	// pages that are skipped count as done) and the total. Calls are
	// serialised and done never decreases.
	Progress   func(done, total int64)
	HTTPClient *http.Client
	// AllowHTTP: as in Options.
	AllowHTTP bool
	Logger    *slog.Logger
}

// Upload copies the local file at path to the blob at rawURL, replacing it.
// A page blob's size is the file's size rounded up to 512 bytes (the tail is
// zero-padded), and all-zero pages are not sent (a new page blob reads as
// zeros). A block blob gets the exact size.
func Upload(ctx context.Context, path string, rawURL string, opts UploadOptions) error {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	ro := Options{Retries: opts.Retries, TryTimeout: opts.TryTimeout, HTTPClient: opts.HTTPClient, Logger: opts.Logger}
	ro.norm()
	bu, err := parseBlobURL(rawURL)
	if err != nil {
		return err
	}
	if err := bu.checkTransport(opts.AllowHTTP); err != nil {
		return err
	}
	creds := credentials{Auth: opts.Auth, AccountName: opts.AccountName, AccountKey: opts.AccountKey, Credential: opts.Credential}
	mode, err := resolveAuth(creds, bu)
	if err != nil {
		return err
	}
	f, err := newClientFactory(bu, creds, mode, ro.HTTPClient, policy.RetryOptions{
		MaxRetries: int32(ro.Retries), TryTimeout: ro.TryTimeout, RetryDelay: ro.RetryDelay, MaxRetryDelay: ro.MaxRetryDelay,
	})
	if err != nil {
		return err
	}
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("azblob: upload: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return fmt.Errorf("azblob: upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("azblob: upload: %s is not a regular file", path)
	}
	size := st.Size()
	u := &uploader{file: file, size: size, progress: opts.Progress, log: ro.Logger}
	kind := "page"
	if opts.Block {
		kind = "block"
		err = u.block(ctx, f, opts)
	} else {
		err = u.page(ctx, f, opts.Parallel)
	}
	if err != nil {
		_, out := classify(err, ro.TryTimeout)
		if out == errChanged {
			out = err
		}
		return fmt.Errorf("azblob: upload %s to %s (%s blob, auth %s): %w", path, bu, kind, mode, out)
	}
	ro.Logger.Debug("azblob: uploaded", "path", path, "url", bu.String(), "type", kind, "size", size)
	return nil
}

type uploader struct {
	file     *os.File
	size     int64
	progress func(done, total int64)
	log      *slog.Logger

	mu   sync.Mutex
	done int64
	err  error // first error; stops the other workers
}

func (u *uploader) add(n int64, total int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done += n
	if u.progress != nil {
		u.progress(u.done, total)
	}
}

// run calls work for each of n parts on parallel workers; the first error
// cancels the rest.
func (u *uploader) run(ctx context.Context, n int64, parallel int, work func(ctx context.Context, i int64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int64)
	var wg sync.WaitGroup
	for range min(int64(parallel), max(n, 1)) {
		wg.Go(func() {
			for i := range next {
				if err := work(ctx, i); err != nil {
					u.mu.Lock()
					if u.err == nil {
						u.err = err
					}
					u.mu.Unlock()
					cancel()
				}
			}
		})
	}
feed:
	for i := int64(0); i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if u.err != nil {
		return u.err
	}
	return ctx.Err()
}

// readPart reads [off, off+n) of the file, zero-padding past its end.
func (u *uploader) readPart(buf []byte, off int64) error {
	n, err := u.file.ReadAt(buf, off)
	if err == io.EOF && off+int64(n) >= u.size {
		clear(buf[n:])
		return nil
	}
	return err
}

func (u *uploader) page(ctx context.Context, f *clientFactory, parallel int) error {
	c, err := f.pageBlob()
	if err != nil {
		return err
	}
	blobSize := (u.size + pageSize - 1) / pageSize * pageSize
	if _, err := c.Create(ctx, blobSize, nil); err != nil {
		return err
	}
	if u.progress != nil {
		u.progress(0, u.size)
	}
	parts := (blobSize + maxPutPages - 1) / maxPutPages
	zero := make([]byte, pageSize)
	return u.run(ctx, parts, parallel, func(ctx context.Context, i int64) error {
		off := i * maxPutPages
		buf := make([]byte, min(maxPutPages, blobSize-off))
		if err := u.readPart(buf, off); err != nil {
			return err
		}
		// Send each run of non-zero pages as one Put Page.
		for p := 0; p < len(buf); {
			if bytes.Equal(buf[p:p+pageSize], zero) {
				p += pageSize
				continue
			}
			q := p + pageSize
			for q < len(buf) && !bytes.Equal(buf[q:q+pageSize], zero) {
				q += pageSize
			}
			body := streaming.NopCloser(bytes.NewReader(buf[p:q]))
			if _, err := c.UploadPages(ctx, body, blob.HTTPRange{Offset: off + int64(p), Count: int64(q - p)}, nil); err != nil {
				return err
			}
			p = q
		}
		u.add(min(int64(len(buf)), u.size-off), u.size)
		return nil
	})
}

func (u *uploader) block(ctx context.Context, f *clientFactory, opts UploadOptions) error {
	c, err := f.blockBlob()
	if err != nil {
		return err
	}
	bs := opts.BlockSize
	if bs <= 0 {
		bs = defBlockSize
	}
	if need := (u.size + maxBlocks - 1) / maxBlocks; bs < need {
		bs = (need + 1<<20 - 1) >> 20 << 20
	}
	if bs > maxBlockSize {
		return fmt.Errorf("%d bytes is too large for a block blob", u.size)
	}
	if u.progress != nil {
		u.progress(0, u.size)
	}
	if u.size == 0 {
		_, err := c.Upload(ctx, streaming.NopCloser(bytes.NewReader(nil)), nil)
		return err
	}
	parts := (u.size + bs - 1) / bs
	ids := make([]string, parts)
	for i := range ids {
		// Block IDs must all have the same length: a fixed prefix and a big-endian index.
		var raw [12]byte
		copy(raw[:4], "cfs1")
		binary.BigEndian.PutUint64(raw[4:], uint64(i))
		ids[i] = base64.StdEncoding.EncodeToString(raw[:])
	}
	// Bound the memory in flight for very large blobs (large blocks).
	par := opts.Parallel
	if int64(par)*bs > 512<<20 {
		par = int(max(1, (512<<20)/bs))
	}
	err = u.run(ctx, parts, par, func(ctx context.Context, i int64) error {
		off := i * bs
		buf := make([]byte, min(bs, u.size-off))
		if err := u.readPart(buf, off); err != nil {
			return err
		}
		if _, err := c.StageBlock(ctx, ids[i], streaming.NopCloser(bytes.NewReader(buf)), nil); err != nil {
			return err
		}
		u.add(int64(len(buf)), u.size)
		return nil
	})
	if err != nil {
		return err
	}
	_, err = c.CommitBlockList(ctx, ids, nil)
	return err
}
