package blobsrc_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"testing"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
)

// TestReadServer: the benchmarks' stand-in for the storage front end speaks
// the protocol the blob source expects (properties, ranged GETs, the
// pinned ETag, the end of the blob), so that a benchmark against it
// measures the same code paths as one against Azure.
func TestReadServer(t *testing.T) {
	data := make([]byte, 3<<20+123)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(data)
	rs := azuritetest.NewReadServer(data, 0)
	srv := httptest.NewServer(rs)
	defer srv.Close()
	ctx := context.Background()
	b, err := blobsrc.Open(ctx, srv.URL+"/acct/c/blob.img?sv=2023-11-03&sig=x", blobsrc.Options{Auth: "sas"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(data)) || b.Type() != "PageBlob" || b.ETag() != rs.ETag() {
		t.Fatalf("properties: size %d type %q etag %q; want %d PageBlob %q", b.Size(), b.Type(), b.ETag(), len(data), rs.ETag())
	}
	for _, c := range []struct{ off, n int64 }{{0, 4096}, {1 << 20, 2 << 20}, {int64(len(data)) - 100, 100}} {
		got := make([]byte, c.n)
		if n, err := b.ReadAt(got, c.off); err != nil || int64(n) != c.n {
			t.Fatalf("ReadAt [%d,+%d): %d, %v", c.off, c.n, n, err)
		}
		if !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt [%d,+%d): wrong bytes", c.off, c.n)
		}
	}
	// Past the end: the short read the source promises.
	got := make([]byte, 200)
	if n, err := b.ReadAt(got, int64(len(data))-100); n != 100 || err != io.EOF {
		t.Fatalf("read over the end: %d, %v; want 100, EOF", n, err)
	}
	if g := rs.Gets(); g != 4 {
		t.Fatalf("server counted %d GETs, want 4", g)
	}
}
