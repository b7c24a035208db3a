package testimg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// SymlinkChain is the number of links in the chain n00 -> n01 -> ... ->
// end: one more than the kernel follows for one path (40), so that n00
// fails with ELOOP and n01 resolves.
const SymlinkChain = 41

// FromDir builds an ext4 image of the tree at src with `mkfs.ext4 -d` (no
// root needed) in a directory removed when t ends; Image.Mount works on it
// as root. mkfsArgs are passed on (e.g. "-b", "1024").
func FromDir(t testing.TB, src string, mkfsArgs ...string) Image {
	t.Helper()
	RequireTools(t)
	mkfs, _ := lookMkfs()
	path := filepath.Join(t.TempDir(), "fromdir.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(16 << 20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-q", "-F", "-d", src}, mergeE(mkfsArgs)...)
	if out, err := exec.Command(mkfs, append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("testimg: mkfs.ext4 %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return Image{Path: path, Variant: Variant{Name: "fromdir", Mkfs: mkfsArgs}}
}

// SymlinkTree writes, under dir, a tree of symbolic links exercising path
// resolution: relative links with "..", absolute links (resolved from the
// image root), ".." past the root, links to directories, chains, loops,
// links through files, dangling links and trailing slashes. SymlinkPaths
// lists paths to resolve in it.
func SymlinkTree(dir string) error {
	files := map[string]string{
		"a/x":      "content of /a/x\n",
		"c/f":      "content of /c/f\n",
		"end":      "end of the chain\n",
		"a/b/file": "content of /a/b/file\n",
	}
	links := map[string]string{
		"a/b/link":       "../x",
		"a/b/abs":        "/a/x",
		"a/b/dotdot":     "../../a/./x",
		"a/b/escape":     "../../../../../a/x",
		"a/b/absescape":  "/../../a/x",
		"a/b/dirlink":    "../../c",
		"a/b/dirslash":   "../../c/",
		"a/b/fileslash":  "../x/",
		"a/b/sibling":    "file",
		"a/b/root":       "/",
		"c/up":           "..",
		"d":              "a/b",
		"chain1":         "chain2",
		"chain2":         "a/b/link",
		"loop1":          "loop2",
		"loop2":          "loop1",
		"self":           "self",
		"throughfile":    "a/x/y",
		"dangling":       "nowhere",
		"dangling-abs":   "/a/nowhere",
		"a/b/updirlink":  "../../d/..",
		"a/b/dirlinkdot": "dirlink/.",
	}
	for i := 0; i < SymlinkChain; i++ {
		next := fmt.Sprintf("n%02d", i+1)
		if i == SymlinkChain-1 {
			next = "end"
		}
		links[fmt.Sprintf("n%02d", i)] = next
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	for p, target := range links {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	return nil
}

// SymlinkPaths are paths to resolve in a SymlinkTree, each meant to be
// resolved from the image root both following and not following a final
// link; some resolve, others fail with ENOENT, ENOTDIR or ELOOP.
var SymlinkPaths = []string{
	"", ".", "/", "..", "/..", "../..", "a/..", "a/b/../..",
	"a/x", "/a/x", "a/x/", "a/x/.", "a/x/..", "a/x/y",
	"a/b/link", "/a/b/link", "a/b/link/", "a/b/./link", "a/b/../b/link", "../a/b/link",
	"a/b/abs", "a/b/dotdot", "a/b/escape", "a/b/absescape",
	"a/b/dirlink", "a/b/dirlink/", "a/b/dirlink/f", "a/b/dirlink/..", "a/b/dirlink/../a/x",
	"a/b/dirslash", "a/b/dirslash/f", "a/b/fileslash", "a/b/sibling", "a/b/root", "a/b/root/a/x",
	"c/up", "c/up/", "c/up/a/x", "c/up/c/up/a/b/link", "c/up/..",
	"d", "d/", "d/link", "d/../x", "d/..", "a/b/updirlink", "a/b/updirlink/x", "a/b/dirlinkdot/f",
	"chain1", "chain1/", "loop1", "loop1/x", "self", "throughfile", "dangling", "dangling-abs",
	"n00", "n01", "n40", "end", "missing", "a/missing/x",
}

// OpenInRoot resolves p below root (a directory file descriptor) as the
// kernel does with root as the root directory (openat2 RESOLVE_IN_ROOT:
// ".." stops there, absolute links start there), following a final link
// when follow is set. It returns the inode, a regular file's content and
// the errno.
func OpenInRoot(root int, p string, follow bool) (uint64, string, syscall.Errno) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT}
	if !follow {
		how.Flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat2(root, p, &how)
	if err != nil {
		return 0, "", err.(syscall.Errno)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, "", err.(syscall.Errno)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return st.Ino, "", 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return 0, "", syscall.EIO
	}
	return st.Ino, string(b), 0
}
