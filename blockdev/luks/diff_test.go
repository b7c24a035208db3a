package luks

// Differential test against cryptsetup: a fixed list of seeded mutations
// (mutate_test.go) of headers cryptsetup made must be accepted by
// ReadHeader exactly when `cryptsetup luksDump` accepts them, and an
// accepted header must unlock with the same key file exactly when
// `cryptsetup open --test-passphrase` does, give the volume key
// `luksDump --dump-volume-key` prints, use the data segment cryptsetup reads
// (`luksDump --dump-json-metadata`), and decrypt the data to the plaintext
// written under the base header.
//
// Deliberate differences, counted apart (and logged):
//   - chestfs refuses with ErrUnsupported what it cannot read faithfully:
//     hashes, ciphers, KDFs and segment types it does not implement, even
//     where cryptsetup accepts them;
//   - cryptsetup 2.6 skips the volume key digest check when the digest
//     cannot be computed (no "digest" field, a hash name its backend
//     resolves to something, such as "56") and then accepts any passphrase,
//     giving a wrong volume key; chestfs refuses the keyslot.
//
// Known differences the mutations do not reach: JSON that json-c's
// non-strict tokener tolerates beyond comments (single quotes, trailing
// commas, NaN, literals in any case) is refused by chestfs; cryptsetup
// never writes it.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// diffBase is a pristine image made by cryptsetup and what it holds.
type diffBase struct {
	name  string
	img   []byte
	key   []byte // the key file of keyslot 0
	plain []byte // the data segment's plaintext
}

const diffUUID = "5eed5eed-0000-4000-8000-00000000cafe"

// diffBases are small images (header, keyslots, a little data) so that a
// mutation costs a few milliseconds to write and check.
var diffBaseRecipes = []struct {
	name     string
	size     int64
	format   []string
	addKey   []string // luksAddKey args for a second keyslot, or nil
	tokenFor string   // a token bound to this keyslot, or ""
}{
	{"luks2-pbkdf2", 608 << 10, []string{"--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--sector-size", "4096", "--luks2-metadata-size", "16k", "--luks2-keyslots-size", "512k", "--offset", "1088"},
		[]string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}, "1"},
	{"luks2-argon2", 352 << 10, []string{"--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "64", "--pbkdf-force-iterations", "4",
		"--key-size", "256", "--sector-size", "512", "--luks2-metadata-size", "32k", "--luks2-keyslots-size", "256k", "--offset", "640",
		"--label", "diff", "--subsystem", "chestfs"}, []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}, ""},
	{"luks1", (2 << 20) + (64 << 10), []string{"--type", "luks1", "--key-size", "256", "--pbkdf-force-iterations", "1000"},
		[]string{"--pbkdf-force-iterations", "1000"}, ""},
}

// diffSeeds is how many seeded mutations each base gets.
var diffSeeds = map[string]int{"luks2-pbkdf2": 300, "luks2-argon2": 100, "luks1": 150}

// cs runs cryptsetup and reports whether it succeeded, with its stdout.
func cs(t *testing.T, args ...string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cryptsetup", append([]string{"--disable-locks", "--batch-mode"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("cryptsetup %v hung", args)
	}
	return err == nil, out.String()
}

func makeDiffBase(t *testing.T, dir string, i int) *diffBase {
	rc := diffBaseRecipes[i]
	b := &diffBase{name: rc.name, key: pattern(32, 100+uint64(i))}
	path, keyFile, key2 := filepath.Join(dir, rc.name), filepath.Join(dir, rc.name+".key"), filepath.Join(dir, rc.name+".key2")
	must(t, os.WriteFile(keyFile, b.key, 0o600))
	must(t, os.WriteFile(key2, pattern(32, 200+uint64(i)), 0o600))
	must(t, os.WriteFile(path, nil, 0o600))
	must(t, os.Truncate(path, rc.size))
	run(t, "cryptsetup", append(append([]string{"luksFormat", "--batch-mode", "--uuid", diffUUID}, rc.format...), path, keyFile)...)
	if rc.addKey != nil {
		run(t, "cryptsetup", append(append([]string{"luksAddKey", "--batch-mode", "--key-file", keyFile}, rc.addKey...), path, key2)...)
	}
	if rc.tokenFor != "" {
		tok := filepath.Join(dir, "token.json")
		must(t, os.WriteFile(tok, []byte(`{"type":"chestfs-test","keyslots":["`+rc.tokenFor+`"],"x":[1,"2"]}`), 0o600))
		run(t, "cryptsetup", "token", "import", "--json-file", tok, path)
	}
	h, err := ReadHeader(openFile(t, path))
	must(t, err)
	vk, seg, err := h.unlock(openFile(t, path), b.key)
	must(t, err)
	b.plain = pattern(int(rc.size-int64(seg.offset)), 300+uint64(i))
	fillEncrypted(t, path, int64(seg.offset), seg.cipher, vk, seg.sectorSize, seg.ivTweak, b.plain)
	b.img, err = os.ReadFile(path)
	must(t, err)
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type diffOutcome int

const (
	agreeAccept diffOutcome = iota
	agreeRefuse
	deliberate
	disagree
)

// diffResult is one mutation's comparison.
type diffResult struct {
	outcome diffOutcome
	detail  string
}

// diffOne compares chestfs and cryptsetup on one image.
func diffOne(t *testing.T, dir string, b *diffBase, img []byte) diffResult {
	path, keyFile := filepath.Join(dir, "m.img"), filepath.Join(dir, "m.key")
	must(t, os.WriteFile(keyFile, b.key, 0o600))
	write := func() { must(t, os.WriteFile(path, img, 0o600)) }
	write()
	csOK, csText := cs(t, "luksDump", path)
	src := bytesSource(img)
	h, err := ReadHeader(src)
	switch {
	case csOK && err != nil && errors.Is(err, ErrUnsupported):
		return diffResult{deliberate, "header: " + err.Error()}
	case csOK != (err == nil):
		return diffResult{disagree, fmt.Sprintf("luksDump accepts: %v, ReadHeader: %v", csOK, err)}
	case !csOK:
		return diffResult{agreeRefuse, ""}
	}
	if d := compareText(h, csText); d != "" {
		return diffResult{disagree, d}
	}
	if !diffCheap(h) {
		return diffResult{agreeAccept, "KDF too costly to compare unlocking"}
	}
	write()
	csOpen, _ := cs(t, "open", "--test-passphrase", "--key-file", keyFile, path)
	key, seg, err := h.unlock(src, b.key)
	switch {
	case csOpen && err != nil && errors.Is(err, ErrUnsupported):
		return diffResult{deliberate, "unlock: " + err.Error()}
	case csOpen && err != nil && csAnyKey(t, path, img):
		// cryptsetup 2.6 skips the digest check when the digest cannot be
		// computed (no "digest", a hash name its backend resolves oddly)
		// and "unlocks" with any passphrase, giving a wrong volume key.
		return diffResult{deliberate, "cryptsetup accepts any passphrase; unlock: " + err.Error()}
	case csOpen != (err == nil):
		return diffResult{disagree, fmt.Sprintf("open --test-passphrase: %v, unlock: %v", csOpen, err)}
	case !csOpen:
		return diffResult{agreeAccept, "both refuse the key"}
	}
	if d := compareUnlocked(t, path, keyFile, b, img, h, key, seg); d != "" {
		return diffResult{disagree, d}
	}
	return diffResult{agreeAccept, "both unlock"}
}

var chestfsNotes = regexp.MustCompile(`(?m)^(Header copy|Warning): .*\n`)

// compareText checks WriteText against luksDump's text (without the
// notes chestfs adds on damaged copies).
func compareText(h *Header, want string) string {
	var out bytes.Buffer
	if err := h.WriteText(&out); err != nil {
		return "WriteText: " + err.Error()
	}
	want = regexp.MustCompile(`LUKS header information for \S+`).ReplaceAllString(want, "LUKS header information")
	got := chestfsNotes.ReplaceAllString(out.String(), "")
	if got == want {
		return ""
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(gl), len(wl)) {
		if gl[i] != wl[i] {
			return fmt.Sprintf("text line %d: %q, luksDump %q", i+1, gl[i], wl[i])
		}
	}
	return "text lengths differ"
}

// diffCheap reports whether unlocking h costs both sides little.
func diffCheap(h *Header) bool {
	if h.Version == 1 {
		for _, k := range h.V1.KeyBlocks {
			if k.Enabled() && k.PasswordIterations > 2000 {
				return false
			}
		}
		return h.V1.MKDigestIterations <= 2000
	}
	for _, ks := range h.Metadata.Keyslots {
		if k := ks.KDF; k != nil && (k.Iterations > 2000 || k.Memory > 1024 || k.Time > 16 || k.CPUs > 4) {
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

// csAnyKey reports whether cryptsetup also accepts a wrong key file.
func csAnyKey(t *testing.T, path string, img []byte) bool {
	must(t, os.WriteFile(path, img, 0o600))
	wrong := filepath.Join(filepath.Dir(path), "wrong.key")
	must(t, os.WriteFile(wrong, []byte("not the key"), 0o600))
	ok, _ := cs(t, "open", "--test-passphrase", "--key-file", wrong, path)
	return ok
}

var mkDump = regexp.MustCompile(`(?s)MK dump:\s*((?:[0-9a-f]{2}\s+)+)`)

// compareUnlocked checks the volume key, the segment and the plaintext of
// a header both sides unlock.
func compareUnlocked(t *testing.T, path, keyFile string, b *diffBase, img []byte, h *Header, key []byte, seg *segment) string {
	must(t, os.WriteFile(path, img, 0o600))
	ok, out := cs(t, "luksDump", "--dump-volume-key", "--key-file", keyFile, path)
	m := mkDump.FindStringSubmatch(out)
	if !ok || m == nil {
		return "luksDump --dump-volume-key fails where both unlock"
	}
	csKey, err := hex.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	must(t, err)
	if !bytes.Equal(csKey, key) {
		return "volume keys differ"
	}
	if h.Version == 2 {
		if d := compareSegment(t, path, h, seg); d != "" {
			return d
		}
	} else if seg.offset != uint64(h.V1.PayloadOffset)*512 {
		return "LUKS1 payload offset differs"
	}
	v, err := newVolume(bytesSource(img), seg, key)
	if errors.Is(err, ErrTruncated) {
		// --test-passphrase does not look at the data device; activating
		// it would refuse a segment beyond its end, as newVolume does.
		return ""
	}
	if err != nil {
		return "volume after unlock: " + err.Error()
	}
	base, _ := ReadHeader(bytesSource(b.img))
	_, bseg, _ := base.unlock(bytesSource(b.img), b.key)
	if *seg == *bseg {
		got := make([]byte, min(int64(len(b.plain)), v.Size()))
		if _, err := v.ReadAt(got, 0); err != nil {
			return "read: " + err.Error()
		}
		if !bytes.Equal(got, b.plain[:len(got)]) {
			return "plaintext differs under the base's segment"
		}
	}
	return ""
}

// compareSegment checks that chestfs uses the segment cryptsetup reads
// (its JSON after its own parsing).
func compareSegment(t *testing.T, path string, h *Header, seg *segment) string {
	ok, out := cs(t, "luksDump", "--dump-json-metadata", path)
	if !ok {
		return "luksDump --dump-json-metadata fails"
	}
	var md struct {
		Segments map[string]struct {
			Type       string `json:"type"`
			Offset     U64    `json:"offset"`
			Size       string `json:"size"`
			IVTweak    U64    `json:"iv_tweak"`
			Encryption string `json:"encryption"`
			SectorSize int    `json:"sector_size"`
		} `json:"segments"`
	}
	if err := json.Unmarshal([]byte(out), &md); err != nil {
		return "cryptsetup JSON: " + err.Error()
	}
	id, _, _ := h.checkSupported()
	s, ok := md.Segments[id]
	if !ok {
		return "cryptsetup has no segment " + id
	}
	want := segment{offset: uint64(s.Offset), ivTweak: uint64(s.IVTweak), cipher: s.Encryption, sectorSize: s.SectorSize,
		dynamic: s.Size == "dynamic"}
	if !want.dynamic {
		fmt.Sscan(s.Size, &want.size)
	}
	if want != *seg {
		return fmt.Sprintf("segment %s: cryptsetup %+v, chestfs %+v", id, want, *seg)
	}
	return ""
}

func TestDifferentialCryptsetup(t *testing.T) {
	needTool(t, "cryptsetup")
	needTool(t, "node")
	dir := t.TempDir()
	deadline := time.Now().Add(4 * time.Minute)
	counts := map[diffOutcome]int{}
	total := 0
	var disagreements []string
	for i := range diffBaseRecipes {
		b := makeDiffBase(t, dir, i)
		if r := diffOne(t, dir, b, b.img); r.outcome != agreeAccept || r.detail != "both unlock" {
			t.Fatalf("%s: pristine base: %+v", b.name, r)
		}
		for seed := range uint64(diffSeeds[b.name]) {
			if time.Now().After(deadline) {
				t.Logf("time limit reached after %d mutations", total)
				break
			}
			img, desc := mutate(b.img, seed)
			r := diffOne(t, dir, b, img)
			counts[r.outcome]++
			total++
			switch r.outcome {
			case disagree:
				disagreements = append(disagreements, fmt.Sprintf("%s seed %d (%s): %s", b.name, seed, desc, r.detail))
			case deliberate:
				t.Logf("deliberate: %s seed %d (%s): %s", b.name, seed, desc, r.detail)
			}
		}
	}
	t.Logf("%d mutations: %d accepted by both, %d refused by both, %d refused by chestfs as unsupported, %d disagreements",
		total, counts[agreeAccept], counts[agreeRefuse], counts[deliberate], counts[disagree])
	for _, d := range disagreements {
		t.Error(d)
	}
}
