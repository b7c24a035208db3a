package luks

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cryptsetupAccepts reports whether `cryptsetup luksDump` reads the header.
func cryptsetupAccepts(t *testing.T, path string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "cryptsetup", "luksDump", path).Run() == nil
}

// rewriteJSONArea replaces the JSON area of both header copies with area
// (the rest NUL) and fixes the checksums.
func rewriteJSONArea(t *testing.T, img []byte, edit func(js []byte) []byte) []byte {
	t.Helper()
	img = bytes.Clone(img)
	hdrSize := binary.BigEndian.Uint64(img[8:16])
	js := img[4096:hdrSize]
	js = bytes.Clone(js[:bytes.IndexByte(js, 0)])
	out := edit(js)
	for _, off := range []uint64{0, hdrSize} {
		area := img[off+4096 : off+hdrSize]
		clear(area)
		copy(area, out)
		fixChecksum(img[off : off+hdrSize])
	}
	return img
}

// TestLUKS2ValidationAgreesWithCryptsetup breaks one of cryptsetup's LUKS2
// metadata rules at a time in a header cryptsetup made: cryptsetup must
// refuse the header, and so must ReadHeader, naming the rule.
func TestLUKS2ValidationAgreesWithCryptsetup(t *testing.T) {
	base := newLUKS2(t)
	orig, err := os.ReadFile(base.path)
	if err != nil {
		t.Fatal(err)
	}
	orig = orig[:17*mib]
	setSlot1 := func(md map[string]any, offset string) {
		ks := obj(md, "keyslots")
		one := map[string]any{}
		for k, v := range obj(ks, "0") {
			one[k] = v
		}
		area := map[string]any{}
		for k, v := range obj(ks, "0", "area") {
			area[k] = v
		}
		area["offset"] = offset
		one["area"] = area
		ks["1"] = one
		obj(md, "digests", "0")["keyslots"] = []any{"0", "1"}
	}
	jsonCases := []struct {
		name string
		edit func(md map[string]any)
		text string
	}{
		{"segment-without-offset", func(md map[string]any) { delete(obj(md, "segments", "0"), "offset") }, "segment 0 has no valid offset"},
		{"segment-without-iv_tweak", func(md map[string]any) { delete(obj(md, "segments", "0"), "iv_tweak") }, "no valid iv_tweak"},
		{"segment-offset-unaligned", func(md map[string]any) { obj(md, "segments", "0")["offset"] = "16777217" }, "multiple of 512"},
		{"overlapping-keyslot-areas", func(md map[string]any) { setSlot1(md, "36864") }, "overlap"},
		{"area-beyond-keyslots_size", func(md map[string]any) { setSlot1(md, "16773120") }, "outside the keyslots area"},
		{"digest-lists-missing-keyslot", func(md map[string]any) { obj(md, "digests", "0")["keyslots"] = []any{"0", "5"} }, "lists 5, which does not exist"},
		{"digest-lists-missing-segment", func(md map[string]any) { obj(md, "digests", "0")["segments"] = []any{"0", "3"} }, "lists 3, which does not exist"},
		{"segment-without-digest", func(md map[string]any) { obj(md, "digests", "0")["segments"] = []any{} }, "not covered by any digest"},
		{"keyslot-without-digest", func(md map[string]any) { obj(md, "digests", "0")["keyslots"] = []any{} }, "covered by 0 digests"},
		{"token-lists-missing-keyslot", func(md map[string]any) {
			obj(md, "tokens")["0"] = map[string]any{"type": "x", "keyslots": []any{"4"}}
		}, "token 0"},
		{"no-tokens", func(md map[string]any) { delete(md, "tokens") }, `lacks the "tokens" object`},
		{"keyslots_size-unaligned", func(md map[string]any) { obj(md, "config")["keyslots_size"] = "16744447" }, "keyslots_size"},
		{"segment-gap", func(md map[string]any) {
			s := obj(md, "segments")
			s["1"] = s["0"]
			delete(s, "0")
			obj(md, "digests", "0")["segments"] = []any{"1"}
		}, "numbered 0..0"},
		{"pbkdf2-without-hash", func(md map[string]any) { delete(obj(md, "keyslots", "0", "kdf"), "hash") }, "pbkdf2 kdf needs hash"},
	}
	check := func(t *testing.T, img []byte, text string) {
		t.Helper()
		path := writeTemp(t, img)
		if cryptsetupAccepts(t, path) {
			t.Fatal("cryptsetup accepts the header: the case does not break a rule")
		}
		_, err := ReadHeader(openFile(t, path))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), text) {
			t.Fatalf("ReadHeader: %v, want ErrCorrupt naming %q", err, text)
		}
	}
	for _, c := range jsonCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, orig)
			rewriteLUKS2(t, path, c.edit)
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check(t, img, c.text)
		})
	}
	areaCases := []struct {
		name string
		edit func(js []byte) []byte
		text string
	}{
		{"json-without-nul", func(js []byte) []byte {
			return append(js, bytes.Repeat([]byte{' '}, 12288-len(js))...)
		}, "no terminating NUL"},
		{"bytes-after-nul", func(js []byte) []byte { return append(append(js, 0, 0), 'x') }, "after the JSON's terminating NUL"},
		{"garbage-after-object", func(js []byte) []byte { return append(js, " x"...) }, "bytes after the JSON object"},
		{"leading-space", func(js []byte) []byte { return append([]byte{' '}, js...) }, "does not start with '{'"},
	}
	for _, c := range areaCases {
		t.Run(c.name, func(t *testing.T) { check(t, rewriteJSONArea(t, orig, c.edit), c.text) })
	}
	// Controls: what cryptsetup reads, ReadHeader reads.
	for name, img := range map[string][]byte{
		"pristine":         orig,
		"space-before-nul": rewriteJSONArea(t, orig, func(js []byte) []byte { return append(js, " \n"...) }),
		"pbkdf2-extra-field": rewriteJSONArea(t, orig, func(js []byte) []byte {
			return bytes.Replace(js, []byte(`"type":"pbkdf2",`), []byte(`"type":"pbkdf2","x":1,`), 1)
		}),
		"reformatted-json": rewriteJSONArea(t, orig, func(js []byte) []byte {
			return bytes.ReplaceAll(js, []byte(`":`), []byte(`": `))
		}),
	} {
		path := writeTemp(t, img)
		if !cryptsetupAccepts(t, path) {
			t.Fatalf("%s: cryptsetup refuses the control", name)
		}
		if _, err := ReadHeader(openFile(t, path)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestLUKS2OneBrokenCopy: a copy that breaks a rule is skipped for the
// other, as cryptsetup does.
func TestLUKS2OneBrokenCopy(t *testing.T) {
	im := newLUKS2(t)
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Clone(orig)
	area := img[4096:16384]
	js := bytes.Replace(area[:bytes.IndexByte(area, 0)], []byte(`"iv_tweak":"0",`), nil, 1)
	if len(js) == bytes.IndexByte(area, 0) {
		t.Fatal("no iv_tweak in the JSON")
	}
	clear(area)
	copy(area, js)
	fixChecksum(img[:16384])
	h, err := openImage(t, im, img)
	if err != nil || !h.FromSecondary || len(h.Warnings) == 0 || !strings.Contains(h.Warnings[0], "iv_tweak") {
		t.Fatalf("broken primary: %v %+v", err, h)
	}
}

// TestLUKS1KeyslotsAgreeWithCryptsetup: cryptsetup checks every key slot,
// active or not, and the device size; so does ReadHeader.
func TestLUKS1KeyslotsAgreeWithCryptsetup(t *testing.T) {
	im := newImage(t, 4*mib, "--type", "luks1", "--pbkdf-force-iterations", "1000")
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	slot := func(i, field int) int { return 208 + i*48 + field }
	kmo := func(b []byte, i int) uint32 { return binary.BigEndian.Uint32(b[slot(i, 40):]) }
	cases := []struct {
		name string
		edit func(b []byte) []byte
		want error
		text string
	}{
		{"inactive-slot-stripes", func(b []byte) []byte { binary.BigEndian.PutUint32(b[slot(7, 44):], 3999); return b }, ErrCorrupt, "keyslot 7 is invalid"},
		{"inactive-slot-in-header", func(b []byte) []byte { binary.BigEndian.PutUint32(b[slot(5, 40):], 1); return b }, ErrCorrupt, "overlaps the header"},
		{"inactive-slot-overlap", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[slot(4, 40):], kmo(b, 3)+1)
			return b
		}, ErrCorrupt, "overlaps key slot"},
		{"inactive-slot-in-payload", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[slot(7, 40):], binary.BigEndian.Uint32(b[104:])-1)
			return b
		}, ErrCorrupt, "reaches the payload"},
		{"device-too-small", func(b []byte) []byte { return b[:int(kmo(b, 7))*512+1000] }, ErrTruncated, "device too small"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, c.edit(bytes.Clone(orig)))
			if cryptsetupAccepts(t, path) {
				t.Fatal("cryptsetup accepts the header: the case does not break a rule")
			}
			_, err := ReadHeader(openFile(t, path))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("ReadHeader: %v, want %v naming %q", err, c.want, c.text)
			}
		})
	}
	path := writeTemp(t, orig)
	if !cryptsetupAccepts(t, path) {
		t.Fatal("cryptsetup refuses the control")
	}
	if _, err := ReadHeader(openFile(t, path)); err != nil {
		t.Fatal(err)
	}
}
