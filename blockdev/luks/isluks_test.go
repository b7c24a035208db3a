package luks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// TestIsLUKSAgreesWithReadHeader: IsLUKS finds a LUKS2 header through its
// secondary copy when the primary is wiped, as ReadHeader (and cryptsetup)
// do, and ReadHeader returns ErrNotLUKS exactly when IsLUKS is false.
func TestIsLUKSAgreesWithReadHeader(t *testing.T) {
	for _, meta := range []string{"16k", "64k"} {
		t.Run(meta, func(t *testing.T) {
			im := newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"--luks2-metadata-size", meta)
			orig, err := os.ReadFile(im.path)
			must(t, err)
			hs := binary.BigEndian.Uint64(orig[offHdrSize:])
			cases := []struct {
				name     string
				edit     func(b []byte)
				isLUKS   bool
				want     error // nil: ReadHeader reads it
				csAccept bool
			}{
				{"pristine", func(b []byte) {}, true, nil, true},
				{"primary-wiped", func(b []byte) { clear(b[:BinaryHeaderSize]) }, true, nil, true},
				{"primary-magic-only-wiped", func(b []byte) { clear(b[:6]) }, true, nil, true},
				{"both-wiped", func(b []byte) { clear(b[:BinaryHeaderSize]); clear(b[hs : hs+BinaryHeaderSize]) }, false, ErrNotLUKS, false},
				{"secondary-checksum-bad", func(b []byte) { clear(b[:BinaryHeaderSize]); b[hs+luks2ChecksumAt] ^= 1 }, true, ErrCorrupt, false},
				{"version-3", func(b []byte) { binary.BigEndian.PutUint16(b[offVersion:], 3) }, true, ErrUnsupported, false},
			}
			for _, c := range cases {
				img := bytes.Clone(orig)
				c.edit(img)
				src := bytesSource(img)
				if got := IsLUKS(src); got != c.isLUKS {
					t.Errorf("%s: IsLUKS = %v", c.name, got)
				}
				h, err := ReadHeader(src)
				switch {
				case c.want == nil && err != nil:
					t.Errorf("%s: ReadHeader: %v", c.name, err)
				case c.want != nil && !errors.Is(err, c.want):
					t.Errorf("%s: ReadHeader: %v, want %v", c.name, err, c.want)
				case c.name == "primary-wiped" && !h.FromSecondary:
					t.Errorf("%s: not read from the secondary copy", c.name)
				}
				if errors.Is(err, ErrNotLUKS) == IsLUKS(src) {
					t.Errorf("%s: IsLUKS and ReadHeader disagree", c.name)
				}
				if got := cryptsetupAccepts(t, writeTemp(t, img)); got != c.csAccept {
					t.Errorf("%s: cryptsetup luksDump accepts: %v", c.name, got)
				}
			}
		})
	}
	if IsLUKS(bytesSource(nil)) || IsLUKS(bytesSource(make([]byte, 5<<20))) {
		t.Fatal("IsLUKS on nothing or zeros")
	}
	if _, err := ReadHeader(bytesSource(make([]byte, 3))); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("3 bytes: %v", err)
	}
}
