package verity

import (
	"bytes"
	"context"
	"testing"

	"github.com/chestfs/chestfs/blockdev/cache"
)

// vecFile reads vectors from a memFile and counts the requests, as a blob
// source does with one ranged GET per vector.
type vecFile struct {
	*memFile
	requests int
}

func (v *vecFile) ReadVecAtContext(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	v.requests++
	n := 0
	for _, b := range bufs {
		m, err := v.ReadAt(b, off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestVectorReadsVerified: one vector read of several chunks (the cache's
// readahead through the Reader) is one request to the data source, and
// every block in it is checked: a tampered block fails its chunk, the
// chunks before it are whole.
func TestVectorReadsVerified(t *testing.T) {
	data, d, h, _, root := tamperTree(t)
	v := &vecFile{memFile: d}
	r, err := Open(v, h, 0, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	bufs := [][]byte{make([]byte, 64<<10), make([]byte, 64<<10), make([]byte, 64<<10)}
	n, err := r.ReadVecAtContext(context.Background(), bufs, 128<<10)
	if err != nil || n != 192<<10 || v.requests != 1 {
		t.Fatalf("clean vector read: n=%d err=%v requests=%d", n, err, v.requests)
	}
	if !bytes.Equal(bytes.Join(bufs, nil), data[128<<10:320<<10]) {
		t.Fatal("vector read returned other bytes")
	}
	d.b[(128<<10)+(64<<10)+5000] ^= 0x80 // in the second buffer
	n, err = r.ReadVecAtContext(context.Background(), bufs, 128<<10)
	wantEIO(t, err)
	if n != (64<<10)+4608 || !bytes.Equal(bufs[0], data[128<<10:192<<10]) || !bytes.Equal(bufs[2], make([]byte, 64<<10)) {
		t.Fatalf("tampered vector read: n=%d, want the first buffer and the good blocks of the second only", n)
	}
	// The chunk cache above the Reader reads ahead through it and serves
	// only verified bytes.
	c := cache.New(r, cache.Options{ChunkSize: 64 << 10, MaxBytes: 1 << 20})
	defer c.Close()
	buf := make([]byte, 64<<10)
	if _, err := c.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:64<<10]) {
		t.Fatalf("through the cache: %v", err)
	}
	if _, err := c.ReadAt(buf, 192<<10); err == nil {
		t.Fatal("through the cache: the tampered chunk read without error")
	}
	// Only the bad block fails: the rest of its chunk still reads.
	small := make([]byte, 512)
	for _, at := range []int64{192 << 10, (192 << 10) + 4096, (192 << 10) + 5120} {
		if n, err := c.ReadAt(small, at); err != nil || n != 512 || !bytes.Equal(small, data[at:at+512]) {
			t.Errorf("good block at %d in the tampered chunk: %d, %v", at, n, err)
		}
	}
	if _, err := c.ReadAt(small, (192<<10)+4608); err == nil {
		t.Error("the tampered block read through the cache")
	}
}
