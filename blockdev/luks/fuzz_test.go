package luks

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// cheapKDFs reports whether unlocking h costs little, so the fuzzer may try it.
func cheapKDFs(h *Header) bool {
	if h.Version == 1 {
		if h.V1.MKDigestIterations > 2000 {
			return false
		}
		for _, k := range h.V1.KeyBlocks {
			if k.Enabled() && k.PasswordIterations > 2000 {
				return false
			}
		}
		return true
	}
	for _, ks := range h.Metadata.Keyslots {
		if k := ks.KDF; k != nil && (k.Iterations > 2000 || k.Memory > 64 || k.Time > 2) {
			return false
		}
	}
	for _, d := range h.Metadata.Digests {
		if d.Iterations > 2000 {
			return false
		}
	}
	return true
}

// FuzzReadHeader feeds header bytes (seeded with real cryptsetup headers from
// testdata/mkseeds.sh) to the parsers; nothing may panic.
func FuzzReadHeader(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/seeds/*.hdr")
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/seeds (run testdata/mkseeds.sh)")
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytesSource(data)
		IsLUKS(src)
		h, err := ReadHeader(src)
		if err != nil {
			return
		}
		if err := h.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		js, err := h.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(js) {
			t.Fatal("invalid JSON output")
		}
		if cheapKDFs(h) {
			if v, err := Open(src, nil, []byte("fuzz")); err == nil {
				buf := make([]byte, 4096)
				v.ReadAt(buf, 0)
			}
		}
	})
}

// FuzzLUKS2JSON mutates only the JSON metadata of a real LUKS2 header and
// keeps the checksums valid, so that the fuzzer gets past the checksum to the
// JSON parser, the refusal checks and the keyslot code.
func FuzzLUKS2JSON(f *testing.F) {
	tmpl, err := os.ReadFile("testdata/seeds/luks2-sidecar.hdr")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"luks2-sidecar", "luks2-argon2"} {
		b, err := os.ReadFile("testdata/seeds/" + name + ".hdr")
		if err != nil {
			f.Fatal(err)
		}
		js := b[4096:16384]
		if i := indexByte(js, 0); i >= 0 {
			js = js[:i]
		}
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if len(js) >= 16384-4096 {
			return
		}
		img := make([]byte, len(tmpl))
		copy(img, tmpl)
		for _, off := range []int{0, 16384} {
			area := img[off+4096 : off+16384]
			clear(area)
			copy(area, js)
			fixChecksum(img[off : off+16384])
		}
		src := bytesSource(img)
		h, err := ReadHeader(src)
		if err != nil {
			return
		}
		if err := h.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := h.JSON(); err != nil {
			t.Fatal(err)
		}
		if cheapKDFs(h) {
			Open(src, nil, []byte("fuzz"))
		}
	})
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
