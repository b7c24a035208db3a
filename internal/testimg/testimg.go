// Package testimg builds real ext2/3/4 images with mkfs.ext4 for tests and
// mounts them with the kernel (read-only, as root) to compare against.
//
// Images are populated either by a root kernel loop mount (every file type,
// xattrs in all namespaces, odd times and ids, sparse and fragmented files,
// large directories) or, without root, by `mkfs.ext4 -d` from a plain tree.
// Built images are cached per process, and across test binaries when
// CHESTFS_TESTIMG_DIR is set.
package testimg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// version is bumped whenever the content or build steps change, so that
// images cached in CHESTFS_TESTIMG_DIR are rebuilt.
const version = "12"

// Variant names one image flavour: mkfs options plus what to put in it.
type Variant struct {
	Name     string
	Mkfs     []string // extra mkfs.ext4 arguments, e.g. "-b", "1024", "-O", "^metadata_csum"
	SizeMiB  int      // image size; 0 means 32
	LargeDir int      // entries in big/ (hard links); 0 means 300
	// NoKernel marks variants the running kernel cannot mount (still
	// buildable for parser-only tests via mkfs -d).
	NoKernel bool
	// Debugfs commands run (debugfs -w) after mkfs, before populating.
	Debugfs []string
}

func (v Variant) size() int {
	if v.SizeMiB == 0 {
		return 32
	}
	return v.SizeMiB
}

func (v Variant) largeDir() int {
	if v.LargeDir == 0 {
		return 300
	}
	return v.LargeDir
}

func (v Variant) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%q|%d|%d|%q|%v", version, v.Mkfs, v.size(), v.largeDir(), v.Debugfs, IsRoot())
	return v.Name + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// Variants is the standard set of images: mkfs defaults first, then the
// rarer layouts.
func Variants() []Variant {
	return []Variant{
		{Name: "default4k", Mkfs: []string{"-b", "4096"}, LargeDir: 20000, SizeMiB: 64},
		{Name: "default1k", Mkfs: []string{"-b", "1024"}, LargeDir: 3000},
		// Exactly what the Azure sidecar's generatefs makes: mkfs.ext4
		// defaults on 64 MiB (the "small" type).
		{Name: "sidecar64m", SizeMiB: 64},
		{Name: "inline", Mkfs: []string{"-b", "4096", "-O", "inline_data"}},
		{Name: "nocsum32", Mkfs: []string{"-b", "4096", "-O", "^metadata_csum,^64bit,^has_journal"}, LargeDir: 2000,
			Debugfs: []string{"ssv def_hash_version tea"}},
		{Name: "ext3", Mkfs: []string{"-t", "ext3", "-b", "1024", "-I", "128"}, LargeDir: 1500},
		{Name: "ext2nofiletype", Mkfs: []string{"-t", "ext2", "-b", "1024", "-O", "^filetype,^dir_index"}},
		{Name: "legacyhash2k", Mkfs: []string{"-b", "2048", "-O", "metadata_csum_seed"}, LargeDir: 2000,
			Debugfs: []string{"ssv def_hash_version legacy"}},
		{Name: "unsigned", Mkfs: []string{"-b", "1024", "-O", "^metadata_csum"}, LargeDir: 1000,
			Debugfs: []string{"ssv flags 2"}},
		{Name: "bigalloc", Mkfs: []string{"-b", "1024", "-O", "bigalloc", "-C", "16384"}},
		// 20 groups of 8 MiB with 16 descriptors per block: two meta-groups.
		{Name: "metabg", Mkfs: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, SizeMiB: 160},
		{Name: "eainode", Mkfs: []string{"-b", "1024", "-O", "ea_inode,inline_data"}},
		{Name: "largedir", Mkfs: []string{"-b", "1024", "-O", "large_dir"}, LargeDir: 5000},
		{Name: "inode1k", Mkfs: []string{"-b", "4096", "-I", "1024", "-O", "^has_journal,inline_data"}},
		{Name: "gdtcsum", Mkfs: []string{"-t", "ext4", "-b", "1024", "-O", "^metadata_csum,uninit_bg,^flex_bg"}},
		// The kernel refuses blocks larger than the page size; populated by mkfs -d.
		{Name: "bs64k", Mkfs: []string{"-b", "65536", "-O", "^has_journal"}, SizeMiB: 64, NoKernel: true},
	}
}

// Lookup returns the standard variant with that name.
func Lookup(name string) (Variant, bool) {
	for _, v := range Variants() {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}

// Image is a built image file.
type Image struct {
	Path    string
	Variant Variant
	// Kernel reports whether the content was written through the kernel
	// (root); otherwise it came from mkfs -d and lacks devices, xattrs, ids.
	Kernel bool
}

// IsRoot reports whether the process can loop-mount.
func IsRoot() bool { return os.Geteuid() == 0 }

// RequireRoot skips t unless running as root (needed for loop mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	if !IsRoot() {
		t.Skip("testimg: needs root for kernel loop mounts (CI runs as root)")
	}
}

// RequireTools skips t when mkfs.ext4 is missing.
func RequireTools(t testing.TB) {
	t.Helper()
	if _, err := lookMkfs(); err != nil {
		t.Skipf("testimg: %v", err)
	}
}

func lookMkfs() (string, error) {
	for _, p := range []string{"mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"} {
		if q, err := exec.LookPath(p); err == nil {
			return q, nil
		}
	}
	return "", fmt.Errorf("mkfs.ext4 not found (install e2fsprogs)")
}

type built struct {
	once sync.Once
	img  Image
	err  error
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*built{}
	tmpOnce sync.Once
	tmpDir  string
	tmpErr  error
)

// processDir is where images live when CHESTFS_TESTIMG_DIR is unset: a
// per-process directory removed by Cleanup (call it from TestMain) or left
// in the OS temp dir otherwise.
func processDir() (string, error) {
	if d := os.Getenv("CHESTFS_TESTIMG_DIR"); d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	tmpOnce.Do(func() {
		removeStale()
		tmpDir, tmpErr = os.MkdirTemp("", fmt.Sprintf("chestfs-testimg-%d-", os.Getpid()))
	})
	return tmpDir, tmpErr
}

// removeStale deletes image directories of test processes that died
// without calling Cleanup (killed by a timeout, no TestMain).
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "chestfs-testimg-*-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "chestfs-testimg-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// Cleanup removes the per-process image directory. Call it from TestMain
// after m.Run; harmless when CHESTFS_TESTIMG_DIR is set (that is kept).
func Cleanup() {
	if os.Getenv("CHESTFS_TESTIMG_DIR") == "" && tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
}

// Build returns the image for v, building it at most once per process (and
// reusing a stamped copy in CHESTFS_TESTIMG_DIR). It skips t when mkfs.ext4
// is missing and fails t on build errors.
func Build(t testing.TB, v Variant) Image {
	t.Helper()
	RequireTools(t)
	img, err := BuildErr(v)
	if err != nil {
		t.Fatalf("testimg: build %s: %v", v.Name, err)
	}
	return img
}

// BuildErr is Build without a testing.TB.
func BuildErr(v Variant) (Image, error) {
	key := v.key()
	cacheMu.Lock()
	b := cache[key]
	if b == nil {
		b = &built{}
		cache[key] = b
	}
	cacheMu.Unlock()
	b.once.Do(func() { b.img, b.err = build(v, key) })
	return b.img, b.err
}

func build(v Variant, key string) (Image, error) {
	dir, err := processDir()
	if err != nil {
		return Image{}, err
	}
	path := filepath.Join(dir, key+".img")
	img := Image{Path: path, Variant: v, Kernel: kernelPopulated(v)}
	// A file lock serialises builders of the same image across test binaries.
	unlock, err := flock(path + ".lock")
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if st, err := os.Stat(path + ".done"); err == nil && st.Mode().IsRegular() {
		return img, nil
	}
	os.Remove(path)
	if err := makeImage(v, path); err != nil {
		os.Remove(path)
		return Image{}, err
	}
	if err := os.WriteFile(path+".done", []byte(version+"\n"), 0o644); err != nil {
		return Image{}, err
	}
	return img, nil
}

func makeImage(v Variant, path string) error {
	mkfs, err := lookMkfs()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(v.size()) << 20); err != nil {
		f.Close()
		return err
	}
	f.Close()

	args := []string{"-q", "-F", "-L", v.Name, "-U", "6b1c7a3e-5a43-4c0e-9d0b-2f1e0d3c4b5a"}
	args = append(args, mergeE(v.Mkfs)...)
	var src string
	if !kernelPopulated(v) {
		src, err = os.MkdirTemp("", "chestfs-testimg-src-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(src)
		if err := populatePlain(src, v); err != nil {
			return fmt.Errorf("populate %s: %w", src, err)
		}
		args = append(args, "-d", src)
	}
	args = append(args, path)
	cmd := exec.Command(mkfs, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", strings.Join(args, " "), err, out)
	}
	for _, c := range v.Debugfs {
		out, err := exec.Command("debugfs", "-w", "-R", c, path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("debugfs %q: %v: %s", c, err, out)
		}
	}
	if !kernelPopulated(v) {
		// mkfs -d writes linear directories; e2fsck -D builds the htree
		// indexes the kernel would have made. Exit status 1 means "fixed".
		cmd := exec.Command("e2fsck", "-fyD", path)
		out, err := cmd.CombinedOutput()
		if err != nil && cmd.ProcessState.ExitCode() != 1 {
			return fmt.Errorf("e2fsck -fyD: %v: %s", err, out)
		}
		return nil
	}
	return withMount(path, false, func(mnt string) error { return populateKernel(mnt, v) })
}

// mergeE joins several -E options into one (mkfs keeps only the last).
func mergeE(args []string) []string {
	var out []string
	es := []string{"root_owner=0:0"}
	for i := 0; i < len(args); i++ {
		if args[i] == "-E" && i+1 < len(args) {
			es = append(es, args[i+1])
			i++
			continue
		}
		out = append(out, args[i])
	}
	return append([]string{"-E", strings.Join(es, ",")}, out...)
}

func kernelPopulated(v Variant) bool { return IsRoot() && !v.NoKernel }

// Mount loop-mounts the image read-only with the kernel and returns the
// mount point; unmounted and detached in t.Cleanup. Skips t without root.
func (img Image) Mount(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	if img.Variant.NoKernel {
		t.Skipf("testimg: variant %s is not mountable by this kernel", img.Variant.Name)
	}
	mnt, release, err := mountRO(img.Path)
	if err != nil {
		t.Fatalf("testimg: mount %s: %v", img.Path, err)
	}
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("testimg: unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

func mountRO(path string) (string, func() error, error) {
	mnt, err := os.MkdirTemp("", "chestfs-mnt-")
	if err != nil {
		return "", nil, err
	}
	release, err := attachMount(path, mnt, true)
	if err != nil {
		os.Remove(mnt)
		return "", nil, err
	}
	return mnt, func() error {
		err := release()
		if err == nil {
			os.Remove(mnt)
		}
		return err
	}, nil
}

func withMount(path string, ro bool, fn func(mnt string) error) error {
	mnt, err := os.MkdirTemp("", "chestfs-mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	release, err := attachMount(path, mnt, ro)
	if err != nil {
		return err
	}
	ferr := fn(mnt)
	if err := release(); err != nil && ferr == nil {
		ferr = err
	}
	return ferr
}

// attachMount sets up a loop device and mounts it. Loop setup and mount run
// under a machine-wide file lock: go test runs package binaries in parallel.
func attachMount(path, mnt string, ro bool) (func() error, error) {
	opts := "rw"
	if ro {
		opts = "ro"
	}
	return attachMountOpts(path, mnt, ro, opts)
}

// attachMountOpts is attachMount with a read-only loop device (roDev) and
// mount options chosen separately.
func attachMountOpts(path, mnt string, roDev bool, opts string) (func() error, error) {
	unlock, err := flock(filepath.Join(os.TempDir(), "chestfs-testimg-loop.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	largs := []string{"--find", "--show"}
	if roDev {
		largs = append(largs, "--read-only")
	}
	out, err := runTimeout(30*time.Second, "losetup", append(largs, path)...)
	if err != nil {
		return nil, err
	}
	dev := strings.TrimSpace(out)
	if _, err := runTimeout(30*time.Second, "mount", "-t", "ext4", "-o", opts, dev, mnt); err != nil {
		runTimeout(30*time.Second, "losetup", "-d", dev)
		return nil, err
	}
	return func() error {
		unlock, err := flock(filepath.Join(os.TempDir(), "chestfs-testimg-loop.lock"))
		if err != nil {
			return err
		}
		defer unlock()
		var uerr error
		for i := 0; i < 20; i++ {
			if _, uerr = runTimeout(30*time.Second, "umount", mnt); uerr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		var derr error
		for i := 0; i < 20; i++ {
			if _, derr = runTimeout(30*time.Second, "losetup", "-d", dev); derr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if uerr != nil {
			return uerr
		}
		return derr
	}, nil
}

func runTimeout(d time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return out.String(), nil
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return "", fmt.Errorf("%s %s: timed out after %v", name, strings.Join(args, " "), d)
	}
}

func flock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
