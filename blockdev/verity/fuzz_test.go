package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
)

// FuzzDecodeSuperblock: no input panics, and what decodes encodes to a
// superblock that decodes to the same parameters.
func FuzzDecodeSuperblock(f *testing.F) {
	for _, name := range []string{"testdata/veritysetup-sb.bin", "testdata/small.hash"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:SuperblockSize])
	}
	f.Add([]byte("verity\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeSuperblock(b, 0)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded superblock does not encode: %v", err)
		}
		q, err := DecodeSuperblock(enc, 0)
		if err != nil || q.Algorithm != p.Algorithm || !bytes.Equal(q.Salt, p.Salt) || q.DataBlocks != p.DataBlocks ||
			q.DataBlockSize != p.DataBlockSize || q.HashBlockSize != p.HashBlockSize || q.HashType != p.HashType || q.UUID != p.UUID {
			t.Fatalf("round trip: %+v, %v; want %+v", q, err, p)
		}
	})
}

// FuzzOpen feeds any hash device to Open and Verify with veritysetup's
// small tree's data and root: whatever the tree, a read either fails or
// returns exactly the data.
func FuzzOpen(f *testing.F) {
	data, err := os.ReadFile("testdata/small.data")
	if err != nil {
		f.Fatal(err)
	}
	hash, err := os.ReadFile("testdata/small.hash")
	if err != nil {
		f.Fatal(err)
	}
	rootHex, err := os.ReadFile("testdata/small.root")
	if err != nil {
		f.Fatal(err)
	}
	root, err := hex.DecodeString(strings.TrimSpace(string(rootHex)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hash)
	for _, off := range []int{80, 600, 1100, 2000, 3000} {
		h := bytes.Clone(hash)
		h[off] ^= 4
		f.Add(h)
	}
	f.Add(hash[:1500])
	f.Fuzz(func(t *testing.T, h []byte) {
		verr := Verify(blockdev.Bytes(data), blockdev.Bytes(h), 0, root, nil)
		r, err := Open(blockdev.Bytes(data), blockdev.Bytes(h), 0, root, &Options{CacheBytes: 1024, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			if verr == nil {
				t.Fatalf("Verify accepts what Open refuses: %v", err)
			}
			return
		}
		buf := make([]byte, 1536)
		for off := int64(0); off < r.Size(); off += int64(len(buf)) {
			n, err := r.ReadAt(buf, off)
			if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
				t.Fatalf("read at %d returned bytes that are not the data (err %v)", off, err)
			}
			if err != nil && err != io.EOF && verr == nil {
				t.Fatalf("Verify accepts a tree a read refuses: %v", err)
			}
		}
	})
}
