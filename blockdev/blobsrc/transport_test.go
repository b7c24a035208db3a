package blobsrc_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
)

// recorder is an HTTP server on loopback that counts connections and
// requests; its client dials it whatever host a URL names, so a request
// that left the process for any host would be counted.
type recorder struct {
	conns, reqs atomic.Int64
	client      *http.Client
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.reqs.Add(1)
			w.WriteHeader(http.StatusNotFound)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				r.conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	r.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	return r
}

const clearSAS = "?sv=2022-11-02&sp=r&sig=TOPSECRETSIGNATURE"

// TestHTTPRefusedBeforeAnyRequest: an http URL to a storage account is
// refused without a connection; AllowHTTP lets the same request out (so the
// recorder would have seen it).
func TestHTTPRefusedBeforeAnyRequest(t *testing.T) {
	rec := newRecorder(t)
	u := "http://acct.blob.core.windows.net/c/disk.img" + clearSAS
	_, err := blobsrc.Open(context.Background(), u, blobsrc.Options{HTTPClient: rec.client, Retries: -1})
	if !errors.Is(err, blobsrc.ErrInsecureHTTP) {
		t.Fatalf("Open(http non-loopback): err %v, want ErrInsecureHTTP", err)
	}
	if strings.Contains(err.Error(), "TOPSECRET") {
		t.Errorf("error shows the SAS: %v", err)
	}
	if n := rec.conns.Load(); n != 0 {
		t.Fatalf("%d connections made before the refusal", n)
	}

	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	err = blobsrc.Upload(context.Background(), img, u, blobsrc.UploadOptions{HTTPClient: rec.client, Retries: -1})
	if !errors.Is(err, blobsrc.ErrInsecureHTTP) {
		t.Fatalf("Upload(http non-loopback): err %v, want ErrInsecureHTTP", err)
	}
	if n := rec.conns.Load(); n != 0 {
		t.Fatalf("%d connections made by Upload before the refusal", n)
	}

	// The control: with AllowHTTP the request goes out and the recorder sees it.
	_, err = blobsrc.Open(context.Background(), u, blobsrc.Options{HTTPClient: rec.client, Retries: -1, AllowHTTP: true})
	if err == nil || errors.Is(err, blobsrc.ErrInsecureHTTP) {
		t.Fatalf("Open with AllowHTTP: err %v, want the recorder's 404", err)
	}
	if rec.reqs.Load() == 0 {
		t.Fatal("AllowHTTP: no request reached the recorder; the test cannot see requests")
	}
}

// TestHTTPLoopbackAllowed: Azurite-style http URLs on loopback go out
// without AllowHTTP.
func TestHTTPLoopbackAllowed(t *testing.T) {
	for _, host := range []string{"127.0.0.1:10000", "127.8.9.10:10000", "[::1]:10000", "localhost:10000", "LOCALHOST:10000"} {
		rec := newRecorder(t)
		u := "http://" + host + "/devstoreaccount1/c/disk.img"
		_, err := blobsrc.Open(context.Background(), u, blobsrc.Options{HTTPClient: rec.client, Retries: -1})
		if errors.Is(err, blobsrc.ErrInsecureHTTP) {
			t.Errorf("%s: loopback http refused: %v", host, err)
		}
		if rec.reqs.Load() == 0 {
			t.Errorf("%s: no request sent", host)
		}
	}
	// Names that merely look local are not loopback: DNS is not trusted.
	for _, host := range []string{"azurite:10000", "127.0.0.1.nip.io:10000", "10.0.0.1:10000", "[::ffff:10.0.0.1]:10000", "0.0.0.0:10000"} {
		rec := newRecorder(t)
		_, err := blobsrc.Open(context.Background(), "http://"+host+"/devstoreaccount1/c/disk.img", blobsrc.Options{HTTPClient: rec.client, Retries: -1})
		if !errors.Is(err, blobsrc.ErrInsecureHTTP) {
			t.Errorf("%s: err %v, want ErrInsecureHTTP", host, err)
		}
		if rec.conns.Load() != 0 {
			t.Errorf("%s: a connection was made", host)
		}
	}
}
