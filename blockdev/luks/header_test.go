package luks

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// rewriteLUKS2 edits the JSON metadata of both header copies of a LUKS2 image
// and recomputes their checksums, as a hostile or newer writer could.
func rewriteLUKS2(t *testing.T, path string, edit func(md map[string]any)) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdrSize := binary.BigEndian.Uint64(img[8:16])
	js := img[4096:hdrSize]
	js = js[:bytes.IndexByte(js, 0)]
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var md map[string]any
	if err := dec.Decode(&md); err != nil {
		t.Fatal(err)
	}
	edit(md)
	out, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(out)) >= hdrSize-4096 {
		t.Fatal("edited JSON too large")
	}
	for _, off := range []uint64{0, hdrSize} {
		area := img[off+4096 : off+hdrSize]
		clear(area)
		copy(area, out)
		fixChecksum(img[off : off+hdrSize])
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixChecksum recomputes the sha256 checksum of one header copy.
func fixChecksum(hdr []byte) {
	clear(hdr[448:512])
	sum := sha256.Sum256(hdr)
	copy(hdr[448:], sum[:])
}

func obj(v any, keys ...string) map[string]any {
	m := v.(map[string]any)
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func newLUKS2(t *testing.T) *image {
	return newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "4096")
}

func TestLUKS2MetadataRefusals(t *testing.T) {
	base := newLUKS2(t)
	orig, err := os.ReadFile(base.path)
	if err != nil {
		t.Fatal(err)
	}
	orig = orig[:17*mib] // header, keyslots and 1 MiB of data are enough
	cases := []struct {
		name string
		edit func(md map[string]any)
		want error
		text string // expected in the error message
	}{
		{"requirements", func(md map[string]any) {
			obj(md, "config")["requirements"] = map[string]any{"mandatory": []any{"online-reencrypt-v2"}}
		}, ErrUnsupported, "online-reencrypt-v2"},
		{"reencrypt-keyslot", func(md map[string]any) {
			obj(md, "keyslots")["1"] = map[string]any{"type": "reencrypt", "key_size": 1, "mode": "encrypt", "direction": "forward",
				"area": map[string]any{"type": "none", "offset": "290816", "size": "4096"}}
		}, ErrUnsupported, "reencryption keyslot"},
		{"segment-flags", func(md map[string]any) {
			obj(md, "segments", "0")["flags"] = []any{"in-reencryption"}
		}, ErrUnsupported, "in-reencryption"},
		{"two-segments", func(md map[string]any) {
			// Valid for cryptsetup: 0 has a fixed size, 1 follows it, one digest covers both.
			s := obj(md, "segments")
			two := map[string]any{}
			for k, v := range obj(s, "0") {
				two[k] = v
			}
			obj(s, "0")["size"] = "1048576"
			two["offset"] = "17825792"
			s["1"] = two
			obj(md, "digests", "0")["segments"] = []any{"0", "1"}
		}, ErrUnsupported, "2 data segments"},
		{"integrity", func(md map[string]any) {
			obj(md, "segments", "0")["integrity"] = map[string]any{"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"}
		}, ErrUnsupported, "integrity"},
		{"segment-cipher", func(md map[string]any) {
			obj(md, "segments", "0")["encryption"] = "twofish-xts-plain64"
		}, ErrUnsupported, "twofish"},
		{"area-cipher", func(md map[string]any) {
			obj(md, "keyslots", "0", "area")["encryption"] = "serpent-xts-plain64"
		}, ErrUnsupported, "serpent"},
		{"kdf-scrypt", func(md map[string]any) {
			obj(md, "keyslots", "0", "kdf")["type"] = "scrypt"
		}, ErrUnsupported, "scrypt"},
		{"argon2-memory", func(md map[string]any) {
			obj(md, "keyslots", "0")["kdf"] = map[string]any{"type": "argon2id", "time": 4, "memory": 5 << 20, "cpus": 1, "salt": "AAAA"}
		}, ErrUnsupported, "memory"},
		{"argon2-cpus", func(md map[string]any) {
			obj(md, "keyslots", "0")["kdf"] = map[string]any{"type": "argon2i", "time": 4, "memory": 1024, "cpus": 200, "salt": "AAAA"}
		}, ErrUnsupported, "cpus"},
		{"pbkdf2-iterations", func(md map[string]any) {
			obj(md, "keyslots", "0", "kdf")["iterations"] = int64(1) << 40
		}, ErrUnsupported, "iterations"},
		{"digest-iterations", func(md map[string]any) {
			obj(md, "digests", "0")["iterations"] = 0
		}, ErrUnsupported, "iterations"},
		{"digest-hash", func(md map[string]any) {
			obj(md, "digests", "0")["hash"] = "md4"
		}, ErrUnsupported, "md4"},
		{"af-hash", func(md map[string]any) {
			obj(md, "keyslots", "0", "af")["hash"] = "whirlpool"
		}, ErrUnsupported, "whirlpool"},
		{"area-outside", func(md map[string]any) {
			obj(md, "keyslots", "0", "area")["offset"] = "1073741824"
		}, ErrCorrupt, "outside the keyslots area"},
		{"json-size", func(md map[string]any) {
			obj(md, "config")["json_size"] = "4096"
		}, ErrCorrupt, "json_size"},
		{"u64-as-number", func(md map[string]any) {
			obj(md, "segments", "0")["offset"] = 16777216
		}, ErrCorrupt, "decimal string"},
		{"segment-size", func(md map[string]any) {
			obj(md, "segments", "0")["size"] = "lots"
		}, ErrCorrupt, "size"},
		{"sector-size", func(md map[string]any) {
			obj(md, "segments", "0")["sector_size"] = 1000
		}, ErrCorrupt, "sector_size"},
		{"key-size", func(md map[string]any) {
			obj(md, "keyslots", "0")["key_size"] = 1 << 30
		}, ErrCorrupt, "anti-forensic"},
		{"stripes", func(md map[string]any) {
			obj(md, "keyslots", "0", "af")["stripes"] = 0
		}, ErrCorrupt, "stripes"},
		{"stripes-too-many-for-area", func(md map[string]any) {
			obj(md, "keyslots", "0", "af")["stripes"] = 8000
		}, ErrCorrupt, "does not fit"},
		{"segment-beyond-data", func(md map[string]any) {
			obj(md, "segments", "0")["offset"] = "1073741824"
		}, ErrTruncated, "data source"},
		{"fixed-size-beyond-data", func(md map[string]any) {
			obj(md, "segments", "0")["size"] = "1073741824"
		}, ErrTruncated, "data source"},
		{"unbound-keyslot", func(md map[string]any) {
			obj(md, "digests", "0")["keyslots"] = []any{}
		}, ErrCorrupt, "covered by 0 digests"},
		{"keyslot-id", func(md map[string]any) {
			ks := obj(md, "keyslots")
			ks["x"] = ks["0"]
		}, ErrCorrupt, "numbered form"},
		{"null-segment", func(md map[string]any) {
			obj(md, "segments")["0"] = nil
		}, ErrCorrupt, "lists 0, which does not exist"},
		{"no-keyslots", func(md map[string]any) {
			delete(md, "keyslots")
		}, ErrCorrupt, "lacks"},
		{"wrong-af-type", func(md map[string]any) {
			obj(md, "keyslots", "0", "af")["type"] = "luks3"
		}, ErrCorrupt, "luks3"},
		{"salt-not-base64", func(md map[string]any) {
			obj(md, "digests", "0")["salt"] = "!!!"
		}, ErrCorrupt, "base64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, orig)
			rewriteLUKS2(t, path, c.edit)
			f := openFile(t, path)
			_, err := Open(f, nil, base.key)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %q does not mention %q", err, c.text)
			}
			if bytes.Contains([]byte(err.Error()), base.key) {
				t.Fatal("key in error message")
			}
			// Whatever ReadHeader accepts must also print.
			if h, err := ReadHeader(f); err == nil {
				var out bytes.Buffer
				if err := h.WriteText(&out); err != nil {
					t.Fatal(err)
				}
				if _, err := h.JSON(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// The requirement is shown by the dump, like cryptsetup does.
	path := writeTemp(t, orig)
	rewriteLUKS2(t, path, cases[0].edit)
	h, err := ReadHeader(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	h.WriteText(&out)
	if !strings.Contains(out.String(), "Requirements:\tonline-reencrypt-v2") {
		t.Fatalf("requirement not shown:\n%s", out.String())
	}
}

// openImage reads the header of img and opens it with im's key.
func openImage(t *testing.T, im *image, img []byte) (*Header, error) {
	f := openFile(t, writeTemp(t, img))
	h, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	if _, err := Open(f, nil, im.key); err != nil {
		return nil, err
	}
	return h, nil
}

func TestLUKS2HeaderCopies(t *testing.T) {
	im := newLUKS2(t)
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	open := func(img []byte) (*Header, error) { return openImage(t, im, img) }
	if h, err := open(orig); err != nil || h.FromSecondary || len(h.Warnings) != 0 {
		t.Fatalf("pristine: %v %+v", err, h)
	}

	// Damaged primary JSON: the secondary copy takes over.
	img := bytes.Clone(orig)
	img[4096+5] ^= 0xff
	h, err := open(img)
	if err != nil || !h.FromSecondary || len(h.Warnings) == 0 {
		t.Fatalf("damaged primary: %v", err)
	}
	// Primary magic wiped: still found through the secondary.
	img = bytes.Clone(orig)
	clear(img[:8])
	if h, err := open(img); err != nil || !h.FromSecondary {
		t.Fatalf("wiped primary magic: %v", err)
	}
	// Damaged secondary: primary used, with a warning.
	img = bytes.Clone(orig)
	img[16384+4096+5] ^= 0xff
	if h, err := open(img); err != nil || h.FromSecondary || len(h.Warnings) == 0 {
		t.Fatalf("damaged secondary: %v", err)
	}
	// Both damaged: a clear error.
	img = bytes.Clone(orig)
	img[4096+5] ^= 0xff
	img[16384+4096+5] ^= 0xff
	if _, err := open(img); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("both damaged: %v", err)
	}
	// Higher seqid wins: make the secondary newer with a label.
	img = bytes.Clone(orig)
	sec := img[16384 : 2*16384]
	binary.BigEndian.PutUint64(sec[16:24], binary.BigEndian.Uint64(sec[16:24])+1)
	copy(sec[24:], "newer")
	fixChecksum(sec)
	if h, err := open(img); err != nil || !h.FromSecondary || h.Label != "newer" {
		t.Fatalf("newer secondary: %v %+v", err, h)
	}
	// Bad hdr_size in both copies.
	img = bytes.Clone(orig)
	for _, off := range []int{0, 16384} {
		binary.BigEndian.PutUint64(img[off+8:], 12345)
		fixChecksum(img[off : off+16384])
	}
	if _, err := open(img); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "hdr_size") {
		t.Fatalf("bad hdr_size: %v", err)
	}
	// Unknown checksum algorithm.
	img = bytes.Clone(orig)
	for _, off := range []int{0, 16384} {
		copy(img[off+72:off+104], "crc32\x00\x00")
	}
	if _, err := open(img); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown checksum: %v", err)
	}
}

func TestLUKS2TruncatedOrNotLUKS(t *testing.T) {
	im := newLUKS2(t)
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	// Truncated images.
	for _, n := range []int{0, 7, 4096, 20000, 32768, 100000, 16*mib - 1} {
		if _, err := openImage(t, im, orig[:n]); err == nil {
			t.Fatalf("image truncated to %d bytes opened", n)
		}
	}
	// Truncated between header and data end: dynamic segment just shrinks to whole sectors.
	f := openFile(t, writeTemp(t, orig[:16*mib+4096+100]))
	v, err := Open(f, nil, im.key)
	if err != nil || v.Size() != 4096 {
		t.Fatalf("short data: %v", err)
	}
	// Not LUKS at all.
	for name, b := range map[string][]byte{"zeros": make([]byte, 1*mib), "random": pattern(1*mib, 7)} {
		_, err := ReadHeader(bytesSource(b))
		if !errors.Is(err, ErrNotLUKS) || !strings.HasPrefix(err.Error(), "luks: not a LUKS header: ") {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if IsLUKS(bytesSource(make([]byte, 4096))) || IsLUKS(bytesSource(nil)) {
		t.Fatal("IsLUKS on zeros")
	}
}

func TestLUKS1BadInput(t *testing.T) {
	im := newImage(t, 4*mib, "--type", "luks1", "--pbkdf-force-iterations", "1000")
	orig, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(b []byte) []byte
		want error
	}{
		{"key-bytes-0", func(b []byte) []byte { binary.BigEndian.PutUint32(b[108:], 0); return b }, ErrCorrupt},
		{"key-bytes-huge", func(b []byte) []byte { binary.BigEndian.PutUint32(b[108:], 1<<31); return b }, ErrCorrupt},
		// cryptsetup takes a slot in an unknown state as disabled.
		{"slot-state", func(b []byte) []byte { binary.BigEndian.PutUint32(b[208+48:], 0x12345678); return b }, nil},
		{"stripes", func(b []byte) []byte { binary.BigEndian.PutUint32(b[208+44:], 1<<30); return b }, ErrCorrupt},
		{"material-in-payload", func(b []byte) []byte { binary.BigEndian.PutUint32(b[208+40:], 4095); return b }, ErrCorrupt},
		{"cipher", func(b []byte) []byte { copy(b[8:40], "serpent\x00"); return b }, ErrUnsupported},
		{"hash", func(b []byte) []byte { copy(b[72:104], "ripemd160\x00"); return b }, ErrUnsupported},
		{"mk-iterations", func(b []byte) []byte { binary.BigEndian.PutUint32(b[164:], 0); return b }, ErrUnsupported},
		{"slot-iterations", func(b []byte) []byte { binary.BigEndian.PutUint32(b[208+4:], 0); return b }, ErrUnsupported},
		{"wrong-digest", func(b []byte) []byte { b[112] ^= 1; return b }, ErrWrongKey},
		{"truncated-phdr", func(b []byte) []byte { return b[:300] }, ErrTruncated},
		{"truncated-keyslot", func(b []byte) []byte { return b[:8*512+1000] }, ErrTruncated},
		{"truncated-payload", func(b []byte) []byte { return b[:4096*512-1] }, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := openFile(t, writeTemp(t, c.edit(bytes.Clone(orig))))
			_, err := Open(f, nil, im.key)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
		})
	}
}

// TestDumpMatchesCryptsetup compares WriteText with `cryptsetup luksDump`.
func TestDumpMatchesCryptsetup(t *testing.T) {
	cases := map[string][]string{
		"luks2-pbkdf2-label": {"--type", "luks2", "--sector-size", "4096", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--label", "data", "--subsystem", "chestfs"},
		"luks2-argon2id":     {"--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--hash", "sha512"},
		"luks1-xts":          {"--type", "luks1", "--pbkdf-force-iterations", "1000"},
		"luks1-essiv":        {"--type", "luks1", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256", "--pbkdf-force-iterations", "1000"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			im := newImage(t, 20*mib, args...)
			want := string(run(t, "cryptsetup", "luksDump", im.path))
			h, err := ReadHeader(openFile(t, im.path))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := h.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			want = regexp.MustCompile(`LUKS header information for \S+`).ReplaceAllString(want, "LUKS header information")
			if out.String() != want {
				t.Fatalf("WriteText differs from luksDump.\n--- got\n%s\n--- want\n%s", out.String(), want)
			}
			js, err := h.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if back["uuid"] != h.UUID || back["uuid"] == "" {
				t.Fatalf("JSON uuid %v", back["uuid"])
			}
			if h.Version == 2 {
				seg := back["metadata"].(map[string]any)["segments"].(map[string]any)["0"].(map[string]any)
				if seg["encryption"] != h.Metadata.Segments["0"].Encryption || seg["offset"] != "16777216" {
					t.Fatalf("JSON segment %v", seg)
				}
			} else if back["luks1"].(map[string]any)["cipherMode"] != h.V1.CipherMode {
				t.Fatalf("JSON luks1 %v", back["luks1"])
			}
		})
	}
}
