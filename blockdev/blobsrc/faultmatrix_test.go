package blobsrc_test

// The fault matrix: each fault the network or the storage service can
// throw at a long-lived mount, injected through azuritetest.FaultProxy (all
// on loopback) under a cache as the mount uses it. For each: what a reader
// sees while the fault lasts and how long it waits, what a single
// occurrence costs, and whether reads are right once it ends. The figures
// go to the test log (go test -v -run TestFaultMatrix); docs/faults.md holds a
// copy.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/blockdev/cache"
)

// Small timeouts, so that the matrix runs in seconds; bounds are asserted
// generously (a loaded 2-core box), the figures are what was measured.
const (
	mIOTimeout = 4 * time.Second
	mStall     = time.Second
	mChunk     = 256 << 10
	mSize      = 4 << 20
)

func matrixOpts() blobsrc.Options {
	return blobsrc.Options{IOTimeout: mIOTimeout, StallTimeout: mStall, MinRate: 64 << 10, HedgeAfter: -1,
		Retries: 4, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 400 * time.Millisecond, TryTimeout: 10 * time.Second}
}

type figure struct {
	fault, sees, wait, once, after string
}

var figures struct {
	sync.Mutex
	rows []figure
}

func record(f figure) {
	figures.Lock()
	figures.rows = append(figures.rows, f)
	figures.Unlock()
}

// mx is one row's setup: a blob behind a proxy, read through a cache.
type mx struct {
	t    *testing.T
	data []byte
	url  string // direct (no proxy), for deleting or replacing the blob
	p    *azuritetest.FaultProxy
	b    *blobsrc.Blob
	c    *cache.Cache
	next int64
}

// newMx uploads a blob and opens it through a new proxy. urlFor turns the
// proxy's endpoint into the URL to open (the DNS row names a host).
func newMx(t *testing.T, o blobsrc.Options, urlFor func(endpoint string) string) *mx {
	t.Helper()
	srv := needAzurite(t)
	cn := newContainer(t, false)
	m := &mx{t: t, data: imageData(uint64(len(t.Name())), mSize), url: srv.BlobURL(cn, "a.img")}
	upload(t, m.data, m.url, false)
	m.p = azuritetest.NewFaultProxy(t, srv.Host)
	o.Auth, o.AccountName, o.AccountKey = "sharedkey", azuritetest.Account, azuritetest.Key
	o.Logger = slog.New(slog.DiscardHandler)
	u := m.p.Endpoint() + "/" + cn + "/a.img"
	if urlFor != nil {
		u = urlFor(m.p.Endpoint()) + "/" + cn + "/a.img"
	}
	b, err := blobsrc.Open(testCtx(t), u, o)
	if err != nil {
		t.Fatal(err)
	}
	m.b = b
	m.c = cache.New(b, cache.Options{ChunkSize: mChunk, MaxBytes: 8 * mChunk, NoReadahead: true, IOTimeout: o.IOTimeout,
		Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { m.c.Close(); b.Close() })
	return m
}

// fresh is a chunk never read before.
func (m *mx) fresh() int64 {
	m.next++
	if m.next*mChunk >= mSize {
		m.t.Fatal("out of fresh chunks")
	}
	return m.next
}

// read reads 64 KiB inside chunk idx (the rest of the chunk comes along)
// and fails the test on wrong bytes: a fault may cost an error, never data.
func (m *mx) read(idx int64) (time.Duration, error) {
	off := idx*mChunk + 4096
	buf := make([]byte, 64<<10)
	start := time.Now()
	n, err := m.c.ReadAt(buf, off)
	d := time.Since(start)
	if err == nil && (n != len(buf) || string(buf) != string(m.data[off:off+int64(len(buf))])) {
		m.t.Fatalf("read at %d returned wrong bytes", off)
	}
	return d, err
}

// sees names what the application gets: the error as EIO, or the data.
func sees(err error) string {
	switch {
	case err == nil:
		return "data"
	case errors.Is(err, blobsrc.ErrTimeout), errors.Is(err, cache.ErrTimeout):
		return "EIO (I/O timeout)"
	case errors.Is(err, blobsrc.ErrBlobChanged):
		return "EIO (blob changed)"
	case errors.Is(err, blobsrc.ErrNotFound):
		return "EIO (blob not found)"
	case strings.Contains(err.Error(), "gave up after"):
		i := strings.Index(err.Error(), "gave up after")
		return "EIO (" + strings.TrimSuffix(err.Error()[i:], ")") + ")"
	}
	return "EIO"
}

func ms(d time.Duration) string {
	if d < 100*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// row runs one fault: while it lasts (persistent), once (the next request
// only), and after it ended. A read during the fault must fail within
// maxWait; the single occurrence and everything after must read right.
func (m *mx) row(name string, persistent Fault, once []Fault, maxWait time.Duration) {
	t := m.t
	m.p.Set(persistent)
	d, err := m.read(m.fresh())
	t.Logf("%s, lasting: %v after %v", name, err, d)
	if err == nil {
		t.Fatalf("%s: a read during the fault succeeded", name)
	}
	if d > maxWait {
		t.Errorf("%s: the read waited %v, more than %v", name, d, maxWait)
	}
	f := figure{fault: name, sees: sees(err), wait: ms(d)}
	if once != nil {
		m.p.Set(Fault{}, once...)
		d, err := m.read(m.fresh())
		if err != nil {
			t.Fatalf("%s, once: %v after %v", name, err, d)
		}
		f.once = "data after " + ms(d)
	}
	m.p.Set(Fault{})
	f.after = m.after()
	record(f)
}

// after checks reads once the fault ended: chunks that failed and new ones.
func (m *mx) after() string {
	m.t.Helper()
	for idx := int64(1); idx <= m.next; idx++ {
		if _, err := m.read(idx); err != nil {
			m.t.Fatalf("read of chunk %d after the fault: %v", idx, err)
		}
	}
	if _, err := m.read(m.fresh()); err != nil {
		m.t.Fatalf("read of a new chunk after the fault: %v", err)
	}
	return "correct"
}

type Fault = azuritetest.Fault

var (
	pStall     = Fault{Kind: azuritetest.Stall}
	pStallBody = Fault{Kind: azuritetest.StallBody}
	pDrip      = Fault{Kind: azuritetest.Drip, Rate: 4 << 10}
	pReset     = Fault{Kind: azuritetest.Reset}
	pShort     = Fault{Kind: azuritetest.Short}
	p503       = Fault{Kind: azuritetest.Status, Status: 503}
	p500       = Fault{Kind: azuritetest.Status, Status: 500}
)

// deadlineBound: a read during a stall waits the I/O timeout, generously
// bounded for a loaded machine (the figure shows the real wait).
const deadlineBound = 3 * mIOTimeout

func TestFaultMatrix(t *testing.T) {
	figures.Lock()
	figures.rows = nil
	figures.Unlock()
	t.Run("rows", func(t *testing.T) {
		for _, r := range []struct {
			name       string
			persistent Fault
			once       []Fault
			maxWait    time.Duration
		}{
			{"stall: connection accepted, no answer", pStall, []Fault{pStall}, deadlineBound},
			{"body stops halfway", pStallBody, []Fault{pStallBody}, deadlineBound},
			{"slow drip, 4 KiB/s", pDrip, []Fault{pDrip}, deadlineBound},
			{"reset (RST) mid-body", pReset, []Fault{pReset}, deadlineBound},
			{"body shorter than Content-Length", pShort, []Fault{pShort}, deadlineBound},
			{"503 burst (3, then the service is back)", p503, []Fault{p503, p503, p503}, deadlineBound},
			{"500 burst (3, then the service is back)", p500, []Fault{p500, p500, p500}, deadlineBound},
		} {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				newMx(t, matrixOpts(), nil).row(r.name, r.persistent, r.once, r.maxWait)
			})
		}
		t.Run("stall, hedged after 200ms", func(t *testing.T) {
			t.Parallel()
			o := matrixOpts()
			o.HedgeAfter = 200 * time.Millisecond
			m := newMx(t, o, nil)
			m.row("stall, hedged after 200ms", pStall, []Fault{pStall}, deadlineBound)
			if st := m.b.Stats(); st.HedgeWins == 0 {
				t.Errorf("no hedge won: %+v", st)
			}
		})
		t.Run("429 Retry-After", testRetryAfter)
		t.Run("DNS failure", testDNSFailure)
		t.Run("connection refused", testRefused)
		t.Run("blob deleted or replaced", testBlobGone)
		t.Run("service restarted", testRestart)
	})
	figures.Lock()
	rows := slices.Clone(figures.rows)
	figures.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nIOTimeout %v, StallTimeout %v, MinRate 64 KiB/s, Retries 4, RetryDelay 50ms..400ms\n", mIOTimeout, mStall)
	sb.WriteString("| fault | while it lasts, a read sees | after waiting | a single occurrence | reads once it ended |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", r.fault, r.sees, r.wait, r.once, r.after)
	}
	t.Log(sb.String())
}

// 429 with Retry-After: honoured by every request of the blob; a wait
// past the read's deadline fails the read at once, without a request.
func testRetryAfter(t *testing.T) {
	t.Parallel()
	m := newMx(t, matrixOpts(), nil)
	// Once, Retry-After 1: the retry waits a whole second.
	m.p.Set(Fault{}, Fault{Kind: azuritetest.Status, Status: 429, RetryAfter: "1"})
	d, err := m.read(m.fresh())
	if err != nil || d < time.Second {
		t.Fatalf("429 Retry-After 1 once: %v after %v; want the data after at least 1s", err, d)
	}
	record(figure{fault: "429 Retry-After: 1", sees: "data (retried after the pause)", wait: ms(d), once: "data after " + ms(d), after: "correct"})

	// Lasting, Retry-After 1: one request a second, then the deadline.
	m.p.Set(Fault{Kind: azuritetest.Status, Status: 429, RetryAfter: "1"})
	before := m.p.Reads()
	d, err = m.read(m.fresh())
	n := m.p.Reads() - before
	if err == nil || d > deadlineBound {
		t.Fatalf("429 lasting: %v after %v", err, d)
	}
	if limit := int64(mIOTimeout/time.Second) + 1; n > limit {
		t.Errorf("429 lasting: %d requests in %v, more than one per Retry-After second (%d)", n, d, limit)
	}
	record(figure{fault: "429 Retry-After: 1, lasting", sees: sees(err), wait: ms(d), once: fmt.Sprintf("%d requests in that time", n), after: "(below)"})

	// Retry-After 6, past the 4 s deadline: the read fails at once, and so
	// does another read during the pause, with no request at all.
	m.p.Set(Fault{}, Fault{Kind: azuritetest.Status, Status: 429, RetryAfter: "6"})
	start := time.Now()
	d, err = m.read(m.fresh())
	asked := time.Now() // the 429 came between start and now
	if !errors.Is(err, blobsrc.ErrTimeout) || d > mIOTimeout {
		t.Fatalf("429 Retry-After 6: %v after %v; want ErrTimeout at once", err, d)
	}
	before = m.p.Reads()
	d2, err2 := m.read(m.fresh())
	if !errors.Is(err2, blobsrc.ErrTimeout) || m.p.Reads() != before {
		t.Fatalf("read during the pause: %v after %v, %d requests", err2, d2, m.p.Reads()-before)
	}
	// Once less than the deadline remains of the pause, a read waits for
	// its end and succeeds.
	time.Sleep(time.Until(asked.Add(6*time.Second - mIOTimeout + 500*time.Millisecond)))
	d3, err3 := m.read(m.fresh())
	if err3 != nil || time.Since(start) < 6*time.Second {
		t.Fatalf("read at the end of the pause: %v after %v", err3, d3)
	}
	record(figure{fault: "429 Retry-After: 6 (past the deadline)", sees: sees(err) + ", no request sent during the pause", wait: ms(d) + " (then " + ms(d2) + ")",
		once: "a read in the pause's last " + ms(mIOTimeout) + " waits for its end: data after " + ms(d3), after: m.after()})
}

// DNS failure: the blob's host name stops resolving (NXDOMAIN, then
// SERVFAIL) on a DNS server of our own on loopback.
func testDNSFailure(t *testing.T) {
	t.Parallel()
	dns := azuritetest.NewDNS(t)
	o := matrixOpts()
	o.AllowHTTP = true // "azfault" is no loopback name for the check
	o.HTTPClient = &http.Client{Transport: &http.Transport{
		DialContext: (&net.Dialer{Resolver: dns.Resolver()}).DialContext,
		// A new connection per request: every read resolves the name.
		DisableKeepAlives: true,
	}}
	m := newMx(t, o, func(ep string) string { return strings.Replace(ep, "127.0.0.1", "azfault", 1) })
	for _, rc := range []struct {
		name  string
		rcode int
	}{{"DNS failure (NXDOMAIN)", azuritetest.RcodeNXDomain}, {"DNS failure (SERVFAIL)", azuritetest.RcodeServFail}} {
		dns.SetRcode(rc.rcode)
		d, err := m.read(m.fresh())
		if err == nil || d > deadlineBound {
			t.Fatalf("%s: %v after %v", rc.name, err, d)
		}
		t.Logf("%s: %v after %v", rc.name, err, d)
		dns.SetRcode(azuritetest.RcodeOK)
		record(figure{fault: rc.name, sees: sees(err), wait: ms(d), once: "-", after: m.after()})
	}
}

// Connection refused: nothing listens on the port, then the service is back.
func testRefused(t *testing.T) {
	t.Parallel()
	m := newMx(t, matrixOpts(), nil)
	m.p.Down()
	d, err := m.read(m.fresh())
	if err == nil || d > deadlineBound {
		t.Fatalf("refused: %v after %v", err, d)
	}
	t.Logf("refused: %v after %v", err, d)
	if err := m.p.Up(); err != nil {
		t.Fatal(err)
	}
	record(figure{fault: "connection refused", sees: sees(err), wait: ms(d), once: "-", after: m.after()})
}

// The blob deleted, or overwritten (another ETag): uncached reads fail at
// once and for good (a remount sees the new version); cached chunks are the
// old version's; no read ever returns bytes of another version.
func testBlobGone(t *testing.T) {
	t.Parallel()
	for _, replace := range []bool{false, true} {
		m := newMx(t, matrixOpts(), nil)
		cached := m.fresh()
		if _, err := m.read(cached); err != nil {
			t.Fatal(err)
		}
		c, err := blob.NewClientWithSharedKeyCredential(m.url, needAzurite(t).Credential(), nil)
		if err != nil {
			t.Fatal(err)
		}
		name := "blob deleted"
		if replace {
			name = "blob replaced (another ETag)"
			other := imageData(99, mSize)
			upload(t, other, m.url, false)
		} else if _, err := c.Delete(testCtx(t), nil); err != nil {
			t.Fatal(err)
		}
		d, err := m.read(m.fresh())
		// A GET with If-Match on a deleted blob: 404 from Azure, 412
		// from Azurite; either is final.
		ok := errors.Is(err, blobsrc.ErrBlobChanged) || !replace && errors.Is(err, blobsrc.ErrNotFound)
		if !ok || d > deadlineBound {
			t.Fatalf("%s: %v after %v", name, err, d)
		}
		// Every chunk: the old bytes (read checks) or an error.
		failed := 0
		for idx := int64(0); idx*mChunk < mSize; idx++ {
			if _, err := m.read(idx); err != nil {
				failed++
			}
		}
		if _, err := m.read(cached); err != nil {
			t.Errorf("%s: the cached chunk: %v", name, err)
		}
		record(figure{fault: name, sees: sees(err), wait: ms(d), once: "-",
			after: fmt.Sprintf("cached chunks: old bytes; %d of %d others: EIO, never foreign bytes (remount for the new version)", failed, mSize/mChunk-1)})
	}
}

// The service killed and restarted with the same blob (Azurite on disk).
func testRestart(t *testing.T) {
	t.Parallel()
	az := azuritetest.StartPersistent(t)
	ctx := testCtx(t)
	if err := az.CreateContainer(ctx, "restart", false); err != nil {
		t.Fatal(err)
	}
	data := imageData(77, mSize)
	url := az.BlobURL("restart", "a.img")
	upload(t, data, url, false)
	c, err := blob.NewClientWithSharedKeyCredential(url, az.Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	props, err := c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := az.WaitSaved(ctx, strings.Trim(string(*props.ETag), `"`)); err != nil {
		t.Fatal(err)
	}
	o := matrixOpts()
	o.Auth, o.AccountName, o.AccountKey, o.Logger = "sharedkey", azuritetest.Account, azuritetest.Key, slog.New(slog.DiscardHandler)
	b, err := blobsrc.Open(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := &mx{t: t, data: data, b: b, c: cache.New(b, cache.Options{ChunkSize: mChunk, MaxBytes: 8 * mChunk, NoReadahead: true,
		IOTimeout: o.IOTimeout, Logger: slog.New(slog.DiscardHandler)})}
	defer m.c.Close()
	if _, err := m.read(m.fresh()); err != nil {
		t.Fatal(err)
	}
	az.Kill()
	d, err := m.read(m.fresh())
	if err == nil || d > deadlineBound {
		t.Fatalf("service down: %v after %v", err, d)
	}
	t.Logf("service down: %v after %v", err, d)
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	record(figure{fault: "service killed, then restarted with the same blob", sees: sees(err), wait: ms(d), once: "-", after: m.after()})
}
