package blockdev

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestFileReadVec(t *testing.T) {
	data := make([]byte, 3<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bufs := [][]byte{make([]byte, 1<<20), make([]byte, 5), make([]byte, 1<<20)}
	n, err := f.ReadVecAtContext(context.Background(), bufs, 4096)
	if err != nil || n != 2<<20+5 || !bytes.Equal(bytes.Join(bufs, nil), data[4096:4096+n]) {
		t.Fatalf("read %d, %v", n, err)
	}
	// Past the end: the bytes there, then ErrUnexpectedEOF.
	n, err = f.ReadVecAtContext(context.Background(), bufs, int64(len(data))-100)
	if n != 100 || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) || !bytes.Equal(bufs[0][:100], data[len(data)-100:]) {
		t.Fatalf("short read: %d, %v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.ReadVecAtContext(ctx, bufs, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
