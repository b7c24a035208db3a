// Package blobsrc reads an Azure blob (page or block) as a blockdev.Source
// through ranged GETs, pinned to the version seen at Open, with retries of
// transient failures; and uploads local images as page or block blobs.
package blobsrc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/chestfs/chestfs/blockdev"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrBlobChanged: the blob was overwritten or modified after Open. Reads
	// fail rather than mix bytes of two versions.
	ErrBlobChanged = errors.New("blob changed since it was opened")
	// ErrNotFound: 404 (no such blob, container or account).
	ErrNotFound = errors.New("blob not found")
	// ErrAccessDenied: 401/403 (wrong or expired SAS or key, missing role,
	// public access not enabled).
	ErrAccessDenied = errors.New("access denied")
	// ErrClosed: the Blob was closed.
	ErrClosed = errors.New("azblob: source closed")
	// ErrTimeout: a read got no (complete) answer within Options.IOTimeout,
	// or the service asked (Retry-After) to wait past that deadline.
	ErrTimeout = errors.New("no answer within the I/O timeout")
)

// Defaults for Options.
const (
	DefaultRetries       = 5
	DefaultTryTimeout    = 30 * time.Second
	DefaultRetryDelay    = 250 * time.Millisecond
	DefaultMaxRetryDelay = 8 * time.Second
	// DefaultIOTimeout keeps an application's read under about 20 s when
	// the service stalls: long enough for a few re-dialled tries and a
	// throttled service's Retry-After, short enough that a stuck read is
	// not mistaken for a hung machine.
	DefaultIOTimeout = 20 * time.Second
	// DefaultStallTimeout: Azure answers a ranged GET's headers in tens
	// of milliseconds; 5 s without an answer or body progress means a
	// dead connection, worth re-dialling.
	DefaultStallTimeout = 5 * time.Second
	// DefaultMinRate: a body slower than this over a StallTimeout is
	// treated as stalled (a drip), its connection replaced.
	DefaultMinRate = 16 << 10
	// DefaultHedgeAfter: a GET without an answer after this gets a twin on
	// another connection (see docs/faults.md for the measurements).
	DefaultHedgeAfter = 2 * time.Second
	// maxGet bounds one ranged GET, so that a retry never repeats much and
	// TryTimeout stays meaningful for large reads.
	maxGet = 8 << 20
)

// Options configures Open. The zero value is usable: auto auth, default
// retries and timeouts.
type Options struct {
	// Auth is one of "auto" (or ""), "anonymous", "sas", "azuread", "sharedkey".
	Auth string
	// AccountName and AccountKey are the shared key; empty means
	// $AZURE_STORAGE_ACCOUNT (else the URL's account) and $AZURE_STORAGE_KEY.
	AccountName, AccountKey string
	// Credential replaces azidentity's DefaultAzureCredential for "azuread".
	Credential azcore.TokenCredential
	// Retries after a transient failure of one request (5xx, 408, 429,
	// connection errors, timeouts, a body cut short). 0 means DefaultRetries;
	// negative means none.
	Retries int
	// NoRetries turns retrying off (as a negative Retries does).
	NoRetries bool
	// TryTimeout bounds one try of one request, body included. 0 means DefaultTryTimeout.
	TryTimeout time.Duration
	// IOTimeout bounds one read (ReadAt, ReadVecAtContext) and Open as a
	// whole, every try, backoff and Retry-After wait included; then it
	// fails with ErrTimeout. 0 means DefaultIOTimeout; negative means no
	// overall bound (each try is still bounded).
	IOTimeout time.Duration
	// StallTimeout abandons a try that got no response headers within it,
	// or whose body brought fewer than MinRate bytes per second over a
	// stretch of this length: its connection is closed and the next try,
	// on a new connection, resumes where the body stopped. 0 means
	// DefaultStallTimeout; negative turns the watch off.
	StallTimeout time.Duration
	// MinRate is in bytes per second; 0 means DefaultMinRate, negative
	// means any progress at all is enough.
	MinRate int64
	// HedgeAfter sends a second identical GET on another connection when
	// the first has not answered (headers) within it; the first answer
	// wins and the other is cancelled. 0 means DefaultHedgeAfter;
	// negative turns hedging off.
	HedgeAfter time.Duration
	// NoHedge turns hedging off (as a negative HedgeAfter does).
	NoHedge bool
	// RetryDelay is the first backoff, doubled each retry up to MaxRetryDelay
	// (with jitter). 0 means the defaults.
	RetryDelay, MaxRetryDelay time.Duration
	// HTTPClient replaces the built-in client (tuned for many parallel GETs).
	HTTPClient *http.Client
	// AllowHTTP accepts plain http URLs to any host. Without it, http is
	// refused (ErrInsecureHTTP, before any request) unless the host is
	// loopback (localhost, 127.0.0.0/8, ::1: Azurite).
	AllowHTTP bool
	// Logger receives retries (debug) and version changes (error); nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) norm() {
	if o.NoRetries {
		o.Retries = -1
	}
	if o.NoHedge {
		o.HedgeAfter = -1
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.TryTimeout <= 0 {
		o.TryTimeout = DefaultTryTimeout
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MinRate == 0 {
		o.MinRate = DefaultMinRate
	}
	if o.HedgeAfter == 0 {
		o.HedgeAfter = DefaultHedgeAfter
	}
	if o.MaxRetryDelay < o.RetryDelay {
		o.MaxRetryDelay = o.RetryDelay
	}
	if o.HTTPClient == nil {
		o.HTTPClient = newHTTPClient()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// newHTTPClient allows many idle connections per host: the cache keeps
// several GETs in flight against one storage account.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}}
}

// Stats counts a Blob's traffic.
type Stats struct {
	Requests  int64 // ranged GETs sent (tries, retries included)
	Retries   int64 // tries repeated after a transient failure
	Failures  int64 // reads that failed after all retries or permanently
	BytesRead int64 // body bytes received
	Stalls    int64 // tries abandoned for want of an answer or of body progress (StallTimeout)
	Hedges    int64 // second GETs sent because the first was slow (HedgeAfter)
	HedgeWins int64 // of those, the ones that answered first
	Timeouts  int64 // reads that failed with ErrTimeout
}

// Blob is an Azure blob opened for reading. It implements blockdev.Source and
// is safe for concurrent use.
type Blob struct {
	client *blob.Client
	url    *blobURL
	auth   string
	etag   azcore.ETag
	size   int64
	kind   string // BlockBlob, PageBlob, AppendBlob
	o      Options

	ctx    context.Context // cancelled by Close: aborts every request in flight
	cancel context.CancelFunc

	requests, retries, failures, bytesRead atomic.Int64
	stalls, hedges, hedgeWins, timeouts    atomic.Int64
	// notBefore (UnixNano) is when the service said (Retry-After) it
	// wants to hear from us again: no request of this Blob goes out
	// earlier.
	notBefore   atomic.Int64
	changedOnce sync.Once
}

var _ blockdev.Source = (*Blob)(nil)

// Open reads the blob's properties (size, ETag, type) and returns a source
// pinned to that version. Failures are one line naming the HTTP status and
// Azure's error code (e.g. "403 AuthenticationFailed"); permanent ones are not
// retried.
func Open(ctx context.Context, rawURL string, opts Options) (*Blob, error) {
	opts.norm()
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
	b, err := open(ctx, bu, creds, mode, opts)
	if err != nil && mode == AuthAzureAD && (opts.Auth == "" || strings.EqualFold(opts.Auth, AuthAuto)) && isCredError(err) {
		// auto on an Azure endpoint with no usable identity: a public
		// container still works anonymously.
		opts.Logger.Debug("azblob: no Azure AD token, trying anonymous access", "url", bu.String())
		if ab, aerr := open(ctx, bu, creds, AuthAnonymous, opts); aerr == nil {
			return ab, nil
		}
	}
	return b, err
}

func open(ctx context.Context, bu *blobURL, creds credentials, mode string, opts Options) (*Blob, error) {
	// The SDK's own retries are off: ours also cover broken bodies and
	// count what they do.
	f, err := newClientFactory(bu, creds, mode, opts.HTTPClient, policy.RetryOptions{MaxRetries: -1})
	if err != nil {
		return nil, err
	}
	c, err := f.blob()
	if err != nil {
		return nil, fmt.Errorf("azblob: %s: %w", bu, err)
	}
	b := &Blob{client: c, url: bu, auth: mode, o: opts}
	var props blob.GetPropertiesResponse
	ctx, cancel := b.deadline(ctx)
	defer cancel()
	err = b.retry(ctx, "open", func(tctx context.Context, p *progress) error {
		var err error
		props, err = c.GetProperties(tctx, nil)
		p.answered()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("azblob: open %s (auth %s): %w", bu, mode, err)
	}
	if props.ETag == nil || props.ContentLength == nil || *props.ContentLength < 0 {
		return nil, fmt.Errorf("azblob: open %s: the service sent no ETag or size", bu)
	}
	b.etag, b.size = *props.ETag, *props.ContentLength
	if props.BlobType != nil {
		b.kind = string(*props.BlobType)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	opts.Logger.Debug("azblob: opened", "url", bu.String(), "auth", mode, "type", b.kind, "size", b.size, "etag", string(b.etag))
	return b, nil
}

// Size is the blob's size at Open.
func (b *Blob) Size() int64 { return b.size }

// ETag is the version pinned at Open.
func (b *Blob) ETag() string { return string(b.etag) }

// Type is the blob type: "BlockBlob", "PageBlob" or "AppendBlob".
func (b *Blob) Type() string { return b.kind }

// Auth is the auth mode in use (auto resolved).
func (b *Blob) Auth() string { return b.auth }

// URL is the blob's URL without its query string (safe to log).
func (b *Blob) URL() string { return b.url.String() }

// Stats returns the traffic counters.
func (b *Blob) Stats() Stats {
	return Stats{Requests: b.requests.Load(), Retries: b.retries.Load(), Failures: b.failures.Load(), BytesRead: b.bytesRead.Load(),
		Stalls: b.stalls.Load(), Hedges: b.hedges.Load(), HedgeWins: b.hedgeWins.Load(), Timeouts: b.timeouts.Load()}
}

// Retries is the number of repeated tries so far (for the cache's statistics).
func (b *Blob) Retries() int64 { return b.retries.Load() }

// Close aborts requests in flight; later reads fail with ErrClosed.
func (b *Blob) Close() error {
	b.cancel()
	st := b.Stats()
	b.o.Logger.Debug("azblob: closed", "url", b.url.String(), "requests", st.Requests, "retries", st.Retries,
		"failures", st.Failures, "bytes_read", st.BytesRead)
	return nil
}

// ReadAt reads len(p) bytes at off with ranged GETs, following io.ReaderAt.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	return b.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt that also stops when ctx is done (the cache cancels
// its fetches this way on Close).
func (b *Blob) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return b.ReadVecAtContext(ctx, [][]byte{p}, off)
}

// ReadVecAtContext reads into bufs, taken as one run of bytes from off, with
// as few ranged GETs as their total allows: the cache reads several chunks
// ahead with one request (each request costs the service as much as
// hundreds of KiB of body). It follows io.ReaderAt for the concatenation.
func (b *Blob) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	return b.ReadVecAtProgress(ctx, bufs, off, nil)
}

// ReadVecAtProgress is ReadVecAtContext that also calls filled (when not
// nil) with the count of bytes from off that are in bufs for good, each
// time a buffer is complete, while the body still arrives: the cache hands
// out each chunk of a large request as soon as its bytes are in, not when
// the last one is. filled is called from the calling goroutine, with
// growing counts; a retry resumes after them, so they stay valid.
func (b *Blob) ReadVecAtProgress(ctx context.Context, bufs [][]byte, off int64, filled func(n int64)) (int, error) {
	if off < 0 {
		return 0, blockdev.ErrOutOfRange
	}
	if b.ctx.Err() != nil {
		return 0, ErrClosed
	}
	var total int64
	for _, p := range bufs {
		total += int64(len(p))
	}
	if off >= b.size {
		if total == 0 && off == b.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if rest := b.size - off; total > rest {
		bufs, eof = truncVec(bufs, rest), io.EOF
		total = rest
	}
	// Stop on the caller's ctx, Close or the I/O deadline.
	ctx, cancel := b.deadline(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()

	n := int64(0)
	for n < total {
		end := min(total, n+maxGet)
		var part func(int64)
		if filled != nil {
			base := n
			part = func(m int64) { filled(base + m) }
		}
		m, err := b.get(ctx, sliceVec(bufs, n, end), off+n, part)
		n += int64(m)
		if err != nil {
			if b.ctx.Err() != nil {
				err = ErrClosed
			}
			if errors.Is(err, ErrTimeout) {
				b.timeouts.Add(1)
			}
			b.failures.Add(1)
			return int(n), err
		}
	}
	return int(n), eof
}

// truncVec keeps the first n bytes of bufs.
func truncVec(bufs [][]byte, n int64) [][]byte {
	return sliceVec(bufs, 0, n)
}

// sliceVec returns the bytes [from, to) of the concatenation of bufs, as
// slices of the same memory.
func sliceVec(bufs [][]byte, from, to int64) [][]byte {
	var out [][]byte
	pos := int64(0)
	for _, p := range bufs {
		lo, hi := max(from-pos, 0), min(to-pos, int64(len(p)))
		if lo < hi {
			out = append(out, p[lo:hi])
		}
		pos += int64(len(p))
		if pos >= to {
			break
		}
	}
	return out
}

// readVec fills bufs from r, skipping the first skip bytes of the
// concatenation (already filled by an earlier try); it returns the bytes
// read. filled (when not nil) hears the bytes of bufs complete so far, skip
// included, after each buffer.
func readVec(r io.Reader, bufs [][]byte, skip int, filled func(int64)) (int, error) {
	n := 0
	done := 0
	for _, p := range bufs {
		done += len(p)
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		m, err := io.ReadFull(r, p[skip:])
		skip = 0
		n += m
		if err != nil {
			return n, err
		}
		if filled != nil {
			filled(int64(done))
		}
	}
	return n, nil
}

func vecLen(bufs [][]byte) int {
	n := 0
	for _, p := range bufs {
		n += len(p)
	}
	return n
}

// get fills bufs (one run of bytes) from off with one ranged GET, retried; a
// body cut short is resumed where it broke.
func (b *Blob) get(ctx context.Context, bufs [][]byte, off int64, filled func(int64)) (int, error) {
	got := 0
	size := vecLen(bufs)
	etag := b.etag
	err := b.retry(ctx, "read", func(tctx context.Context, p *progress) error {
		want := int64(size - got)
		resp, done, err := b.download(tctx, &blob.DownloadStreamOptions{
			Range:            blob.HTTPRange{Offset: off + int64(got), Count: want},
			AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}},
		})
		p.answered()
		if err != nil {
			return err
		}
		defer done()
		defer resp.Body.Close()
		if resp.ETag != nil && *resp.ETag != etag {
			// A server that ignored If-Match must still not hand us another version.
			return errChanged
		}
		if resp.ContentLength != nil && *resp.ContentLength != want {
			return &shortError{fmt.Sprintf("range of %d bytes answered with %d", want, *resp.ContentLength)}
		}
		n, err := readVec(&countReader{r: resp.Body, p: p}, bufs, got, filled)
		got += n
		b.bytesRead.Add(int64(n))
		if err != nil {
			if tctx.Err() != nil && ctx.Err() == nil {
				return tctx.Err()
			}
			return &shortError{fmt.Sprintf("body cut short after %d of %d bytes: %v", n, want, err)}
		}
		return nil
	})
	if err != nil {
		return got, fmt.Errorf("azblob: read %s [%d,+%d): %w", b.url, off, size, err)
	}
	return got, nil
}
