package blobsrc

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	iprogress "github.com/chestfs/chestfs/internal/progress"
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
	// Overwrite replaces an existing blob. Without it Upload fails with
	// ErrBlobExists before any data is sent, and the blob is created only
	// if it still does not exist then (If-None-Match: *), so that two
	// uploads cannot both replace it.
	Overwrite bool
	// CreateContainer creates the container (private) when it does not exist.
	CreateContainer bool
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
	// Progress receives progress (internal/progress): a bar if it is a
	// terminal, a line every 5 s otherwise; a *progress.Printer is used as
	// it is; nil is quiet.
	Progress io.Writer
	// OnProgress, when set, is called with the bytes done so far (all-zero
	// pages that are skipped count as done) and the total. Calls are
	// serialised and done never decreases.
	OnProgress func(done, total int64)
	HTTPClient *http.Client
	// AllowHTTP: as in Options.
	AllowHTTP bool
	Logger    *slog.Logger
}

// UploadResult is what UploadFile made.
type UploadResult struct {
	Size int64  // of the blob: a page blob's is the file's rounded up to 512
	Type string // "PageBlob" or "BlockBlob"
	MD5  []byte // the blob's Content-MD5: MD5 of its whole content
}

// ErrBlobExists is returned when the blob exists and Overwrite is not set;
// it matches fs.ErrExist too.
var ErrBlobExists error = errBlobExists{}

type errBlobExists struct{}

func (errBlobExists) Error() string        { return "the blob already exists (--overwrite replaces it)" }
func (errBlobExists) Is(target error) bool { return target == fs.ErrExist }

// Upload is UploadFile without its result.
func Upload(ctx context.Context, path string, rawURL string, opts UploadOptions) error {
	_, err := UploadFile(ctx, path, rawURL, opts)
	return err
}

// UploadFile copies the local file at path to the blob at rawURL. A page
// blob's size is the file's size rounded up to 512 bytes (the tail is
// zero-padded), and all-zero pages are not sent (a new page blob reads as
// zeros). A block blob gets the exact size. Either way the blob's
// Content-MD5 is set to the MD5 of its content, as azcopy --put-md5 does,
// so that downloaders can check it.
func UploadFile(ctx context.Context, path string, rawURL string, opts UploadOptions) (*UploadResult, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	ro := Options{Retries: opts.Retries, TryTimeout: opts.TryTimeout, HTTPClient: opts.HTTPClient, Logger: opts.Logger}
	ro.norm()
	bu, err := parseBlobURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := bu.checkTransport(opts.AllowHTTP); err != nil {
		return nil, err
	}
	creds := credentials{Auth: opts.Auth, AccountName: opts.AccountName, AccountKey: opts.AccountKey, Credential: opts.Credential}
	mode, err := resolveAuth(creds, bu)
	if err != nil {
		return nil, err
	}
	f, err := newClientFactory(bu, creds, mode, ro.HTTPClient, policy.RetryOptions{
		MaxRetries: int32(ro.Retries), TryTimeout: ro.TryTimeout, RetryDelay: ro.RetryDelay, MaxRetryDelay: ro.MaxRetryDelay,
	})
	if err != nil {
		return nil, err
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("azblob: upload: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("azblob: upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("azblob: upload: %s is not a regular file", path)
	}
	u := &uploader{file: file, size: st.Size(), onProgress: opts.OnProgress, log: ro.Logger,
		prog: iprogress.For(opts.Progress, "chestfs upload")}
	defer u.prog.Flush()
	res := &UploadResult{Type: "PageBlob"}
	if opts.Block {
		res.Type = "BlockBlob"
	}
	err = u.upload(ctx, f, bu, opts, res)
	if err != nil {
		return nil, uploadError(err, path, bu, res.Type, mode, opts.Auth, ro.TryTimeout)
	}
	ro.Logger.Debug("azblob: uploaded", "path", path, "url", bu.String(), "type", res.Type, "size", res.Size)
	return res, nil
}

// uploadError is one line: what was uploaded where, and why it failed.
func uploadError(err error, path string, bu *blobURL, kind, mode, asked string, tryTimeout time.Duration) error {
	if errors.Is(err, ErrBlobExists) {
		return fmt.Errorf("azblob: upload %s to %s: %w", path, bu, ErrBlobExists)
	}
	_, out := classify(err, tryTimeout, access{mode: mode, auto: isAuto(asked), write: true})
	if out == errChanged {
		out = err
	}
	return fmt.Errorf("azblob: upload %s to %s (%s, auth %s): %w", path, bu, kind, mode, out)
}

// upload creates the container if asked, then the blob, with its data and MD5.
func (u *uploader) upload(ctx context.Context, f *clientFactory, bu *blobURL, opts UploadOptions, res *UploadResult) error {
	if opts.CreateContainer {
		if err := createContainer(ctx, f, bu); err != nil {
			return err
		}
	}
	res.Size = u.size
	if !opts.Block {
		res.Size = (u.size + pageSize - 1) / pageSize * pageSize
	}
	ctx, cancel := context.WithCancel(ctx)
	sum := u.hash(ctx, res.Size)
	defer func() {
		cancel()
		sum() // the hash has stopped before the file is closed
	}()
	var err error
	if opts.Block {
		err = u.block(ctx, f, opts, sum)
	} else {
		err = u.page(ctx, f, opts, sum)
	}
	if err != nil {
		u.task.Stop()
		return err
	}
	u.task.Done()
	res.MD5, _ = sum()
	return nil
}

// hash computes, beside the upload, the MD5 of the blob's content (the
// file, zero-padded to size); the function returned waits for it.
func (u *uploader) hash(ctx context.Context, size int64) func() ([]byte, error) {
	type result struct {
		md5 []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		h := md5.New()
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; {
			if err := ctx.Err(); err != nil {
				ch <- result{err: err}
				return
			}
			b := buf[:min(int64(len(buf)), size-off)]
			if err := u.readPart(b, off); err != nil {
				ch <- result{err: fmt.Errorf("read for MD5: %w", err)}
				return
			}
			h.Write(b)
			off += int64(len(b))
		}
		ch <- result{md5: h.Sum(nil)}
	}()
	return sync.OnceValues(func() ([]byte, error) {
		r := <-ch
		return r.md5, r.err
	})
}

// createContainer creates the blob's container, private; one that exists is fine.
func createContainer(ctx context.Context, f *clientFactory, bu *blobURL) error {
	c, err := f.container(bu)
	if err != nil {
		return err
	}
	_, err = c.Create(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	return err
}

// ifAbsent is the access condition that creates a blob only where none is.
func ifAbsent(overwrite bool) *blob.AccessConditions {
	if overwrite {
		return nil
	}
	star := azcore.ETagAny
	return &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &star}}
}

// exists maps the refusal of a conditional create to ErrBlobExists.
func exists(err error) error {
	var re *azcore.ResponseError
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists) ||
		(errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed) {
		return ErrBlobExists
	}
	return err
}

type uploader struct {
	file       *os.File
	size       int64
	onProgress func(done, total int64)
	log        *slog.Logger
	prog       *iprogress.Printer
	task       *iprogress.Task

	mu   sync.Mutex
	done int64
	err  error // first error; stops the other workers
}

// start begins the progress of the data transfer.
func (u *uploader) start(label string) {
	u.task = u.prog.Start(label, u.size)
	if u.onProgress != nil {
		u.onProgress(0, u.size)
	}
}

func (u *uploader) add(n int64) {
	u.task.Add(n)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done += n
	if u.onProgress != nil {
		u.onProgress(u.done, u.size)
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

// page creates the page blob (only where none is, unless overwriting: the
// check before any data), sends its non-zero pages, then sets its MD5.
func (u *uploader) page(ctx context.Context, f *clientFactory, opts UploadOptions, sum func() ([]byte, error)) error {
	c, err := f.pageBlob()
	if err != nil {
		return err
	}
	blobSize := (u.size + pageSize - 1) / pageSize * pageSize
	u.prog.Step("creating the page blob")
	if _, err := c.Create(ctx, blobSize, &pageblob.CreateOptions{AccessConditions: ifAbsent(opts.Overwrite)}); err != nil {
		return exists(err)
	}
	u.start("uploading")
	parts := (blobSize + maxPutPages - 1) / maxPutPages
	zero := make([]byte, pageSize)
	err = u.run(ctx, parts, opts.Parallel, func(ctx context.Context, i int64) error {
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
		u.add(min(int64(len(buf)), u.size-off))
		return nil
	})
	if err != nil {
		return err
	}
	md5sum, err := sum()
	if err != nil {
		return err
	}
	// As azcopy does for page blobs: the whole blob's MD5 once all pages are in.
	_, err = c.BlobClient().SetHTTPHeaders(ctx, blob.HTTPHeaders{BlobContentMD5: md5sum}, nil)
	return err
}

// block checks first that no blob is in the way (unless overwriting),
// stages the blocks, and commits them with the MD5, again only where no
// blob is: a blob created meanwhile is not replaced.
func (u *uploader) block(ctx context.Context, f *clientFactory, opts UploadOptions, sum func() ([]byte, error)) error {
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
	if err := u.checkBlock(ctx, c.BlobClient(), opts.Overwrite); err != nil {
		return err
	}
	u.start("uploading")
	if u.size == 0 {
		md5sum, err := sum()
		if err != nil {
			return err
		}
		_, err = c.Upload(ctx, streaming.NopCloser(bytes.NewReader(nil)), &blockblob.UploadOptions{
			HTTPHeaders: &blob.HTTPHeaders{BlobContentMD5: md5sum}, AccessConditions: ifAbsent(opts.Overwrite)})
		return exists(err)
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
		u.add(int64(len(buf)))
		return nil
	})
	if err != nil {
		return err
	}
	md5sum, err := sum()
	if err != nil {
		return err
	}
	_, err = c.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentMD5: md5sum}, AccessConditions: ifAbsent(opts.Overwrite)})
	return exists(err)
}

// checkBlock fails with ErrBlobExists if the blob exists and may not be
// overwritten. Credentials that may write but not read (a SAS with sp=cw)
// cannot tell: then the conditional commit is the check. A page or append
// blob to be overwritten is deleted first: blocks cannot be staged on it.
func (u *uploader) checkBlock(ctx context.Context, c *blob.Client, overwrite bool) error {
	p, err := c.GetProperties(ctx, nil)
	var re *azcore.ResponseError
	switch {
	case err == nil && !overwrite:
		return ErrBlobExists
	case err == nil && p.BlobType != nil && *p.BlobType != blob.BlobTypeBlockBlob:
		u.log.Debug("azblob: deleting the blob to be replaced: it is not a block blob", "type", *p.BlobType)
		_, err := c.Delete(ctx, nil)
		return err
	case err == nil:
		return nil
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		return nil
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		u.log.Debug("azblob: cannot read the blob's properties; the commit checks that it does not exist", "err", re.ErrorCode)
		return nil
	}
	return err
}

// container is a client for the blob's container, with the same credential.
func (f *clientFactory) container(bu *blobURL) (*container.Client, error) {
	u, err := url.Parse(f.url)
	if err != nil {
		return nil, fmt.Errorf("azblob: malformed blob URL")
	}
	n := 1 // CONTAINER/BLOB
	if bu.path {
		n = 2 // ACCOUNT/CONTAINER/BLOB
	}
	segs := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", n+1)
	u.Path, u.RawPath = "/"+strings.Join(segs[:n], "/"), ""
	o := &container.ClientOptions{ClientOptions: f.opts}
	switch {
	case f.shared != nil:
		return container.NewClientWithSharedKeyCredential(u.String(), f.shared, o)
	case f.token != nil:
		return container.NewClient(u.String(), f.token, o)
	default:
		return container.NewClientWithNoCredential(u.String(), o)
	}
}
