package ext4_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/testimg"
)

// Differential testing against the reference readers: seeded mutations of
// the metadata of small valid images (superblock, group descriptors, inode
// tables, directory and extent blocks: the blocks a walk reads), each read
// by chestfs and by debugfs rdump (unprivileged, fast), and for a subset by
// the kernel's read-only loop mount (root). The trees are compared as
// path -> type and content (or target); an entry one reader cannot read
// counts as absent.

// diffBases are the committed seed images mutated.
var diffBases = []string{"ext2.img.gz", "nocsum4k.img.gz", "csum1k.img.gz"}

// mutation is a list of byte writes to a base image, encoded for the fuzz
// corpus as: base index, then (offset uint32 LE, value byte) records.
type mutation []byte

func (m mutation) apply(bases map[string][]byte) []byte {
	if len(m) == 0 {
		return nil
	}
	base := bases[diffBases[int(m[0])%len(diffBases)]]
	img := bytes.Clone(base)
	for r := m[1:]; len(r) >= 5; r = r[5:] {
		off := int(binary.LittleEndian.Uint32(r)) % len(img)
		img[off] = r[4]
	}
	return img
}

// metadataRegions returns the byte ranges a full walk of img reads in
// small reads: its metadata.
func metadataRegions(t testing.TB, img []byte) [][2]int64 {
	rec := &recordingReader{r: bytes.NewReader(img)}
	f, err := ext4.Open(rec, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if err := walkAll(f, 1000); err != nil {
		t.Fatal(err)
	}
	return rec.offs
}

// genMutations makes n seeded mutations of 1 to 4 byte writes, each in a
// metadata region of its base.
func genMutations(t testing.TB, bases map[string][]byte, n int) []mutation {
	regions := make([][][2]int64, len(diffBases))
	for i, name := range diffBases {
		regions[i] = metadataRegions(t, bases[name])
	}
	rng := rand.New(rand.NewSource(15))
	out := make([]mutation, n)
	for i := range out {
		b := rng.Intn(len(diffBases))
		m := mutation{byte(b)}
		for k := 1 + rng.Intn(4); k > 0; k-- {
			reg := regions[b][rng.Intn(len(regions[b]))]
			off := reg[0] + rng.Int63n(reg[1])
			v := byte(rng.Intn(256))
			if rng.Intn(2) == 0 { // a flipped bit is subtler than a random byte
				v = bases[diffBases[b]][off] ^ byte(1<<rng.Intn(8))
			}
			m = binary.LittleEndian.AppendUint32(m, uint32(off))
			m = append(m, v)
		}
		out[i] = m
	}
	return out
}

// tree is path -> "type:content-hash" (or the symlink target).
type tree map[string]string

func entryValue(mode uint32, content []byte, target string) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFLNK:
		return "lnk:" + strconv.Quote(target)
	case syscall.S_IFREG:
		return fmt.Sprintf("reg:%x", sha256.Sum256(content)) // the first MiB
	}
	return fmt.Sprintf("mode %o", mode&syscall.S_IFMT)
}

// chestTree walks f; unreadable entries are left out.
func chestTree(f *ext4.FS) tree {
	out := tree{}
	seen := map[uint64]bool{}
	var walk func(dirIno uint64, p string, depth int)
	walk = func(dirIno uint64, p string, depth int) {
		if seen[dirIno] || depth > 16 || len(out) > 2000 {
			return
		}
		seen[dirIno] = true
		ents, err := f.ReadDir(dirIno)
		if err != nil {
			return
		}
		if p != "" { // as filepath.Walk: a directory whose listing fails is left out
			out[p] = "dir"
		}
		for _, e := range ents {
			if e.Name == "lost+found" && p == "" {
				continue
			}
			q := p + "/" + e.Name
			// As filepath.Walk's lstat through a mount: a listed name is
			// looked up, and one the lookup cannot find is left out.
			ino, err := f.Lookup(dirIno, e.Name)
			if err != nil {
				continue
			}
			st, err := f.Stat(ino)
			if err != nil {
				continue
			}
			var content []byte
			var target string
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				content = make([]byte, min(st.Size, 1<<20))
				if n, err := f.ReadAt(ino, content, 0); n != len(content) && err != io.EOF || err != nil && err != io.EOF {
					continue
				}
			case syscall.S_IFLNK:
				if target, err = f.Readlink(ino); err != nil {
					continue
				}
			}
			if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				walk(ino, q, depth+1)
				continue
			}
			out[q] = entryValue(st.Mode, content, target)
		}
	}
	walk(ext4.RootIno, "", 0)
	return out
}

// dirTree walks a directory of the local filesystem (a debugfs rdump or a
// kernel mount); unreadable entries are left out.
func dirTree(root string) tree {
	out := tree{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel := strings.TrimPrefix(p, root)
		if rel == "/lost+found" {
			return filepath.SkipDir
		}
		if len(out) > 2000 {
			return filepath.SkipAll
		}
		st := fi.Sys().(*syscall.Stat_t)
		var content []byte
		var target string
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			fh, err := os.Open(p)
			if err != nil {
				return nil
			}
			content, err = io.ReadAll(io.LimitReader(fh, 1<<20))
			fh.Close()
			if err != nil {
				return nil
			}
		case syscall.S_IFLNK:
			if target, err = os.Readlink(p); err != nil {
				return nil
			}
		}
		out[rel] = entryValue(st.Mode, content, target)
		return nil
	})
	return out
}

// debugfsTree dumps img with debugfs rdump; ok false when debugfs cannot
// open the image at all.
func debugfsTree(t testing.TB, img string) (tree, bool) {
	dir := t.TempDir()
	// A mutated size can make rdump write gigabytes: limit the files it
	// writes to 64 MiB (ulimit -f counts 512-byte blocks); a file over it
	// stops the dump there, as if debugfs could not read on.
	cmd := exec.Command("sh", "-c", `ulimit -f 131072; exec debugfs -R "rdump / $1" "$2"`, "sh", dir, img)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return nil, false
	}
	if strings.Contains(out.String(), "while trying to open") || strings.Contains(out.String(), "while opening filesystem") {
		return nil, false
	}
	return dirTree(dir), true
}

// diffTrees lists the differences of b from a, at most max lines.
func diffTrees(a, b tree, max int) []string {
	var d []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if a[k] != b[k] && len(d) < max {
			d = append(d, fmt.Sprintf("%s: %q vs %q", strconv.Quote(k), a[k], b[k]))
		}
	}
	return d
}

// TestDifferential runs 200 seeded mutations (EXT4_DIFF_N) through
// chestfs and debugfs (and, as root, the first 40, or EXT4_DIFF_KERNEL,
// through the kernel) and reports the figures. Agreement is required where both read: an entry both list must
// have the same type and content; chestfs may list fewer entries than
// debugfs (it refuses what the kernel refuses, debugfs is more lenient)
// but never an entry debugfs and the kernel do not have.
func TestDifferential(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("needs debugfs (e2fsprogs)")
	}
	n, nk := 200, 40
	if testing.Short() {
		n, nk = 40, 10
	}
	if v, err := strconv.Atoi(os.Getenv("EXT4_DIFF_N")); err == nil {
		n = v // more mutations, for a longer run by hand
	}
	if v, err := strconv.Atoi(os.Getenv("EXT4_DIFF_KERNEL")); err == nil {
		nk = v // how many to compare with the kernel (a mount each)
	}
	bases := seeds(t)
	muts := genMutations(t, bases, n)
	var st diffStats
	for i, m := range muts {
		// A subtest per mutation: its image copies, debugfs dump and
		// kernel mount go away with it, not at the end of the run.
		t.Run(fmt.Sprintf("m%d", i), func(t *testing.T) {
			st.add(t, i, m, m.apply(bases), i < nk && testimg.IsRoot())
		})
	}
	t.Logf("%d mutations: same tree %d, both refuse %d, only chestfs refuses %d, only debugfs refuses %d, trees differ %d; "+
		"kernel: %d compared, %d agree, %d differ", n, st.same, st.bothRefuse, st.chestRefuses, st.debugfsRefuses, st.differ,
		st.kernelRun, st.kernelSame, st.kernelDiffer)
}

type diffStats struct{ same, bothRefuse, chestRefuses, debugfsRefuses, differ, kernelRun, kernelSame, kernelDiffer int }

// add reads one mutated image with chestfs, debugfs and (when kernel) the
// kernel, and counts the outcome.
func (st *diffStats) add(t *testing.T, i int, m mutation, img []byte, kernel bool) {
	p := filepath.Join(t.TempDir(), "m.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	f, cerr := ext4.Open(bytes.NewReader(img), int64(len(img)))
	var ct tree
	if cerr == nil {
		ct = chestTree(f)
	}
	dt, dok := debugfsTree(t, p)
	switch {
	case cerr != nil && !dok:
		st.bothRefuse++
	case cerr != nil:
		st.chestRefuses++
		t.Logf("mutation %d %x: chestfs refuses (%v), debugfs reads %d entries", i, []byte(m), cerr, len(dt))
	case !dok:
		st.debugfsRefuses++
		t.Logf("mutation %d %x: debugfs refuses, chestfs reads %d entries", i, []byte(m), len(ct))
	default:
		if d := diffTrees(ct, dt, 5); len(d) == 0 {
			st.same++
		} else {
			st.differ++
			t.Logf("mutation %d %x: chestfs vs debugfs: %s", i, []byte(m), strings.Join(d, "; "))
		}
	}
	if kernel {
		st.kernelRun++
		if kernelCompare(t, i, m, p, cerr, ct) {
			st.kernelSame++
		} else {
			st.kernelDiffer++
		}
	}
}

// kernelCompare mounts the mutated image read-only and compares: it
// reports whether chestfs agrees (both refuse, or the same tree).
func kernelCompare(t *testing.T, i int, m mutation, p string, cerr error, ct tree) bool {
	mnt, kerr := testimg.TryMount(t, testimg.CopyFile(t, p), false)
	switch {
	case kerr != nil && cerr != nil:
		return true
	case kerr != nil:
		t.Logf("mutation %d %x: the kernel refuses, chestfs reads %d entries", i, []byte(m), len(ct))
		return false
	case cerr != nil:
		t.Logf("mutation %d %x: chestfs refuses (%v), the kernel mounts", i, []byte(m), cerr)
		return false
	}
	kt := dirTree(mnt)
	if d := diffTrees(ct, kt, 5); len(d) > 0 {
		t.Logf("mutation %d %x: chestfs vs kernel: %s", i, []byte(m), strings.Join(d, "; "))
		return false
	}
	return true
}

// FuzzMutation applies arbitrary mutations to the seed images and walks
// the result: no panic, hang or unbounded memory (no oracle). Its corpus
// in testdata/fuzz/FuzzMutation holds the mutations where the readers
// disagreed, run by make test.
func FuzzMutation(f *testing.F) {
	bases := seeds(f)
	for _, m := range genMutations(f, bases, 20) {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		if len(m) > 5*64+1 {
			return
		}
		img := mutation(m).apply(bases)
		if img == nil {
			return
		}
		fs, err := ext4.Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		walkAll(fs, 300)
		chestTree(fs)
	})
}
