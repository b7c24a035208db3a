package luks

// A deterministic mutator of LUKS1 and LUKS2 headers, shared by the
// differential test against cryptsetup (diff_test.go) and the fuzz target
// FuzzMutatedHeader. A mutation is named by its seed: the same seed applied
// to headers of the same layout makes the same change, whatever the salts
// and keys of the particular image, so results do not depend on the random
// bytes cryptsetup put into the base image.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

func mutRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6c756b73)) }

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// mutate returns a mutated copy of img (a LUKS1 or LUKS2 image) and a short
// description of the change.
func mutate(img []byte, seed uint64) ([]byte, string) {
	img = bytes.Clone(img)
	r := mutRand(seed)
	if bytes.Equal(img[:6], magic1) && binary.BigEndian.Uint16(img[6:8]) == 1 {
		return mutateLUKS1(img, r)
	}
	switch n := r.IntN(100); {
	case n < 45:
		return mutateJSONTree(img, r, 3)
	case n < 60:
		return mutateJSONText(img, r)
	case n < 80:
		return mutateBinary(img, r)
	case n < 92:
		return mutateJSONTree(img, r, r.IntN(2)+1) // one copy only
	default:
		return mutateImage(img, r)
	}
}

// luks2Copies returns the offsets and sizes of the two header copies of a
// pristine base image.
func luks2HdrSize(img []byte) uint64 { return binary.BigEndian.Uint64(img[offHdrSize:]) }

// fixLUKS2Checksum recomputes the sha256 checksum of the copy at off, of
// the size its binary header records (when that fits the image).
func fixLUKS2Checksum(img []byte, off uint64) {
	n := binary.BigEndian.Uint64(img[off+offHdrSize:])
	if n < BinaryHeaderSize || n > uint64(len(img)) || off > uint64(len(img))-n {
		return
	}
	hdr := img[off : off+n]
	clear(hdr[luks2ChecksumAt : luks2ChecksumAt+luks2ChecksumN])
	sum := sha256.Sum256(hdr)
	copy(hdr[luks2ChecksumAt:], sum[:])
}

// setJSONArea writes js into the JSON area of the copies in which (bit 0
// primary, bit 1 secondary), NUL-padded, and fixes their checksums.
func setJSONArea(img []byte, js []byte, which int) {
	hs := luks2HdrSize(img)
	for i, off := range []uint64{0, hs} {
		if which&(1<<i) == 0 {
			continue
		}
		area := img[off+BinaryHeaderSize : off+hs]
		clear(area)
		copy(area, js)
		fixLUKS2Checksum(img, off)
	}
}

func jsonText(img []byte) []byte {
	area := img[BinaryHeaderSize:luks2HdrSize(img)]
	if i := bytes.IndexByte(area, 0); i >= 0 {
		area = area[:i]
	}
	return bytes.Clone(area)
}

// jpath is a path into a decoded JSON document.
type jpath []any // string keys, int indexes

func collectPaths(v any, p jpath, out *[]jpath) {
	*out = append(*out, p)
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the order must not depend on map iteration
		for _, k := range keys {
			collectPaths(x[k], append(append(jpath{}, p...), k), out)
		}
	case []any:
		for i, e := range x {
			collectPaths(e, append(append(jpath{}, p...), i), out)
		}
	}
}

func getPath(root any, p jpath) any {
	for _, k := range p {
		switch x := root.(type) {
		case map[string]any:
			root = x[k.(string)]
		case []any:
			root = x[k.(int)]
		}
	}
	return root
}

// setPath sets (or with del, removes) the value at p; p is not empty.
func setPath(root any, p jpath, v any, del bool) {
	parent := getPath(root, p[:len(p)-1])
	switch x := parent.(type) {
	case map[string]any:
		if del {
			delete(x, p[len(p)-1].(string))
		} else {
			x[p[len(p)-1].(string)] = v
		}
	case []any:
		i := p[len(p)-1].(int)
		if del {
			// Arrays are values in their parent: rebuild and store it.
			n := append(append([]any{}, x[:i]...), x[i+1:]...)
			setPath(root, p[:len(p)-1], n, false)
		} else {
			x[i] = v
		}
	}
}

// numberVariants are the replacements for a decimal string or number.
func numberVariants(s string) []any {
	n, err := strconv.ParseUint(s, 10, 64)
	out := []any{"0", "512", "4096", "-1", "18446744073709551615", "18446744073709551616", "", " " + s, s + " ",
		"0" + s, "+" + s, "0x10", "1e3", json.Number(s), json.Number("-1"), json.Number("1.5"), "dynamic"}
	if err == nil {
		for _, d := range []uint64{1, 511, 512, 4096, 16384, 262144} {
			out = append(out, strconv.FormatUint(n+d, 10))
			if n >= d {
				out = append(out, strconv.FormatUint(n-d, 10))
			}
		}
		out = append(out, strconv.FormatUint(n*2, 10), strconv.FormatUint(n/2, 10))
	}
	return out
}

var otherValues = []any{nil, true, false, "", "x", "dynamic", "crypt", "linear", "luks2", "raw", "pbkdf2", "argon2id",
	"argon2i", "sha1", "sha512", "md5", "whirlpool", "aes-xts-plain64", "aes-cbc-essiv:sha256", "cipher_null-ecb",
	"aes-xts-plain", "serpent-xts-plain64", json.Number("0"), json.Number("1"), json.Number("2"), json.Number("-1"),
	json.Number("512"), json.Number("4096"), json.Number("4294967296"), json.Number("1e2"), json.Number("3.5"),
	[]any{}, []any{"0"}, []any{"1"}, []any{"0", "1"}, []any{"0", "0"}, []any{json.Number("0")},
	map[string]any{}, "AAAA", "AA==", "!!!!", "backup-final", "online-reencrypt-v2", "allow-discards"}

// mutateJSONTree applies 1-3 structural changes to the decoded metadata and
// writes it back to the copies in which.
func mutateJSONTree(img []byte, r *rand.Rand, which int) ([]byte, string) {
	dec := json.NewDecoder(bytes.NewReader(jsonText(img)))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return img, "undecodable base"
	}
	var descs []string
	for range r.IntN(3) + 1 {
		descs = append(descs, treeOp(root, r))
	}
	js, err := json.Marshal(root)
	if err != nil {
		return img, "unencodable"
	}
	if which != 3 {
		// A one-copy change is a newer or older update of that copy.
		hs := luks2HdrSize(img)
		off := uint64(0)
		if which == 2 {
			off = hs
		}
		seq := binary.BigEndian.Uint64(img[off+offSeqID:])
		binary.BigEndian.PutUint64(img[off+offSeqID:], seq+uint64(r.IntN(3))-1)
		descs = append(descs, fmt.Sprintf("copy %d only", which))
	}
	setJSONArea(img, js, which)
	return img, "json: " + strings.Join(descs, "; ")
}

func treeOp(root any, r *rand.Rand) string {
	var paths []jpath
	collectPaths(root, nil, &paths)
	p := pick(r, paths[1:])
	v := getPath(root, p)
	switch op := r.IntN(10); {
	case op < 2:
		setPath(root, p, nil, true)
		return fmt.Sprintf("delete %v", p)
	case op < 6:
		var nv any
		switch x := v.(type) {
		case string:
			if r.IntN(3) > 0 {
				nv = pick(r, numberVariants(x))
			} else {
				nv = pick(r, otherValues)
			}
		case json.Number:
			if r.IntN(2) == 0 {
				nv = string(x)
			} else {
				nv = pick(r, numberVariants(string(x)))
			}
		default:
			nv = pick(r, otherValues)
		}
		setPath(root, p, nv, false)
		return fmt.Sprintf("set %v = %v", p, nv)
	case op < 8:
		// Copy an object under another name (a new keyslot, segment,
		// digest or token) or into another place.
		m, ok := getPath(root, p[:len(p)-1]).(map[string]any)
		if !ok {
			setPath(root, p, pick(r, otherValues), false)
			return fmt.Sprintf("set %v (array element)", p)
		}
		name := pick(r, []string{"0", "1", "2", "3", "5", "31", "32", "01", "-1", "a", "1 ", ""})
		b, _ := json.Marshal(v)
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var cp any
		d.Decode(&cp)
		m[name] = cp
		return fmt.Sprintf("copy %v to %q", p, name)
	default:
		m, ok := v.(map[string]any)
		if !ok {
			setPath(root, p, nil, true)
			return fmt.Sprintf("delete %v", p)
		}
		k := pick(r, []string{"x", "priority", "flags", "integrity", "iv_tweak", "requirements", "keyslots", "segments", "shift_size"})
		nv := pick(r, otherValues)
		m[k] = nv
		return fmt.Sprintf("add %v.%s = %v", p, k, nv)
	}
}

var textBytes = []byte{'"', '{', '}', ',', ':', ' ', '0', '9', 'a', '\\', 0, 0xff, '\n', '[', ']', '-', 'A', '/', '*', '\'', 'e', '.', '\t', 0x7f}

var textInserts = []string{" ", ",", "/*c*/", "//x\n", "\\u0000", "\"\"", "{}", "[]", "0", "\x00", "\xc3\x28", "\r\n", "\"x\":1,"}

// mutateJSONText changes the JSON text itself, in both copies.
func mutateJSONText(img []byte, r *rand.Rand) ([]byte, string) {
	js := jsonText(img)
	pos := r.IntN(len(js) + 1)
	var desc string
	switch op := r.IntN(6); op {
	case 0, 1:
		if pos == len(js) {
			pos--
		}
		b := pick(r, textBytes)
		js[pos] = b
		desc = fmt.Sprintf("byte %d = %q", pos, b)
	case 2:
		s := pick(r, textInserts)
		js = append(js[:pos], append([]byte(s), js[pos:]...)...)
		desc = fmt.Sprintf("insert %q at %d", s, pos)
	case 3:
		n := min(r.IntN(4)+1, len(js)-pos)
		js = append(js[:pos], js[pos+n:]...)
		desc = fmt.Sprintf("delete %d at %d", n, pos)
	case 4:
		js = js[:pos]
		desc = fmt.Sprintf("truncate at %d", pos)
	default:
		s := pick(r, []string{" ", "\n", "x", "{}", "\x00x", "\x00\x00\x01", " \t\r\n", "//"})
		js = append(js, s...)
		desc = fmt.Sprintf("append %q", s)
	}
	area := int(luks2HdrSize(img)) - BinaryHeaderSize
	if len(js) > area {
		js = js[:area]
	}
	setJSONArea(img, js, 3)
	return img, "text: " + desc
}

// binaryField is a field of the LUKS2 binary header and the values tried.
type binaryField struct {
	name   string
	off, n int
	values func(r *rand.Rand, cur []byte) []byte
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func cstr(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}

var binaryFields = []binaryField{
	{"magic", 0, 6, func(r *rand.Rand, cur []byte) []byte {
		return pick(r, [][]byte{magic1, magic2, []byte("LUKS\xba\xbf"), make([]byte, 6)})
	}},
	{"version", offVersion, 2, func(r *rand.Rand, cur []byte) []byte {
		return binary.BigEndian.AppendUint16(nil, pick(r, []uint16{0, 1, 2, 3, 0xffff}))
	}},
	{"hdr_size", offHdrSize, 8, func(r *rand.Rand, cur []byte) []byte {
		return be64(pick(r, []uint64{0, 4096, 16384, 16385, 20480, 32768, 65536, 4 << 20, 8 << 20, 1 << 63}))
	}},
	{"seqid", offSeqID, 8, func(r *rand.Rand, cur []byte) []byte {
		s := binary.BigEndian.Uint64(cur)
		return be64(pick(r, []uint64{0, s - 1, s + 1, ^uint64(0)}))
	}},
	{"label", offLabel, luks2LabelLen, func(r *rand.Rand, cur []byte) []byte {
		return pick(r, [][]byte{cstr("x", 48), bytes.Repeat([]byte("L"), 48), cstr("\xff\xfe", 48), cstr("a\nb", 48)})
	}},
	{"checksum_alg", offCsumAlg, csumAlgLen, func(r *rand.Rand, cur []byte) []byte {
		return cstr(pick(r, []string{"sha1", "sha512", "sha224", "sha384", "SHA256", "Sha256", "whirlpool", "md5", "crc32", "",
			"sha3-256", "blake2b-512", "ripemd160", "sha256 ", "stribog512"}), csumAlgLen)
	}},
	{"salt", offSalt, luks2SaltLen, func(r *rand.Rand, cur []byte) []byte { return bytes.Repeat([]byte{0x5a}, 64) }},
	{"uuid", offUUID, uuidLen, func(r *rand.Rand, cur []byte) []byte {
		return pick(r, [][]byte{make([]byte, 40), bytes.Repeat([]byte("u"), 40), cstr("not-a-uuid", 40)})
	}},
	{"subsystem", offSubsystem, subsystemLen, func(r *rand.Rand, cur []byte) []byte {
		return pick(r, [][]byte{cstr("s", 48), bytes.Repeat([]byte("S"), 48)})
	}},
	{"hdr_offset", offHdrOffset, 8, func(r *rand.Rand, cur []byte) []byte {
		return be64(pick(r, []uint64{0, 1, 16384, 32768, 65536}))
	}},
	{"padding", 300, 1, func(r *rand.Rand, cur []byte) []byte { return []byte{1} }},
	{"checksum", luks2ChecksumAt, 1, func(r *rand.Rand, cur []byte) []byte { return []byte{cur[0] ^ 1} }},
	{"padding4096", 2000, 1, func(r *rand.Rand, cur []byte) []byte { return []byte{0xee} }},
}

// mutateBinary changes a binary header field of one or both copies and
// usually recomputes the checksum.
func mutateBinary(img []byte, r *rand.Rand) ([]byte, string) {
	hs := luks2HdrSize(img)
	which := pick(r, []int{1, 2, 3, 3})
	f := binaryFields[r.IntN(len(binaryFields))]
	fix := f.name != "checksum" && r.IntN(5) > 0
	var val []byte
	for i, off := range []uint64{0, hs} {
		if which&(1<<i) == 0 {
			continue
		}
		field := img[off+uint64(f.off) : off+uint64(f.off+f.n)]
		if val == nil {
			val = f.values(r, field)
		}
		copy(field, val)
		if fix {
			fixLUKS2Checksum(img, off)
		}
	}
	return img, fmt.Sprintf("binary: %s = %x in copy %d (checksum fixed: %v)", f.name, val, which, fix)
}

// mutateImage truncates the image or wipes a copy.
func mutateImage(img []byte, r *rand.Rand) ([]byte, string) {
	hs := luks2HdrSize(img)
	switch r.IntN(3) {
	case 0:
		n := pick(r, []int{int(hs), 2 * int(hs), 2*int(hs) + 4096, len(img) / 2, len(img) - 4096, len(img) - 1})
		return img[:n], fmt.Sprintf("image: truncate to %d", n)
	case 1:
		clear(img[:BinaryHeaderSize])
		return img, "image: primary binary header wiped"
	default:
		clear(img[hs : hs+BinaryHeaderSize])
		return img, "image: secondary binary header wiped"
	}
}

// LUKS1 phdr fields (cryptsetup's struct luks_phdr).
func mutateLUKS1(img []byte, r *rand.Rand) ([]byte, string) {
	var descs []string
	for range r.IntN(2) + 1 {
		descs = append(descs, luks1Op(img, r))
	}
	if r.IntN(10) == 0 {
		n := pick(r, []int{512, 1024, 4096, len(img) / 2, len(img) - 512})
		img = img[:n]
		descs = append(descs, fmt.Sprintf("truncate to %d", n))
	}
	return img, "luks1: " + strings.Join(descs, "; ")
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func luks1Op(img []byte, r *rand.Rand) string {
	slot := r.IntN(luks1NumKeys)
	kb := luks1KeyblockBase + slot*luks1KeyblockSize
	payload := binary.BigEndian.Uint32(img[104:])
	kmo := binary.BigEndian.Uint32(img[kb+40:])
	type field struct {
		name string
		off  int
		vals [][]byte
	}
	fields := []field{
		{"version", 6, [][]byte{{0, 0}, {0, 2}, {0, 3}}},
		{"cipherName", 8, [][]byte{cstr("aes", 32), cstr("twofish", 32), cstr("AES", 32), cstr("", 32), cstr("cipher_null", 32), cstr("xyz", 32), bytes.Repeat([]byte("a"), 32)}},
		{"cipherMode", 40, [][]byte{cstr("xts-plain64", 32), cstr("cbc-essiv:sha256", 32), cstr("ecb", 32), cstr("xts-plain", 32), cstr("", 32), cstr("cbc-plain", 32), cstr("xts-essiv:sha256", 32)}},
		{"hashSpec", 72, [][]byte{cstr("sha1", 32), cstr("sha256", 32), cstr("SHA256", 32), cstr("sha512", 32), cstr("ripemd160", 32), cstr("whirlpool", 32), cstr("md5", 32), cstr("sha3-256", 32), cstr("blake2b-512", 32), cstr("xxx", 32), cstr("", 32), bytes.Repeat([]byte("h"), 32)}},
		{"payloadOffset", 104, [][]byte{be32(0), be32(1), be32(payload - 1), be32(payload + 1), be32(payload * 2), be32(^uint32(0)), be32(8)}},
		{"keyBytes", 108, [][]byte{be32(0), be32(1), be32(16), be32(24), be32(32), be32(48), be32(64), be32(65), be32(1024), be32(1025), be32(1 << 31)}},
		{"mkDigest", 112, [][]byte{nil}},
		{"mkDigestSalt", 132, [][]byte{nil}},
		{"mkDigestIterations", 164, [][]byte{be32(0), be32(1), be32(1000), be32(^uint32(0))}},
		{"uuid", 168, [][]byte{make([]byte, 40), bytes.Repeat([]byte("u"), 40)}},
		{"active", kb, [][]byte{be32(luks1KeyActive), be32(luks1KeyDisabled), be32(0), be32(0x12345678)}},
		{"passwordIterations", kb + 4, [][]byte{be32(0), be32(1), be32(^uint32(0))}},
		{"passwordSalt", kb + 8, [][]byte{nil}},
		{"keyMaterialOffset", kb + 40, [][]byte{be32(0), be32(1), be32(7), be32(8), be32(kmo + 1), be32(kmo - 1), be32(payload - 1), be32(^uint32(0) - 10), be32(binary.BigEndian.Uint32(img[luks1KeyblockBase+((slot+1)%8)*luks1KeyblockSize+40:]))}},
		{"stripes", kb + 44, [][]byte{be32(0), be32(1), be32(3999), be32(4001), be32(1 << 20)}},
	}
	f := pick(r, fields)
	v := pick(r, f.vals)
	if v == nil { // flip a bit: the value differs whatever the base holds
		img[f.off] ^= 0x80
	}
	copy(img[f.off:], v)
	return fmt.Sprintf("%s(slot %d) = %x", f.name, slot, v)
}
