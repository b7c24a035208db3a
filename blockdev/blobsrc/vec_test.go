package blobsrc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
)

// ReadVecAtContext fills several buffers from one run of the blob, resuming
// a body cut short in the middle of any of them.
func TestReadVec(t *testing.T) {
	data := imageData(12, 3<<20+1000)
	b, p := faultyBlob(t, data, blobsrc.Options{Retries: 10, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, TryTimeout: 5 * time.Second})
	sizes := []int{1000, 1 << 20, 7, 1<<20 + 333, 4096}
	for i, plan := range [][]fault{nil, {truncate, truncate, truncate}} {
		p.set(0, pass, plan...)
		bufs := make([][]byte, len(sizes))
		total := 0
		for j, n := range sizes {
			bufs[j] = make([]byte, n)
			total += n
		}
		const off = 12345
		n, err := b.ReadVecAtContext(context.Background(), bufs, off)
		if err != nil || n != total {
			t.Fatalf("plan %d: %d bytes, %v; want %d", i, n, err, total)
		}
		if got := bytes.Join(bufs, nil); !bytes.Equal(got, data[off:off+total]) {
			t.Fatalf("plan %d: the buffers differ from the blob", i)
		}
	}
	if st := b.Stats(); st.Retries < 3 {
		t.Errorf("3 bodies cut short, %d retries", st.Retries)
	}
	// Past the end (of the page blob, padded with zeros): what there is,
	// then io.EOF.
	padded := append(data, make([]byte, b.Size()-int64(len(data)))...)
	bufs := [][]byte{make([]byte, 600), make([]byte, 600)}
	n, err := b.ReadVecAtContext(context.Background(), bufs, b.Size()-1000)
	if n != 1000 || !errors.Is(err, io.EOF) || !bytes.Equal(append(bufs[0], bufs[1][:400]...), padded[len(padded)-1000:]) {
		t.Errorf("read over the end: %d, %v", n, err)
	}
}

// ReadVecAtProgress reports each buffer as it is complete, in order, with
// its bytes already in place, also across bodies cut short and resumed.
func TestReadVecProgress(t *testing.T) {
	data := imageData(13, 3<<20+1000)
	b, p := faultyBlob(t, data, blobsrc.Options{Retries: 10, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, TryTimeout: 5 * time.Second})
	sizes := []int{1000, 1 << 20, 7, 1<<20 + 333, 4096}
	for i, plan := range [][]fault{nil, {truncate, truncate, truncate}} {
		p.set(0, pass, plan...)
		bufs := make([][]byte, len(sizes))
		var ends []int64 // the buffers' ends
		total := 0
		for j, n := range sizes {
			bufs[j] = make([]byte, n)
			total += n
			ends = append(ends, int64(total))
		}
		const off = 777
		var seen []int64
		n, err := b.ReadVecAtProgress(context.Background(), bufs, off, func(filled int64) {
			if k := len(seen); k > 0 && filled <= seen[k-1] {
				t.Errorf("plan %d: filled %d after %d", i, filled, seen[k-1])
			}
			if !bytes.Equal(bytes.Join(bufs, nil)[:filled], data[off:off+filled]) {
				t.Errorf("plan %d: filled %d before those bytes were in", i, filled)
			}
			seen = append(seen, filled)
		})
		if err != nil || n != total {
			t.Fatalf("plan %d: %d bytes, %v; want %d", i, n, err, total)
		}
		// Every buffer's end is reported, none other.
		if len(seen) != len(ends) {
			t.Fatalf("plan %d: reported %v, want each buffer's end %v", i, seen, ends)
		}
		for j := range ends {
			if seen[j] != ends[j] {
				t.Errorf("plan %d: reported %v, want %v", i, seen, ends)
				break
			}
		}
	}
}
