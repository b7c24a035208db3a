package luks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteText prints the header in the layout of `cryptsetup luksDump`.
func (h *Header) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	switch {
	case h.Version == 1 && h.V1 != nil:
		h.writeLUKS1(bw)
	case h.Version == 2 && h.Metadata != nil:
		h.writeLUKS2(bw)
	default:
		return fmt.Errorf("%w: empty header", ErrCorrupt)
	}
	return bw.Flush()
}

// hexLines renders b as cryptsetup does: 16 bytes per line, "xx " each,
// continuation lines indented by indent.
func hexLines(b []byte, indent string) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%16 == 0 {
			sb.WriteString("\n" + indent)
		}
		fmt.Fprintf(&sb, "%02x ", c)
	}
	return sb.String()
}

// hexFlat renders b on one line (cryptsetup prints the 20-byte LUKS1 digest so).
func hexFlat(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%02x ", c)
	}
	return sb.String()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// luks2DumpMax is LUKS2_KEYSLOTS_MAX, LUKS2_TOKENS_MAX, LUKS2_SEGMENT_MAX
// and LUKS2_DIGEST_MAX: luksDump prints the objects numbered 0..31.
const luks2DumpMax = 32

// dumpTree is the JSON metadata luksDump prints from: the on-disk text, or
// for a Header built in memory, its Metadata.
func (h *Header) dumpTree() jobj {
	js := h.rawJSON
	if len(js) == 0 {
		js, _ = json.Marshal(h.Metadata)
	}
	dec := json.NewDecoder(bytes.NewReader(stripComments(js)))
	dec.UseNumber()
	var top jobj
	if dec.Decode(&top) != nil {
		return jobj{}
	}
	return top
}

// writeLUKS2 prints a LUKS2 header as cryptsetup's LUKS2_hdr_dump does
// (cryptsetup 2.6): objects in numeric order, fields read with json-c's
// converting getters, types it has no handler for with their common
// fields only.
func (h *Header) writeLUKS2(w io.Writer) {
	top := h.dumpTree()
	cfg := jcObj(top, "config")
	js, _ := jcU64(cfg["json_size"])
	ks, _ := jcU64(cfg["keyslots_size"])
	fmt.Fprintf(w, "LUKS header information\n")
	fmt.Fprintf(w, "Version:       \t%d\n", 2)
	fmt.Fprintf(w, "Epoch:         \t%d\n", h.Binary.SeqID)
	fmt.Fprintf(w, "Metadata area: \t%d [bytes]\n", uint64(js)+BinaryHeaderSize)
	fmt.Fprintf(w, "Keyslots area: \t%d [bytes]\n", ks)
	fmt.Fprintf(w, "UUID:          \t%s\n", orNone(h.UUID, "(no UUID)"))
	fmt.Fprintf(w, "Label:         \t%s\n", orNone(h.Label, "(no label)"))
	fmt.Fprintf(w, "Subsystem:     \t%s\n", orNone(h.Subsystem, "(no subsystem)"))
	// chestfs's own notes on the copy in use; cryptsetup says nothing.
	if h.FromSecondary {
		fmt.Fprintf(w, "Header copy:   \tsecondary\n")
	}
	for _, warn := range h.Warnings {
		fmt.Fprintf(w, "Warning:       \t%s\n", warn)
	}
	dumpConfig(w, cfg)
	dumpSegments(w, jcObj(top, "segments"))
	dumpKeyslots(w, top)
	dumpTokens(w, jcObj(top, "tokens"))
	dumpDigests(w, jcObj(top, "digests"))
}

// ps is a string field as printf("%s", json_object_get_string(...))
// prints it: glibc's "(null)" for a missing or null value.
func ps(v any) string {
	if v == nil {
		return "(null)"
	}
	return jcString(v)
}

// jcList is a JSON array (nil if v is not one).
func jcList(v any) []any {
	a, _ := v.([]any)
	return a
}

func dumpConfig(w io.Writer, cfg jobj) {
	flags := jcList(cfg["flags"])
	reqs := jcList(jcObj(cfg, "requirements")["mandatory"])
	fmt.Fprintf(w, "Flags:       \t")
	for _, f := range flags {
		fmt.Fprintf(w, "%s ", ps(f))
	}
	if len(flags) == 0 {
		fmt.Fprintf(w, "(no flags)")
	}
	fmt.Fprintf(w, "\n")
	if len(reqs) == 0 {
		fmt.Fprintf(w, "\n")
		return
	}
	fmt.Fprintf(w, "Requirements:\t")
	for _, r := range reqs {
		fmt.Fprintf(w, "%s ", ps(r))
	}
	fmt.Fprintf(w, "\n\n")
}

func dumpSegments(w io.Writer, segs jobj) {
	fmt.Fprintf(w, "Data segments:\n")
	for i := range luks2DumpMax {
		id := strconv.Itoa(i)
		s, ok := segs[id].(jobj)
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", id, ps(s["type"]))
		off, _ := jcU64(s["offset"])
		fmt.Fprintf(w, "\toffset: %d [bytes]\n", off)
		if size := jcString(s["size"]); size == "dynamic" {
			fmt.Fprintf(w, "\tlength: (whole device)\n")
		} else {
			n, _ := jcU64(s["size"])
			fmt.Fprintf(w, "\tlength: %d [bytes]\n", n)
		}
		if e, ok := s["encryption"]; ok {
			fmt.Fprintf(w, "\tcipher: %s\n", ps(e))
		}
		if ss, ok := s["sector_size"]; ok {
			fmt.Fprintf(w, "\tsector: %d [bytes]\n", uint32(jcInt64(ss)))
		}
		if t, ok := jcObj(s, "integrity")["type"]; ok {
			fmt.Fprintf(w, "\tintegrity: %s\n", ps(t))
		}
		if flags := jcList(s["flags"]); len(flags) > 0 {
			names := make([]string, len(flags))
			for i, f := range flags {
				names[i] = jcString(f)
			}
			fmt.Fprintf(w, "\tflags : %s\n", strings.Join(names, ", "))
		}
		fmt.Fprintf(w, "\n")
	}
}

func priorityDesc(k jobj) string {
	p, ok := k["priority"]
	if !ok {
		return "normal"
	}
	switch jcInt(p) {
	case 0:
		return "ignored"
	case 1:
		return "normal"
	case 2:
		return "preferred"
	}
	return "invalid"
}

// digestOf returns the id of the first digest (in numeric order) whose
// list key names id, or "".
func digestOf(digests jobj, key, id string) string {
	for _, did := range sortedIDs(digests) {
		d, _ := digests[did].(jobj)
		for _, e := range jcList(d[key]) {
			if jcString(e) == id {
				return did
			}
		}
	}
	return ""
}

// unbound is cryptsetup's LUKS2_keyslot_for_segment(CRYPT_ONE_SEGMENT)
// failing with ENOENT: the keyslot's digest covers none of the regular
// (non-backup) segments 0..n-1, or it has no digest.
func unbound(top jobj, id string) bool {
	digests, segs := jcObj(top, "digests"), jcObj(top, "segments")
	d := digestOf(digests, "keyslots", id)
	if d == "" {
		return true
	}
	regular := 0
	for _, s := range segs {
		if so, ok := s.(jobj); ok && !isBackup(so) {
			regular++
		}
	}
	for s := range regular {
		if digestOf(digests, "segments", strconv.Itoa(s)) == d {
			return false
		}
	}
	return true
}

func dumpKeyslots(w io.Writer, top jobj) {
	fmt.Fprintf(w, "Keyslots:\n")
	keyslots, digests := jcObj(top, "keyslots"), jcObj(top, "digests")
	for i := range luks2DumpMax {
		id := strconv.Itoa(i)
		k, ok := keyslots[id].(jobj)
		if !ok {
			continue
		}
		suffix := ""
		if unbound(top, id) {
			suffix = " (unbound)"
		}
		fmt.Fprintf(w, "  %s: %s%s\n", id, ps(k["type"]), suffix)
		if n, ok := k["key_size"]; ok {
			fmt.Fprintf(w, "\tKey:        %d bits\n", uint32(jcInt64(n))*8)
		}
		fmt.Fprintf(w, "\tPriority:   %s\n", priorityDesc(k))
		switch jcString(k["type"]) {
		case "luks2":
			dumpLUKS2Keyslot(w, k)
		case "reencrypt":
			dumpReencryptKeyslot(w, k)
		}
		for _, did := range sortedIDs(digests) {
			d, _ := digests[did].(jobj)
			for _, e := range jcList(d["keyslots"]) {
				if jcString(e) == id {
					fmt.Fprintf(w, "\tDigest ID:  %s\n", did)
				}
			}
		}
	}
}

// hexBase64 prints a base64 field as hexprint_base64 does: nothing at all
// when it does not decode.
func hexBase64(w io.Writer, v any) {
	b, ok := jcBase64(v)
	if ok {
		fmt.Fprintf(w, "%s\n", hexLines(b, "\t            "))
	}
}

func dumpLUKS2Keyslot(w io.Writer, k jobj) {
	kdf, af, area := jcObj(k, "kdf"), jcObj(k, "af"), jcObj(k, "area")
	if kdf == nil || af == nil || area == nil {
		return
	}
	fmt.Fprintf(w, "\tCipher:     %s\n", ps(area["encryption"]))
	fmt.Fprintf(w, "\tCipher key: %d bits\n", uint32(jcInt64(area["key_size"]))*8)
	fmt.Fprintf(w, "\tPBKDF:      %s\n", ps(kdf["type"]))
	if jcString(kdf["type"]) == "pbkdf2" {
		fmt.Fprintf(w, "\tHash:       %s\n", ps(kdf["hash"]))
		fmt.Fprintf(w, "\tIterations: %d\n", uint64(jcInt64(kdf["iterations"])))
	} else {
		fmt.Fprintf(w, "\tTime cost:  %d\n", jcInt64(kdf["time"]))
		fmt.Fprintf(w, "\tMemory:     %d\n", jcInt64(kdf["memory"]))
		fmt.Fprintf(w, "\tThreads:    %d\n", jcInt64(kdf["cpus"]))
	}
	fmt.Fprintf(w, "\tSalt:       ")
	hexBase64(w, kdf["salt"])
	fmt.Fprintf(w, "\tAF stripes: %d\n", uint32(jcInt(af["stripes"])))
	fmt.Fprintf(w, "\tAF hash:    %s\n", ps(af["hash"]))
	dumpArea(w, area)
}

func dumpArea(w io.Writer, area jobj) {
	off, _ := jcU64(area["offset"])
	size, _ := jcU64(area["size"])
	fmt.Fprintf(w, "\tArea offset:%d [bytes]\n", off)
	fmt.Fprintf(w, "\tArea length:%d [bytes]\n", size)
}

// dumpReencryptKeyslot is cryptsetup's reenc_keyslot_dump.
func dumpReencryptKeyslot(w io.Writer, k jobj) {
	area := jcObj(k, "area")
	mode, ok1 := k["mode"]
	dir, ok2 := k["direction"]
	res, ok3 := area["type"]
	if !ok1 || !ok2 || !ok3 {
		return
	}
	fmt.Fprintf(w, "\t%-12s%s\n", "Mode:", ps(mode))
	fmt.Fprintf(w, "\t%-12s%s\n", "Direction:", ps(dir))
	fmt.Fprintf(w, "\t%-12s%s\n", "Resilience:", ps(res))
	switch jcString(res) {
	case "checksum":
		fmt.Fprintf(w, "\t%-12s%s\n", "Hash:", ps(area["hash"]))
		fmt.Fprintf(w, "\t%-12s%d [bytes]\n", "Hash data:", jcInt(area["sector_size"]))
	case "datashift":
		n, _ := jcU64(area["shift_size"])
		fmt.Fprintf(w, "\t%-12s%d[bytes]\n", "Shift size:", n)
	}
	dumpArea(w, area)
}

func dumpTokens(w io.Writer, tokens jobj) {
	fmt.Fprintf(w, "Tokens:\n")
	for i := range luks2DumpMax {
		id := strconv.Itoa(i)
		t, ok := tokens[id].(jobj)
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", id, ps(t["type"]))
		// The built-in token type's dump; external types print through
		// their plugins, which chestfs does not load.
		if jcString(t["type"]) == "luks2-keyring" {
			fmt.Fprintf(w, "\tKey description: %s\n", ps(t["key_description"]))
		}
		for _, k := range jcList(t["keyslots"]) {
			fmt.Fprintf(w, "\tKeyslot:    %s\n", ps(k))
		}
	}
}

func dumpDigests(w io.Writer, digests jobj) {
	fmt.Fprintf(w, "Digests:\n")
	for i := range luks2DumpMax {
		id := strconv.Itoa(i)
		d, ok := digests[id].(jobj)
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", id, ps(d["type"]))
		if jcString(d["type"]) != "pbkdf2" {
			continue
		}
		fmt.Fprintf(w, "\tHash:       %s\n", ps(d["hash"]))
		fmt.Fprintf(w, "\tIterations: %d\n", uint64(jcInt64(d["iterations"])))
		fmt.Fprintf(w, "\tSalt:       ")
		hexBase64(w, d["salt"])
		fmt.Fprintf(w, "\tDigest:     ")
		hexBase64(w, d["digest"])
	}
}

func (h *Header) writeLUKS1(w io.Writer) {
	p := h.V1
	fmt.Fprintf(w, "LUKS header information\n\n")
	fmt.Fprintf(w, "Version:       \t%d\n", p.Version)
	fmt.Fprintf(w, "Cipher name:   \t%s\n", p.CipherName)
	fmt.Fprintf(w, "Cipher mode:   \t%s\n", p.CipherMode)
	fmt.Fprintf(w, "Hash spec:     \t%s\n", p.HashSpec)
	fmt.Fprintf(w, "Payload offset:\t%d\n", p.PayloadOffset)
	fmt.Fprintf(w, "MK bits:       \t%d\n", p.KeyBytes*8)
	fmt.Fprintf(w, "MK digest:     \t%s\n", hexFlat(p.MKDigest))
	fmt.Fprintf(w, "MK salt:       \t%s\n", hexLines(p.MKDigestSalt, "               \t"))
	fmt.Fprintf(w, "MK iterations: \t%d\n", p.MKDigestIterations)
	fmt.Fprintf(w, "UUID:          \t%s\n\n", p.UUID)
	for i, k := range p.KeyBlocks {
		if !k.Enabled() {
			fmt.Fprintf(w, "Key Slot %d: DISABLED\n", i)
			continue
		}
		fmt.Fprintf(w, "Key Slot %d: ENABLED\n", i)
		fmt.Fprintf(w, "\tIterations:         \t%d\n", k.PasswordIterations)
		fmt.Fprintf(w, "\tSalt:               \t%s\n", hexLines(k.PasswordSalt, "\t                      \t"))
		fmt.Fprintf(w, "\tKey material offset:\t%d\n", k.KeyMaterialOffset)
		fmt.Fprintf(w, "\tAF stripes:            \t%d\n", k.Stripes)
	}
}
