package luks

// cryptsetup reads the fields its validation does not check with json-c's
// converting getters: json_object_get_int64 of the string "1000" is 1000,
// json_object_get_string of the number 7 is "7", and so on. A header whose
// digest iterations are a string is therefore valid and unlocks. The
// Metadata of a header copy is built from the validated JSON tree with the
// same conversions, so that chestfs reads what cryptsetup reads.

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// jcInt64 is json_object_get_int64.
func jcInt64(v any) int64 {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil && u > math.MaxInt64 {
			return math.MaxInt64
		}
		f, _ := x.Float64()
		return clampFloat(f)
	case bool:
		if x {
			return 1
		}
	case string:
		return strtoll(x)
	}
	return 0
}

func clampFloat(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// strtoll parses a leading decimal integer as C's strtoll does (leading
// white space, a sign, digits up to the first non-digit; saturating).
func strtoll(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 {
		return 0
	}
	u, err := strconv.ParseUint(s[:end], 10, 64)
	switch {
	case neg && (err != nil || u > 1<<63):
		return math.MinInt64
	case neg:
		return -int64(u)
	case err != nil || u > math.MaxInt64:
		return math.MaxInt64
	}
	return int64(u)
}

// jcInt is json_object_get_int: get_int64 clamped to int32.
func jcInt(v any) int {
	return int(max(min(jcInt64(v), math.MaxInt32), math.MinInt32))
}

// jcString is json_object_get_string as cryptsetup uses it, a C string:
// the string up to its first NUL, or the text of another value ("" for
// null or a missing field).
func jcString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return cString([]byte(x))
	case json.Number:
		return string(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jcBase64 decodes a base64 field; ok is false when it does not decode
// (cryptsetup then fails the keyslot or digest that needs it).
func jcBase64(v any) ([]byte, bool) {
	s, isStr := v.(string)
	if !isStr {
		s = jcString(v)
	}
	if strings.ContainsAny(s, "\r\n") { // Go would skip these; cryptsetup's decoder does not
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

func jcObj(o jobj, key string) jobj {
	m, _ := o[key].(jobj)
	return m
}

// jcStrings is a list of strings as cryptsetup reads an id array.
func jcStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		out = append(out, jcString(e))
	}
	return out
}

// metadataFrom builds the Metadata of a validated JSON tree.
func metadataFrom(top jobj) *Metadata {
	md := &Metadata{Keyslots: map[string]*Keyslot{}, Tokens: map[string]json.RawMessage{},
		Segments: map[string]*Segment{}, Digests: map[string]*Digest{}}
	for id, v := range jcObj(top, "keyslots") {
		md.Keyslots[id] = keyslotFrom(v.(jobj))
	}
	for id, v := range jcObj(top, "tokens") {
		md.Tokens[id], _ = json.Marshal(v)
	}
	for id, v := range jcObj(top, "segments") {
		md.Segments[id] = segmentFrom(v.(jobj))
	}
	for id, v := range jcObj(top, "digests") {
		d := v.(jobj)
		dg := &Digest{Type: jcString(d["type"]), Keyslots: jcStrings(d["keyslots"]), Segments: jcStrings(d["segments"]),
			Hash: jcString(d["hash"]), Iterations: jcInt64(d["iterations"])}
		var ok1, ok2 bool
		dg.Salt, ok1 = jcBase64(d["salt"])
		dg.Digest, ok2 = jcBase64(d["digest"])
		dg.bad = !ok1 || !ok2
		md.Digests[id] = dg
	}
	cfg := jcObj(top, "config")
	md.Config.JSONSize, _ = jcU64(cfg["json_size"])
	md.Config.KeyslotsSize, _ = jcU64(cfg["keyslots_size"])
	if f, ok := cfg["flags"]; ok {
		md.Config.Flags = jcStrings(f)
	}
	if r, ok := cfg["requirements"].(jobj); ok {
		md.Config.Requirements = &Requirements{Mandatory: jcStrings(r["mandatory"])}
	}
	return md
}

// jcU64 reads a validated decimal-string uint64 (crypt_jobj_get_uint64).
func jcU64(v any) (U64, bool) {
	n, err := strconv.ParseUint(jcString(v), 10, 64)
	return U64(n), err == nil
}

func keyslotFrom(k jobj) *Keyslot {
	ks := &Keyslot{Type: jcString(k["type"]), KeySize: jcInt(k["key_size"])}
	if af := jcObj(k, "af"); af != nil {
		ks.AF = &AF{Type: jcString(af["type"]), Stripes: jcInt(af["stripes"]), Hash: jcString(af["hash"])}
	}
	if a := jcObj(k, "area"); a != nil {
		ks.Area = &Area{Type: jcString(a["type"]), Encryption: jcString(a["encryption"]), KeySize: jcInt(a["key_size"])}
		ks.Area.Offset, _ = jcU64(a["offset"])
		ks.Area.Size, _ = jcU64(a["size"])
	}
	if kd := jcObj(k, "kdf"); kd != nil {
		ks.KDF = &KDF{Type: jcString(kd["type"]), Hash: jcString(kd["hash"]), Iterations: jcInt64(kd["iterations"]),
			Time: jcInt64(kd["time"]), Memory: jcInt64(kd["memory"]), CPUs: jcInt64(kd["cpus"])}
		var ok bool
		ks.KDF.Salt, ok = jcBase64(kd["salt"])
		ks.KDF.bad = !ok
	}
	if p, ok := k["priority"]; ok {
		n := jcInt(p)
		ks.Priority = &n
	}
	return ks
}

func segmentFrom(s jobj) *Segment {
	seg := &Segment{Type: jcString(s["type"]), Size: jcString(s["size"]), Encryption: jcString(s["encryption"]),
		SectorSize: jcInt(s["sector_size"])}
	seg.Offset, _ = jcU64(s["offset"])
	seg.IVTweak, _ = jcU64(s["iv_tweak"])
	if in, ok := s["integrity"]; ok {
		seg.Integrity, _ = json.Marshal(in)
	}
	if f, ok := s["flags"]; ok {
		seg.Flags = jcStrings(f)
	}
	return seg
}
