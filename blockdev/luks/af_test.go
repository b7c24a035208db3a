package luks

import (
	"bytes"
	"errors"
	"testing"
)

func TestAFRoundTrip(t *testing.T) {
	for _, hash := range []string{"sha1", "sha256", "sha512"} {
		for _, keySize := range []int{16, 32, 33, 64} {
			key := pattern(keySize+8, uint64(keySize))[:keySize]
			split, err := AFSplit(hash, key, 4000)
			if err != nil {
				t.Fatal(err)
			}
			if len(split) != keySize*4000 {
				t.Fatalf("split of %d bytes", len(split))
			}
			got, err := AFMerge(hash, split, keySize, 4000)
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("%s/%d: merge gives another key (%v)", hash, keySize, err)
			}
			// Every stripe matters.
			split[keySize*1234] ^= 1
			if got, _ := AFMerge(hash, split, keySize, 4000); bytes.Equal(got, key) {
				t.Fatalf("%s/%d: flipped stripe ignored", hash, keySize)
			}
		}
	}
	if _, err := AFMerge("sha256", make([]byte, 100), 32, 4000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short split: %v", err)
	}
	if _, err := AFMerge("md5", make([]byte, 32*4000), 32, 4000); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("md5: %v", err)
	}
	if _, err := AFSplit("sha256", make([]byte, 32), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("0 stripes: %v", err)
	}
	if _, err := AFMerge("sha256", nil, 1<<20, 4000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge split: %v", err)
	}
}
