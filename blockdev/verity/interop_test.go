package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
)

type interopCase struct {
	name       string
	alg        string
	dbs, hbs   uint32
	blocks     uint64
	hashType0  bool
	noSalt     bool
	noSB       bool
	appended   bool  // tree in the data file, after the data
	extraOff   int64 // added to the appended hash offset
	wantLevels int
}

var interopCases = []interopCase{
	{name: "sha256-4k-300", alg: "sha256", dbs: 4096, hbs: 4096, blocks: 300, wantLevels: 2},
	{name: "sha512-4k-1000-appended", alg: "sha512", dbs: 4096, hbs: 4096, blocks: 1000, appended: true, wantLevels: 2},
	{name: "sha256-1-block", alg: "sha256", dbs: 4096, hbs: 4096, blocks: 1, wantLevels: 0},
	{name: "sha256-512-5000-many-levels", alg: "sha256", dbs: 512, hbs: 512, blocks: 5000, wantLevels: 4},
	{name: "sha1-padded-digests", alg: "sha1", dbs: 512, hbs: 1024, blocks: 2400, wantLevels: 3},
	{name: "sha256-hash-type-0", alg: "sha256", dbs: 4096, hbs: 4096, blocks: 300, hashType0: true, wantLevels: 2},
	{name: "sha512-data-1k-hash-512", alg: "sha512", dbs: 1024, hbs: 512, blocks: 3000, wantLevels: 4},
	{name: "sha256-nosalt-unaligned-offset", alg: "sha256", dbs: 4096, hbs: 4096, blocks: 129, noSalt: true, appended: true, extraOff: 1024, wantLevels: 2},
	{name: "sha256-no-superblock", alg: "sha256", dbs: 4096, hbs: 4096, blocks: 200, noSB: true, wantLevels: 2},
	{name: "sha384", alg: "sha384", dbs: 4096, hbs: 4096, blocks: 70, wantLevels: 2},
}

// vsArgs are the veritysetup options describing c's tree.
func (c interopCase) vsArgs(hashOffset int64, salt []byte) []string {
	a := []string{"-h", c.alg, fmt.Sprintf("--data-block-size=%d", c.dbs), fmt.Sprintf("--hash-block-size=%d", c.hbs),
		fmt.Sprintf("--data-blocks=%d", c.blocks), fmt.Sprintf("--hash-offset=%d", hashOffset)}
	if c.hashType0 {
		a = append(a, "--format=0")
	}
	if c.noSB {
		a = append(a, "--no-superblock")
	}
	if len(salt) == 0 {
		a = append(a, "--salt=-")
	} else {
		a = append(a, "--salt="+hex.EncodeToString(salt))
	}
	return a
}

func (c interopCase) options(hashOffset int64) FormatOptions {
	return FormatOptions{Algorithm: c.alg, DataBlockSize: c.dbs, HashBlockSize: c.hbs, DataBlocks: c.blocks,
		NoSalt: c.noSalt, HashOffset: hashOffset, NoSuperblock: c.noSB, HashType0: c.hashType0,
		UUID: [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 1, 2, 3, 4, 5, 6, 7}}
}

// TestInterop runs each case both ways: veritysetup verifies our tree, and
// a tree by veritysetup format (same salt and UUID) is byte-identical to
// ours and accepted by Verify and Open.
func TestInterop(t *testing.T) {
	needVeritysetup(t)
	for i, c := range interopCases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			data := randomBytes(uint64(i), int(c.blocks)*int(c.dbs))
			hashOffset := int64(0)
			if c.appended {
				hashOffset = AppendedHashOffset(int64(len(data)), c.dbs) + c.extraOff
			}
			ours := writeFile(t, dir, "ours.data", data)
			oursHash := writeFile(t, dir, "ours.hash", nil)
			if c.appended {
				oursHash = ours
			}
			p, root := formatFile(t, ours, oursHash, c.options(hashOffset))
			lay, err := p.Layout()
			if err != nil || lay.Levels != c.wantLevels {
				t.Fatalf("layout %+v, %v: want %d levels", lay, err, c.wantLevels)
			}
			if c.noSB {
				veritysetup(t, append([]string{"verify", ours, oursHash, hex.EncodeToString(root), "--uuid=" + UUIDString(p.UUID)}, c.vsArgs(hashOffset, p.Salt)...)...)
			} else {
				veritysetup(t, "verify", ours, oursHash, hex.EncodeToString(root), fmt.Sprintf("--hash-offset=%d", hashOffset))
				checkDump(t, oursHash, hashOffset)
			}

			theirs := writeFile(t, dir, "theirs.data", data)
			theirsHash := writeFile(t, dir, "theirs.hash", nil)
			if c.appended {
				theirsHash = theirs
			}
			out := veritysetup(t, append([]string{"format", theirs, theirsHash, "--uuid=" + UUIDString(p.UUID)}, c.vsArgs(hashOffset, p.Salt)...)...)
			if got := rootFrom(t, out); !bytes.Equal(got, root) {
				t.Fatalf("veritysetup root %x, ours %x", got, root)
			}
			if a, b := readFileT(t, oursHash), readFileT(t, theirsHash); !bytes.Equal(a, b) {
				t.Fatalf("hash files differ: ours %d bytes, veritysetup %d bytes, first difference at %d", len(a), len(b), firstDiff(a, b))
			}
			checkAccepts(t, theirs, theirsHash, hashOffset, root, p, data)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func formatFile(t *testing.T, dataPath, hashPath string, o FormatOptions) (*Params, []byte) {
	t.Helper()
	d, err := blockdev.OpenFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, err := openRW(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p, root, err := Format(d, h, o)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	return p, root
}

// checkDump compares our dump text with veritysetup's.
func checkDump(t *testing.T, hashPath string, hashOffset int64) {
	t.Helper()
	want := veritysetup(t, "dump", hashPath, fmt.Sprintf("--hash-offset=%d", hashOffset))
	h, err := blockdev.OpenFile(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	info, err := Dump(h, hashOffset)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	var got strings.Builder
	if err := info.WriteText(&got, hashPath); err != nil {
		t.Fatal(err)
	}
	if got.String() != want {
		t.Fatalf("dump differs:\n--- ours\n%s--- veritysetup\n%s", got.String(), want)
	}
}

// checkAccepts verifies a tree written by veritysetup offline and through Open.
func checkAccepts(t *testing.T, dataPath, hashPath string, hashOffset int64, root []byte, p *Params, data []byte) {
	t.Helper()
	d, err := blockdev.OpenFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, err := blockdev.OpenFile(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var opts *Options
	if p.NoSuperblock {
		opts = &Options{Params: p}
	}
	if err := Verify(d, h, hashOffset, root, opts); err != nil {
		t.Fatalf("Verify of veritysetup's tree: %v", err)
	}
	r, err := Open(d, h, hashOffset, root, opts)
	if err != nil {
		t.Fatalf("Open of veritysetup's tree: %v", err)
	}
	if got := readAll(t, r, 64<<10); !bytes.Equal(got, data) {
		t.Fatalf("verified read differs from the data (%d vs %d bytes)", len(got), len(data))
	}
}

// TestTamperAgreesWithVeritysetup: on a flipped data byte, veritysetup
// verify and Verify name the same block, and Open's reader fails it with EIO.
func TestTamperAgreesWithVeritysetup(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	data := randomBytes(21, 300*4096)
	path := writeFile(t, dir, "data", data)
	hashPath := writeFile(t, dir, "hash", nil)
	root := rootFrom(t, veritysetup(t, "format", path, hashPath))
	data[123*4096+7] ^= 1
	writeFile(t, dir, "data", data)
	out, err := exec.Command("veritysetup", "verify", path, hashPath, hex.EncodeToString(root)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("Verification failed at position %d.", 123*4096)) {
		t.Fatalf("veritysetup verify of tampered data: %v\n%s", err, out)
	}
	h := blockdev.Bytes(readFileT(t, hashPath))
	var me *MismatchError
	if err := Verify(blockdev.Bytes(data), h, 0, root, nil); !errors.As(err, &me) || me.Level != -1 || me.Block != 123 {
		t.Fatalf("Verify: %v, want data block 123", err)
	}
	r, err := Open(blockdev.Bytes(data), h, 0, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadAt(make([]byte, 4096), 123*4096)
	wantEIO(t, err)
}

// TestFormatAppendedVeritysetup: an image whose size is not a whole number
// of blocks gets its tree appended; veritysetup verifies it, dumps it as we
// do, and the file has the size AppendedSize promised.
func TestFormatAppendedVeritysetup(t *testing.T) {
	needVeritysetup(t)
	dir := t.TempDir()
	data := randomBytes(22, 77*4096+1000)
	path := writeFile(t, dir, "img", data)
	f, err := openRW(path)
	if err != nil {
		t.Fatal(err)
	}
	p, root, err := FormatAppended(f, int64(len(data)), FormatOptions{Algorithm: "sha512"})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	want, err := AppendedSize(int64(len(data)), FormatOptions{Algorithm: "sha512"})
	if err != nil || int64(len(readFileT(t, path))) != want || p.HashOffset != 78*4096 || p.DataBlocks != 78 {
		t.Fatalf("file of %d bytes, AppendedSize %d (%v), params %+v", len(readFileT(t, path)), want, err, p)
	}
	veritysetup(t, "verify", path, path, hex.EncodeToString(root), fmt.Sprintf("--hash-offset=%d", p.HashOffset))
	checkDump(t, path, p.HashOffset)
}
