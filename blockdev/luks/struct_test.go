package luks

import (
	"bytes"
	"crypto/sha256"
	"os"
	"strings"
	"testing"
)

// TestEncodeReproducesCryptsetup decodes both header copies cryptsetup wrote
// and encodes them again: the bytes must be the same, checksum included.
func TestEncodeReproducesCryptsetup(t *testing.T) {
	im := newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--label", "enc-test", "--subsystem", "sub")
	img, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(openFile(t, im.path))
	if err != nil {
		t.Fatal(err)
	}
	hs := int(h.Binary.HdrSize)
	for i, off := range []int{0, hs} {
		orig := img[off : off+hs]
		bin := decodeLUKS2Binary(orig)
		js := orig[BinaryHeaderSize:]
		js = js[:bytes.IndexByte(js, 0)]
		out := make([]byte, hs)
		if err := bin.Encode(out, js); err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if !bytes.Equal(out, orig) {
			t.Fatalf("copy %d: re-encoded header differs from cryptsetup's", i)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	ok := func() BinaryHeader {
		return BinaryHeader{Magic: "LUKS", Version: 2, HdrSize: 16384, ChecksumAlg: "sha256", UUID: "u"}
	}
	for _, c := range []struct {
		name string
		edit func(h *BinaryHeader)
		js   int
		text string
	}{
		{"magic", func(h *BinaryHeader) { h.Magic = "LUKX" }, 2, "magic"},
		{"version", func(h *BinaryHeader) { h.Version = 1 }, 2, "version"},
		{"hdr-size", func(h *BinaryHeader) { h.HdrSize = 20000 }, 2, "hdr_size"},
		{"label", func(h *BinaryHeader) { h.Label = strings.Repeat("l", 48) }, 2, "label"},
		{"label-nul", func(h *BinaryHeader) { h.Label = "a\x00b" }, 2, "label"},
		{"salt", func(h *BinaryHeader) { h.Salt = make([]byte, 65) }, 2, "salt"},
		{"csum-alg", func(h *BinaryHeader) { h.ChecksumAlg = "md5" }, 2, "checksum"},
		{"json-no-nul", func(h *BinaryHeader) {}, 12288, "does not fit"},
	} {
		h := ok()
		c.edit(&h)
		err := h.Encode(make([]byte, 16384), bytes.Repeat([]byte{'{'}, c.js))
		if err == nil || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.text)
		}
	}
	h := ok()
	b := make([]byte, 16384)
	if err := h.Encode(b, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	bin := decodeLUKS2Binary(b)
	sum := sha256.Sum256(append(append(bytes.Clone(b[:448]), make([]byte, 64)...), b[512:]...))
	if bin.UUID != "u" || bin.HdrSize != 16384 || !bytes.Equal(bin.Checksum[:32], sum[:]) ||
		string(b[4096:4098]) != "{}" || bytes.ContainsFunc(b[4098:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("read back %+v", bin)
	}
}
