package luks

import (
	"encoding/json"
	"errors"
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

// fuzzBase is the header of a differential-test base (testdata/seeds/
// diff-*.hdr) padded with zeros to its image size: the keyslot material
// is gone, so no key opens it, but every header path runs.
func fuzzBase(f *testing.F, i int) []byte {
	rc := diffBaseRecipes[i]
	hdr, err := os.ReadFile("testdata/seeds/diff-" + rc.name + ".hdr")
	if err != nil {
		f.Fatal(err)
	}
	img := make([]byte, rc.size)
	copy(img, hdr)
	return img
}

// FuzzMutatedHeader applies the differential test's seeded mutations
// (mutate_test.go) to its base headers. There is no oracle here; it checks
// what chestfs can check alone: no panic, IsLUKS agrees with ReadHeader,
// an accepted header prints, reads the same twice, keeps its keyslot areas
// and data inside the source, and unlocking it neither panics nor returns
// a volume outside the source. The seeds are the mutations of
// TestDifferentialCryptsetup; testdata/fuzz/FuzzMutatedHeader holds those
// on which chestfs once disagreed with cryptsetup.
func FuzzMutatedHeader(f *testing.F) {
	var bases [][]byte
	for i := range diffBaseRecipes {
		bases = append(bases, fuzzBase(f, i))
		for seed := range uint64(diffSeeds[diffBaseRecipes[i].name]) {
			f.Add(uint8(i), seed)
		}
	}
	f.Fuzz(func(t *testing.T, base uint8, seed uint64) {
		img, desc := mutate(bases[int(base)%len(bases)], seed)
		checkHeaderInvariants(t, img, desc)
	})
}

func checkHeaderInvariants(t *testing.T, img []byte, desc string) {
	src := bytesSource(img)
	h, err := ReadHeader(src)
	if IsLUKS(src) == errors.Is(err, ErrNotLUKS) {
		t.Fatalf("%s: IsLUKS %v but ReadHeader: %v", desc, IsLUKS(src), err)
	}
	if err != nil {
		return
	}
	if err := h.WriteText(io.Discard); err != nil {
		t.Fatal(err)
	}
	if js, err := h.JSON(); err != nil || !json.Valid(js) {
		t.Fatalf("%s: JSON: %v", desc, err)
	}
	h2, err := ReadHeader(src)
	if err != nil || h2.UUID != h.UUID || h2.FromSecondary != h.FromSecondary || h2.Version != h.Version {
		t.Fatalf("%s: second read differs: %v", desc, err)
	}
	size := uint64(len(img))
	if h.Version == 1 {
		for i, k := range h.V1.KeyBlocks {
			end := (uint64(k.KeyMaterialOffset) + afAreaSize(int(h.V1.KeyBytes), luks1Stripes)/512) * 512
			if k.Stripes != luks1Stripes || end > size {
				t.Fatalf("%s: key slot %d [%d stripes] ends at %d beyond %d", desc, i, k.Stripes, end, size)
			}
		}
	} else {
		hs := h.Binary.HdrSize
		end := 2*hs + uint64(h.Metadata.Config.KeyslotsSize)
		if end > size {
			t.Fatalf("%s: keyslots area ends at %d beyond %d", desc, end, size)
		}
		for id, ks := range h.Metadata.Keyslots {
			if a := ks.Area; a == nil || uint64(a.Offset) < 2*hs || uint64(a.Offset)+uint64(a.Size) > end {
				t.Fatalf("%s: keyslot %s area outside the keyslots area", desc, id)
			}
		}
	}
	if !diffCheap(h) {
		return
	}
	if v, err := Open(src, nil, []byte("fuzz")); err == nil {
		if v.offset < 0 || uint64(v.offset)+uint64(v.Size()) > size {
			t.Fatalf("%s: volume [%d,+%d) beyond %d", desc, v.offset, v.Size(), size)
		}
		buf := make([]byte, 4096)
		v.ReadAt(buf, 0)
	}
}
