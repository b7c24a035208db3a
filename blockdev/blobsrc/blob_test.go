package blobsrc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
)

// One Azurite for the whole package, started by the first test that needs
// it (node takes seconds to start; fuzzing and -list need none).
var (
	azuriteOnce sync.Once
	azurite     *azuritetest.Server
	azuriteErr  error
	containerN  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if azurite != nil {
		azurite.Stop()
	}
	os.Exit(code)
}

func needAzurite(t testing.TB) *azuritetest.Server {
	t.Helper()
	azuriteOnce.Do(func() { azurite, azuriteErr = azuritetest.StartProcess() })
	if azuriteErr != nil {
		azuritetest.SkipOrFail(t, azuriteErr)
	}
	return azurite
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newContainer makes a fresh container per test, so tests never share blobs.
func newContainer(t testing.TB, public bool) string {
	t.Helper()
	name := fmt.Sprintf("c%d-%d", time.Now().UnixNano()%1e9, containerN.Add(1))
	if err := needAzurite(t).CreateContainer(testCtx(t), name, public); err != nil {
		t.Fatalf("create container: %v", err)
	}
	return name
}

// imageData is pseudo-random bytes with all-zero stretches (skipped by the
// page upload) and a size that is not a multiple of 512.
func imageData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	clear(b[:4096])
	if n > 3<<20 {
		clear(b[1<<20 : 2<<20+777])
	}
	return b
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var keyOpts = blobsrc.Options{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key}

func upload(t testing.TB, data []byte, url string, block bool) {
	t.Helper()
	var last, calls int64
	err := blobsrc.Upload(testCtx(t), writeTemp(t, data), url, blobsrc.UploadOptions{
		Block: block, Overwrite: true, Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
		Parallel: 4, BlockSize: 1 << 20,
		OnProgress: func(done, total int64) {
			if done < last || total != int64(len(data)) {
				t.Errorf("progress went from %d to %d of %d", last, done, total)
			}
			last = done
			calls++
		},
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if last != int64(len(data)) || calls < 2 {
		t.Fatalf("progress ended at %d of %d after %d calls", last, len(data), calls)
	}
}

// checkReads compares random ranges, and the ranges at the end, with want.
func checkReads(t *testing.T, src io.ReaderAt, want []byte, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, uint64(len(want))))
	size := len(want)
	for i := range n {
		off := r.IntN(size)
		l := 1 + r.IntN(min(size-off, 3<<20))
		if i%5 == 0 {
			l = min(size-off, 1+r.IntN(4096)) // small reads too
		}
		got := make([]byte, l)
		m, err := src.ReadAt(got, int64(off))
		if err != nil && !(err == io.EOF && off+l == size) {
			t.Fatalf("ReadAt(%d, %d): %d, %v", l, off, m, err)
		}
		if m != l || !bytes.Equal(got, want[off:off+l]) {
			t.Fatalf("ReadAt(%d, %d): %d bytes, content differs", l, off, m)
		}
	}
	// Across the end: a short read with io.EOF, as io.ReaderAt says.
	got := make([]byte, 1000)
	m, err := src.ReadAt(got, int64(size-100))
	if m != 100 || err != io.EOF || !bytes.Equal(got[:100], want[size-100:]) {
		t.Fatalf("read across the end: %d, %v", m, err)
	}
	if m, err := src.ReadAt(got, int64(size)); m != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", m, err)
	}
}

func TestPageAndBlockBlob(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	data := imageData(1, 5<<20+1234)
	for _, block := range []bool{false, true} {
		name := map[bool]string{false: "page.img", true: "block.img"}[block]
		t.Run(name, func(t *testing.T) {
			url := srv.BlobURL(c, name)
			upload(t, data, url, block)
			b, err := blobsrc.Open(testCtx(t), url, keyOpts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			want := data
			if !block {
				// A page blob is whole pages; the tail is zero padding.
				want = append(append([]byte(nil), data...), make([]byte, 512-len(data)%512)...)
				if b.Type() != "PageBlob" {
					t.Fatalf("type %q", b.Type())
				}
			} else if b.Type() != "BlockBlob" {
				t.Fatalf("type %q", b.Type())
			}
			if b.Size() != int64(len(want)) {
				t.Fatalf("size %d, want %d", b.Size(), len(want))
			}
			if b.ETag() == "" || b.Auth() != "sharedkey" || strings.Contains(b.URL(), "?") {
				t.Fatalf("etag %q auth %q url %q", b.ETag(), b.Auth(), b.URL())
			}
			if !block {
				checkZeroPagesSkipped(t, url, data)
			}
			checkReads(t, b, want, 60)
			// A read larger than one GET (8 MiB) is split and still whole.
			all := make([]byte, len(want))
			if n, err := b.ReadAt(all, 0); n != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(all, want) {
				t.Fatalf("whole read: %d, %v", n, err)
			}
			if st := b.Stats(); st.Requests == 0 || st.BytesRead < int64(len(want)) || st.Retries != 0 || st.Failures != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// checkZeroPagesSkipped asks the service which pages were written: none of
// the all-zero ones.
func checkZeroPagesSkipped(t *testing.T, url string, data []byte) {
	t.Helper()
	pb, err := pageblob.NewClientWithSharedKeyCredential(url, needAzurite(t).Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	pager := pb.NewGetPageRangesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.PageRange {
			start, end := int(*r.Start), int(*r.End)+1
			written += end - start
			for p := start; p < end && p < len(data); p += 512 {
				if bytes.Equal(data[p:min(p+512, len(data))], make([]byte, min(512, len(data)-p))) {
					t.Fatalf("zero page at %d was uploaded", p)
				}
			}
		}
	}
	if written == 0 || written > len(data)-(1<<20) {
		t.Fatalf("%d bytes of pages written for %d bytes with a zero MiB", written, len(data))
	}
}

func TestEmptyAndTinyUploads(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	for _, tc := range []struct {
		name  string
		data  []byte
		block bool
		size  int64
	}{
		{"empty-page", nil, false, 0},
		{"empty-block", nil, true, 0},
		{"tiny-page", []byte("hello"), false, 512},
		{"tiny-block", []byte("hello"), true, 5},
	} {
		url := srv.BlobURL(c, tc.name)
		if err := blobsrc.Upload(testCtx(t), writeTemp(t, tc.data), url, blobsrc.UploadOptions{
			Block: tc.block, Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
		}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := blobsrc.Open(testCtx(t), url, keyOpts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b.Size() != tc.size {
			t.Fatalf("%s: size %d, want %d", tc.name, b.Size(), tc.size)
		}
		buf := make([]byte, 600)
		n, err := b.ReadAt(buf, 0)
		if err != io.EOF || n != int(tc.size) || !bytes.HasPrefix(buf[:n], tc.data) {
			t.Fatalf("%s: read %d, %v", tc.name, n, err)
		}
		b.Close()
	}
}

func TestAuthModes(t *testing.T) {
	srv := needAzurite(t)
	t.Setenv(blobsrc.EnvAccount, "")
	t.Setenv(blobsrc.EnvKey, "")
	private := newContainer(t, false)
	public := newContainer(t, true)
	data := imageData(2, 300<<10)
	upload(t, data, srv.BlobURL(private, "a.img"), false)
	upload(t, data, srv.BlobURL(public, "a.img"), true)
	ctx := testCtx(t)

	readsBack := func(t *testing.T, url string, o blobsrc.Options, mode string) {
		t.Helper()
		b, err := blobsrc.Open(ctx, url, o)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer b.Close()
		if b.Auth() != mode {
			t.Fatalf("auth %q, want %q", b.Auth(), mode)
		}
		checkReads(t, b, data, 5)
	}

	t.Run("sas", func(t *testing.T) {
		url, err := srv.SASURL(private, "a.img", sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		readsBack(t, url, blobsrc.Options{}, "sas")
		readsBack(t, url, blobsrc.Options{Auth: "sas"}, "sas")
	})
	t.Run("sharedkey-env", func(t *testing.T) {
		t.Setenv(blobsrc.EnvAccount, azuritetest.Account)
		t.Setenv(blobsrc.EnvKey, azuritetest.Key)
		readsBack(t, srv.BlobURL(private, "a.img"), blobsrc.Options{}, "sharedkey")
	})
	t.Run("anonymous-public", func(t *testing.T) {
		readsBack(t, srv.BlobURL(public, "a.img"), blobsrc.Options{}, "anonymous")
	})
	t.Run("anonymous-private", func(t *testing.T) {
		_, err := blobsrc.Open(ctx, srv.BlobURL(private, "a.img"), blobsrc.Options{Auth: "anonymous"})
		if !errors.Is(err, blobsrc.ErrNotFound) && !errors.Is(err, blobsrc.ErrAccessDenied) {
			t.Fatalf("anonymous read of a private container: %v", err)
		}
		t.Logf("%v", err)
	})
	t.Run("sas-mode-without-sas", func(t *testing.T) {
		_, err := blobsrc.Open(ctx, srv.BlobURL(private, "a.img"), blobsrc.Options{Auth: "sas"})
		if err == nil || !strings.Contains(err.Error(), "SAS") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unknown-mode", func(t *testing.T) {
		if _, err := blobsrc.Open(ctx, srv.BlobURL(private, "a.img"), blobsrc.Options{Auth: "magic"}); err == nil {
			t.Fatal("unknown auth mode accepted")
		}
	})
}

// A refused credential or a missing blob is one line, at once: no retries.
func TestOpenErrors(t *testing.T) {
	srv := needAzurite(t)
	t.Setenv(blobsrc.EnvAccount, "")
	t.Setenv(blobsrc.EnvKey, "")
	c := newContainer(t, false)
	upload(t, imageData(3, 4096), srv.BlobURL(c, "a.img"), false)
	p := newFaultProxy(t, srv.Host)
	ctx := testCtx(t)
	proxied := p.Endpoint() + "/" + c + "/a.img"

	good, err := srv.SASURL(c, "a.img", sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, query, _ := strings.Cut(good, "?")
	sig := ""
	for _, kv := range strings.Split(query, "&") {
		if strings.HasPrefix(kv, "sig=") {
			sig = kv
		}
	}
	wrong := proxied + "?" + strings.Replace(query, sig, "sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D", 1)
	expired, err := srv.SASURL(c, "a.img", sas.BlobPermissions{Read: true}, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	expired = proxied + "?" + strings.SplitN(expired, "?", 2)[1]

	for _, tc := range []struct {
		name, url string
		o         blobsrc.Options
		sentinel  error
		words     []string
	}{
		{"wrong-sas", wrong, blobsrc.Options{}, blobsrc.ErrAccessDenied, []string{"403"}},
		{"expired-sas", expired, blobsrc.Options{}, blobsrc.ErrAccessDenied, []string{"403"}},
		{"wrong-key", proxied, blobsrc.Options{Auth: "sharedkey", AccountKey: "d3Jvbmcga2V5IHdyb25nIGtleQ=="}, blobsrc.ErrAccessDenied, []string{"403"}},
		{"missing-blob", p.Endpoint() + "/" + c + "/nope.img", keyOpts, blobsrc.ErrNotFound, []string{"404", "BlobNotFound"}},
		{"missing-container", p.Endpoint() + "/nocontainer/a.img", keyOpts, blobsrc.ErrNotFound, []string{"404", "ContainerNotFound"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.reads.Load()
			_, err := blobsrc.Open(ctx, tc.url, tc.o)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("got %v, want %v", err, tc.sentinel)
			}
			msg := err.Error()
			t.Logf("%s", msg)
			for _, w := range tc.words {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "sig=") || strings.Contains(msg, "AAAAAAAA") {
				t.Errorf("error is not one line without the SAS: %q", msg)
			}
			if n := p.reads.Load() - before; n != 1 {
				t.Errorf("%d requests for a permanent failure, want 1", n)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		// Nothing listens on port 1: retried (it may come back), then one line.
		_, err := blobsrc.Open(ctx, "http://127.0.0.1:1/devstoreaccount1/c/a.img", blobsrc.Options{Retries: 2, RetryDelay: time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "gave up after 3 tries") {
			t.Fatalf("got %v", err)
		}
		t.Logf("%v", err)
	})
	t.Run("bad-url", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:1/devstoreaccount1/c", "https://acct.blob.core.windows.net/onlycontainer", "ftp://x/y/z", "http://a b/"} {
			if _, err := blobsrc.Open(ctx, u, blobsrc.Options{}); err == nil {
				t.Errorf("%q accepted", u)
			}
		}
	})
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"https://acct.blob.core.windows.net/c/b?sv=1&sig=x":  true,
		"http://127.0.0.1:10000/devstoreaccount1/c/b":        true,
		"HTTPS://acct.blob.core.windows.net/c/b":             true,
		"/var/lib/image.img":                                 false,
		"image.img":                                          false,
		"file:///x":                                          false,
		"https:relative":                                     false,
		"C:\\images\\x.img":                                  false,
		"https://acct.blob.core.windows.net/c/dir/x.img?a=b": true,
	} {
		if got := blobsrc.IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v", s, got)
		}
	}
}

// Reads after the blob was overwritten fail with ErrBlobChanged, never
// returning bytes of the new version.
func TestBlobChanged(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	url := srv.BlobURL(c, "a.img")
	v1 := imageData(4, 1<<20)
	upload(t, v1, url, false)
	b, err := blobsrc.Open(testCtx(t), url, keyOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checkReads(t, b, v1, 3)
	upload(t, imageData(5, 1<<20), url, false)
	buf := make([]byte, 64<<10)
	for range 2 {
		n, err := b.ReadAt(buf, 100<<10)
		if !errors.Is(err, blobsrc.ErrBlobChanged) {
			t.Fatalf("read after overwrite: %d, %v", n, err)
		}
		if n != 0 {
			t.Fatalf("read after overwrite returned %d bytes", n)
		}
	}
	if st := b.Stats(); st.Retries != 0 {
		t.Fatalf("a version change was retried: %+v", st)
	}
}

// faultyBlob uploads data and opens it through a fault proxy.
func faultyBlob(t testing.TB, data []byte, o blobsrc.Options) (*blobsrc.Blob, *faultProxy) {
	t.Helper()
	srv := needAzurite(t)
	c := newContainer(t, false)
	upload(t, data, srv.BlobURL(c, "a.img"), false)
	p := newFaultProxy(t, srv.Host)
	o.Auth, o.AccountName, o.AccountKey = "sharedkey", azuritetest.Account, azuritetest.Key
	o.Logger = slog.New(slog.DiscardHandler)
	b, err := blobsrc.Open(testCtx(t), p.Endpoint()+"/"+c+"/a.img", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, p
}

// Transient faults are retried and never show in the data.
func TestFaultsRetried(t *testing.T) {
	data := imageData(6, 4<<20)
	// More retries than faults in the plan: no read can run out.
	// No hedging: every fault must cost a retry of ours.
	b, p := faultyBlob(t, data, blobsrc.Options{Retries: 10, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, TryTimeout: 3 * time.Second, HedgeAfter: -1})
	plan := []fault{busy, drop, truncate, pass, busy, busy, truncate, stall, pass, drop, truncate}
	p.set(2*time.Millisecond, pass, plan...)
	checkReads(t, b, data, 30)
	want := int64(0)
	for _, f := range plan {
		if f != pass {
			want++
		}
	}
	if got := p.injected.Load(); got != want {
		t.Fatalf("%d faults applied, planned %d", got, want)
	}
	// Go's transport may itself repeat a GET whose reused connection
	// dropped; every other fault costs at least one retry of ours.
	st := b.Stats()
	if st.Retries < want-2 || st.Failures != 0 {
		t.Fatalf("stats %+v after %d faults", st, want)
	}
}

// When the retries run out the read fails; once the service is back, reads work.
func TestRetriesExhaustedThenRecovery(t *testing.T) {
	data := imageData(7, 1<<20)
	b, p := faultyBlob(t, data, blobsrc.Options{Retries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 10 * time.Millisecond, TryTimeout: 20 * time.Second})
	buf := make([]byte, 4096)
	for _, f := range []fault{busy, drop} {
		p.set(0, f)
		before := p.reads.Load()
		_, err := b.ReadAt(buf, 8192)
		if err == nil || errors.Is(err, blobsrc.ErrBlobChanged) {
			t.Fatalf("%v: read with the service down: %v", f, err)
		}
		t.Logf("%v: %v", f, err)
		if !strings.Contains(err.Error(), "gave up after") {
			t.Fatalf("%v: error %q does not say it gave up", f, err)
		}
		if n := p.reads.Load() - before; n < 3 {
			t.Fatalf("%v: %d tries, want 3", f, n)
		}
		p.set(0, pass)
		if n, err := b.ReadAt(buf, 8192); err != nil || n != len(buf) || !bytes.Equal(buf, data[8192:8192+4096]) {
			t.Fatalf("%v: read after recovery: %d, %v", f, n, err)
		}
	}
	if st := b.Stats(); st.Failures != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Close aborts a read that hangs on the network.
func TestCloseAbortsRead(t *testing.T) {
	data := imageData(8, 64<<10)
	b, p := faultyBlob(t, data, blobsrc.Options{TryTimeout: time.Minute})
	p.set(0, stall)
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadAt(make([]byte, 4096), 0)
		done <- err
	}()
	// Wait until the request reached the proxy.
	for deadline := time.Now().Add(30 * time.Second); p.reads.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the read never reached the proxy")
		}
	}
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, blobsrc.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("read still blocked after Close")
	}
	if _, err := b.ReadAt(make([]byte, 1), 0); !errors.Is(err, blobsrc.ErrClosed) {
		t.Fatalf("read on a closed blob: %v", err)
	}
}
