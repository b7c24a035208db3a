package luks

// cryptsetup's validation of the LUKS2 JSON area (lib/luks2's
// LUKS2_hdr_validate, validate_json_area and the luks2 keyslot handler's
// validate), rule by rule. A header copy that breaks one of them is invalid
// for cryptsetup, which then uses the other copy or refuses the device; so
// does readLUKS2Copy. Each error names the rule it applies.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// maxKeyslotsSize is LUKS2_MAX_KEYSLOTS_SIZE.
const maxKeyslotsSize = 128 << 20

type jobj = map[string]any

// invalid describes a broken rule (the caller wraps it in ErrCorrupt).
func invalid(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// splitJSONArea returns the JSON text of a JSON area: it must start with
// '{' and be followed by a NUL, with nothing but NULs after it.
func splitJSONArea(area []byte) ([]byte, error) {
	if len(area) == 0 || area[0] != '{' {
		return nil, invalid("JSON area does not start with '{'")
	}
	n := bytes.IndexByte(area, 0)
	if n < 0 {
		return nil, invalid("JSON area has no terminating NUL")
	}
	for i, c := range area[n:] {
		if c != 0 {
			return nil, invalid("JSON area has byte 0x%02x at %d after the JSON's terminating NUL", c, n+i)
		}
	}
	return area[:n], nil
}

// validateMetadata applies cryptsetup's rules to the JSON text js of a
// header copy of hdrSize bytes and returns the decoded tree.
func validateMetadata(js []byte, hdrSize uint64) (jobj, error) {
	dec := json.NewDecoder(bytes.NewReader(stripComments(js)))
	dec.UseNumber()
	var top jobj
	if err := dec.Decode(&top); err != nil {
		return nil, invalid("JSON metadata: %v", err)
	}
	// White space and comments may follow the object (json-c skips them),
	// nothing else.
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("JSON area has bytes after the JSON object")
	}
	sections := map[string]jobj{}
	for _, name := range []string{"keyslots", "tokens", "segments", "digests", "config"} {
		o, ok := top[name].(jobj)
		if !ok {
			return nil, invalid("JSON metadata lacks the %q object", name)
		}
		sections[name] = o
	}
	v := &validator{keyslots: sections["keyslots"], tokens: sections["tokens"], segments: sections["segments"],
		digests: sections["digests"], config: sections["config"], hdrSize: hdrSize}
	for _, check := range []func() error{v.requirements, v.tokensValid, v.digestsValid, v.segmentsValid,
		v.keyslotsValid, v.configValid, v.areasValid, v.keyslotDigests} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return top, nil
}

type validator struct {
	keyslots, tokens, segments, digests, config jobj
	hdrSize                                     uint64
}

// str returns o[key] when it is a non-empty string (json_contains_string),
// up to its first NUL: cryptsetup uses JSON strings as C strings.
func str(o jobj, key string) (string, bool) {
	s, ok := o[key].(string)
	s = cString([]byte(s))
	return s, ok && s != ""
}

// u64 parses o[key], a decimal string, as cryptsetup's numbered and
// json_str_to_uint64 do.
func u64(o jobj, key string) (uint64, bool) {
	s, ok := str(o, key)
	if !ok || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// integer reports whether o[key] is a JSON integer in 0..max.
func integer(o jobj, key string, max int64) bool {
	n, ok := o[key].(json.Number)
	if !ok {
		return false
	}
	i, err := n.Int64()
	return err == nil && i >= 0 && i <= max
}

// isInt reports whether o[key] is a JSON integer (json_type_int).
func isInt(o jobj, key string) bool {
	n, ok := o[key].(json.Number)
	if !ok {
		return false
	}
	_, err := n.Int64()
	return err == nil
}

// idList returns o[key] as an array of strings naming objects of in.
func idList(o jobj, key string, in jobj) ([]string, error) {
	arr, ok := o[key].([]any)
	if !ok {
		return nil, fmt.Errorf("no %q array", key)
	}
	ids := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%q holds a non-string", key)
		}
		if _, ok := in[s].(jobj); !ok {
			return nil, fmt.Errorf("%q lists %s, which does not exist", key, s)
		}
		ids = append(ids, s)
	}
	return ids, nil
}

// numbered is cryptsetup's numbered(): only digits, and "" counts.
func numbered(id string) bool { return strings.TrimLeft(id, "0123456789") == "" }

// objects returns the entries of section, which must be numbered objects.
func objects(section jobj, what string) (map[string]jobj, error) {
	out := make(map[string]jobj, len(section))
	for id, val := range section {
		if !numbered(id) {
			return nil, invalid("%s %q is not in numbered form", what, id)
		}
		o, ok := val.(jobj)
		if !ok {
			return nil, invalid("%s %s is not an object", what, id)
		}
		out[id] = o
	}
	return out, nil
}

func (v *validator) requirements() error {
	req, ok := v.config["requirements"]
	if !ok {
		return nil
	}
	ro, ok := req.(jobj)
	if !ok {
		return invalid("config.requirements is not an object")
	}
	mand, ok := ro["mandatory"]
	if !ok {
		return nil
	}
	arr, ok := mand.([]any)
	if !ok {
		return invalid("config.requirements.mandatory is not an array")
	}
	online := 0
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return invalid("config.requirements.mandatory holds a non-string")
		}
		if s == "online-reencrypt" || (strings.HasPrefix(s, "online-reencrypt-v") && numbered(s[len("online-reencrypt-v"):])) {
			online++
		}
	}
	if online > 1 {
		return invalid("config.requirements.mandatory has %d online reencryption flags", online)
	}
	return nil
}

func (v *validator) tokensValid() error {
	return typedWithRefs(v.tokens, "token", ref{"keyslots", v.keyslots})
}

func (v *validator) digestsValid() error {
	return typedWithRefs(v.digests, "digest", ref{"keyslots", v.keyslots}, ref{"segments", v.segments})
}

// ref is a list field naming objects of another section.
type ref struct {
	key string
	in  jobj
}

// typedWithRefs checks a section of numbered objects that each have a type
// and lists naming existing objects of other sections.
func typedWithRefs(section jobj, what string, refs ...ref) error {
	objs, err := objects(section, what)
	if err != nil {
		return err
	}
	for id, o := range objs {
		if _, ok := str(o, "type"); !ok {
			return invalid("%s %s has no type", what, id)
		}
		for _, r := range refs {
			if _, err := idList(o, r.key, r.in); err != nil {
				return invalid("%s %s: %v", what, id, err)
			}
		}
	}
	return nil
}

// covered reports how many digests list id in their list key.
func (v *validator) covered(key, id string) int {
	n := 0
	for _, d := range v.digests {
		arr, _ := d.(jobj)[key].([]any)
		for _, e := range arr {
			if e == id {
				n++
				break
			}
		}
	}
	return n
}

// interval is a byte range; size 0 means to the end of the device.
type interval struct {
	id           string
	offset, size uint64
}

func (v *validator) segmentsValid() error {
	segs, err := objects(v.segments, "segment")
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return invalid("no segments")
	}
	var regular []interval
	firstBackup := -1
	for id, s := range segs {
		iv, err := v.segment(id, s)
		if err != nil {
			return err
		}
		if isBackup(s) {
			if n, _ := strconv.Atoi(id); firstBackup < 0 || n < firstBackup {
				firstBackup = n
			}
			continue
		}
		regular = append(regular, iv)
	}
	if firstBackup == 0 {
		return invalid("no regular segment (segment 0 is a backup)")
	}
	for i := range len(segs) {
		if _, ok := segs[strconv.Itoa(i)]; !ok {
			return invalid("segments are not numbered 0..%d: %d is missing", len(segs)-1, i)
		}
	}
	for _, iv := range regular {
		if n, _ := strconv.Atoi(iv.id); firstBackup >= 0 && n >= firstBackup {
			return invalid("regular segment %s is behind backup segment %d", iv.id, firstBackup)
		}
	}
	return segmentsDisjoint(regular)
}

func isBackup(s jobj) bool {
	t, _ := s["type"].(string)
	if t == "" {
		return false
	}
	flags, _ := s["flags"].([]any)
	for _, f := range flags {
		if f, ok := f.(string); ok && strings.HasPrefix(f, "backup-") {
			return true
		}
	}
	return false
}

// segment checks one segment's fields (hdr_validate_segments and
// hdr_validate_crypt_segment).
func (v *validator) segment(id string, s jobj) (interval, error) {
	typ, ok := str(s, "type")
	if !ok {
		return interval{}, invalid("segment %s has no type", id)
	}
	iv := interval{id: id}
	if iv.offset, ok = u64(s, "offset"); !ok {
		return iv, invalid("segment %s has no valid offset (a decimal string)", id)
	}
	size, ok := str(s, "size")
	if !ok {
		return iv, invalid("segment %s has no size", id)
	}
	if size != "dynamic" {
		if iv.size, ok = u64(s, "size"); !ok || iv.size == 0 {
			return iv, invalid("segment %s size %q is neither \"dynamic\" nor a positive decimal string", id, size)
		}
	}
	if iv.offset%512 != 0 || iv.size%512 != 0 {
		return iv, invalid("segment %s offset %d or size %d is not a multiple of 512", id, iv.offset, iv.size)
	}
	if f, ok := s["flags"]; ok {
		arr, ok := f.([]any)
		if !ok {
			return iv, invalid("segment %s flags is not an array", id)
		}
		for _, e := range arr {
			if _, ok := e.(string); !ok {
				return iv, invalid("segment %s flags holds a non-string", id)
			}
		}
	}
	if typ == "crypt" {
		return iv, v.cryptSegment(id, s, iv.size)
	}
	return iv, nil
}

func (v *validator) cryptSegment(id string, s jobj, size uint64) error {
	if _, ok := u64(s, "iv_tweak"); !ok {
		return invalid("crypt segment %s has no valid iv_tweak (a decimal string)", id)
	}
	if _, ok := str(s, "encryption"); !ok {
		return invalid("crypt segment %s has no encryption", id)
	}
	if !integer(s, "sector_size", 1<<32-1) {
		return invalid("crypt segment %s has no valid sector_size", id)
	}
	ss, _ := s["sector_size"].(json.Number).Int64()
	if ss == 0 || ss%512 != 0 {
		return invalid("crypt segment %s sector_size %d is not a multiple of 512", id, ss)
	}
	if size%uint64(ss) != 0 {
		return invalid("crypt segment %s size %d is not a multiple of its sector_size %d", id, size, ss)
	}
	if integ, ok := s["integrity"]; ok {
		io, ok := integ.(jobj)
		if !ok {
			return invalid("crypt segment %s integrity is not an object", id)
		}
		for _, k := range []string{"type", "journal_encryption", "journal_integrity"} {
			if _, ok := str(io, k); !ok {
				return invalid("crypt segment %s integrity has no %s", id, k)
			}
		}
	}
	if v.covered("segments", id) == 0 {
		return invalid("crypt segment %s is not covered by any digest", id)
	}
	return nil
}

// segmentsDisjoint: regular segments do not overlap and only the last may
// be dynamic.
func segmentsDisjoint(ivs []interval) error {
	sort.Slice(ivs, func(i, j int) bool {
		a, _ := strconv.Atoi(ivs[i].id)
		b, _ := strconv.Atoi(ivs[j].id)
		return a < b
	})
	for i, a := range ivs {
		if a.size == 0 && i != len(ivs)-1 {
			return invalid("segment %s has dynamic size but is not the last segment", a.id)
		}
		for j, b := range ivs {
			if i == j {
				continue
			}
			if b.size != 0 && b.offset > ^uint64(0)-b.size {
				return invalid("segment %s offset+size overflows", b.id)
			}
			if a.offset >= b.offset && (b.size == 0 || a.offset < b.offset+b.size) {
				return invalid("segments %s and %s overlap", a.id, b.id)
			}
		}
	}
	return nil
}

func (v *validator) keyslotsValid() error {
	kss, err := objects(v.keyslots, "keyslot")
	if err != nil {
		return err
	}
	for id, ks := range kss {
		if _, ok := str(ks, "type"); !ok {
			return invalid("keyslot %s has no type", id)
		}
		if !integer(ks, "key_size", 1<<32-1) {
			return invalid("keyslot %s has no valid key_size", id)
		}
	}
	return nil
}

func (v *validator) configValid() error {
	jsonSize, ok := u64(v.config, "json_size")
	if !ok {
		return invalid("config has no valid json_size")
	}
	ksSize, ok := u64(v.config, "keyslots_size")
	if !ok {
		return invalid("config has no valid keyslots_size")
	}
	if jsonSize > ^uint64(0)-BinaryHeaderSize || !validHdrSize(jsonSize+BinaryHeaderSize) {
		return invalid("config.json_size %d gives no valid header size", jsonSize)
	}
	if ksSize%4096 != 0 || ksSize > maxKeyslotsSize {
		return invalid("config.keyslots_size %d is not a multiple of 4096 up to %d", ksSize, maxKeyslotsSize)
	}
	meta := jsonSize + BinaryHeaderSize
	if off := v.minSegmentOffset(); off != 0 && (off < ksSize || off-ksSize < 2*meta) {
		return invalid("config.keyslots_size %d does not fit between the headers (%d bytes) and the data at %d", ksSize, 2*meta, off)
	}
	if f, ok := v.config["flags"]; ok {
		arr, ok := f.([]any)
		if !ok {
			return invalid("config.flags is not an array")
		}
		for _, e := range arr {
			if _, ok := e.(string); !ok {
				return invalid("config.flags holds a non-string")
			}
		}
	}
	return nil
}

// minSegmentOffset is the lowest offset of a regular segment, 0 if none.
func (v *validator) minSegmentOffset() uint64 {
	var min uint64
	for _, s := range v.segments {
		so := s.(jobj)
		if isBackup(so) {
			continue
		}
		if off, ok := u64(so, "offset"); ok && (min == 0 || off < min) {
			min = off
		}
	}
	return min
}

// areasValid: every keyslot has an area inside the keyslots area (after
// both header copies, within keyslots_size), and areas do not overlap.
func (v *validator) areasValid() error {
	meta := v.hdrSize
	if js, ok := u64(v.config, "json_size"); ok {
		meta = js + BinaryHeaderSize
	}
	ksSize, _ := u64(v.config, "keyslots_size")
	end := 2*meta + ksSize
	var areas []interval
	for id, ks := range v.keyslots {
		a, ok := ks.(jobj)["area"].(jobj)
		if !ok {
			return invalid("keyslot %s has no area", id)
		}
		if _, ok := str(a, "type"); !ok {
			return invalid("keyslot %s area has no type", id)
		}
		iv := interval{id: id}
		if iv.offset, ok = u64(a, "offset"); !ok {
			return invalid("keyslot %s area has no valid offset", id)
		}
		if iv.size, ok = u64(a, "size"); !ok {
			return invalid("keyslot %s area has no valid size", id)
		}
		switch {
		case iv.offset < 2*meta:
			return invalid("keyslot %s area at %d lies within the headers (%d bytes)", id, iv.offset, 2*meta)
		case iv.size == 0:
			return invalid("keyslot %s area is empty", id)
		case iv.offset > ^uint64(0)-iv.size || iv.offset+iv.size > end:
			return invalid("keyslot %s area [%d,+%d) is outside the keyslots area, which ends at %d (keyslots_size %d)",
				id, iv.offset, iv.size, end, ksSize)
		}
		areas = append(areas, iv)
	}
	for i, a := range areas {
		for j, b := range areas {
			if i != j && a.offset >= b.offset && a.offset < b.offset+b.size {
				return invalid("keyslot areas of keyslots %s and %s overlap", a.id, b.id)
			}
		}
	}
	return nil
}

// keyslotDigests runs the luks2 keyslot handler's checks: kdf, af and area
// fields, and exactly one digest per keyslot.
func (v *validator) keyslotDigests() error {
	for id, val := range v.keyslots {
		ks := val.(jobj)
		if t, _ := ks["type"].(string); t != "luks2" {
			continue
		}
		if err := luks2Keyslot(ks); err != nil {
			return invalid("keyslot %s: %v", id, err)
		}
		if n := v.covered("keyslots", id); n != 1 {
			return invalid("keyslot %s is covered by %d digests, not exactly 1", id, n)
		}
	}
	return nil
}

func luks2Keyslot(ks jobj) error {
	kdf, ok1 := ks["kdf"].(jobj)
	af, ok2 := ks["af"].(jobj)
	area, ok3 := ks["area"].(jobj)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("kdf, af and area objects are required")
	}
	kt, ok := str(kdf, "type")
	if !ok {
		return fmt.Errorf("kdf has no type")
	}
	_, salt := str(kdf, "salt")
	switch kt {
	case "pbkdf2":
		if _, h := str(kdf, "hash"); !h || !isInt(kdf, "iterations") || !salt {
			return fmt.Errorf("pbkdf2 kdf needs hash, iterations and salt")
		}
	case "argon2i", "argon2id":
		if !isInt(kdf, "time") || !isInt(kdf, "memory") || !isInt(kdf, "cpus") || !salt {
			return fmt.Errorf("%s kdf needs time, memory, cpus and salt", kt)
		}
	}
	if t, _ := str(af, "type"); t != "luks1" {
		return fmt.Errorf("af type %q (only luks1 exists)", t)
	}
	if _, h := str(af, "hash"); !h || !isInt(af, "stripes") {
		return fmt.Errorf("luks1 af needs hash and stripes")
	}
	if t, _ := str(area, "type"); t != "raw" {
		return fmt.Errorf("area type %q (only raw exists)", t)
	}
	if _, e := str(area, "encryption"); !e || !isInt(area, "key_size") {
		return fmt.Errorf("raw area needs encryption and key_size")
	}
	return nil
}

// stripComments blanks the comments json-c's tokener skips outside strings
// (/* ... */ and // to the end of the line), keeping offsets.
func stripComments(js []byte) []byte {
	out := bytes.Clone(js)
	inStr, esc := false, false
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			end := bytes.Index(out[i+2:], []byte("*/"))
			if end < 0 {
				return out // unterminated: left for the decoder to refuse
			}
			clear(out[i : i+2+end+2])
			for j := i; j < i+2+end+2; j++ {
				out[j] = ' '
			}
			i += 2 + end + 1
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n'; i++ {
				out[i] = ' '
			}
		}
	}
	return out
}
