package ext4

import (
	"fmt"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // Linux values, on every host
	"io/fs"
	"strings"
)

// FollowMode says whether Resolve follows a symbolic link named by the
// final component of a path. Links met on the way are always followed.
type FollowMode uint8

const (
	// Follow follows a final symbolic link too, as stat(2) and open(2) do.
	Follow FollowMode = iota + 1
	// NoFollow returns a final symbolic link itself, as lstat(2) and
	// readlink(2) do (O_NOFOLLOW). A trailing slash still follows it, as
	// in the kernel: "link/" names the directory the link points to.
	NoFollow
)

const (
	// maxSymlinks bounds the links followed while resolving one path,
	// the kernel's MAXSYMLINKS (ELOOP past it).
	maxSymlinks = 40
	// maxTarget is the longest symlink target symlink(2) can write
	// (PATH_MAX less its NUL); a longer one comes from a crafted image.
	maxTarget = 4095
)

// Resolve walks a slash-separated path to an inode number as the kernel's
// path walk does with the image as root directory:
//
//   - Absolute and relative paths both start at the root; "", "." and "/"
//     name the root itself.
//   - "." and ".." are the directories' own entries: ".." is a directory's
//     real parent (also after a symbolic link to it), and the root's ".."
//     is the root.
//   - A symbolic link's relative target is resolved from the directory
//     holding the link, an absolute one from the image's root: nothing
//     resolves outside the image.
//   - A trailing slash requires a directory (and follows a final link).
//   - After 40 symbolic links, Resolve fails with ErrLoop.
//
// Errors match fs.ErrNotExist (a missing name or an empty link target),
// ErrNotDir (a path walking through another file type), ErrLoop, or the
// errors of reading the directories and links on the way (ErrCorrupt...).
func (f *FS) Resolve(path string, follow FollowMode) (uint64, error) {
	if follow != Follow && follow != NoFollow {
		return 0, fmt.Errorf("ext4: resolve: follow mode %d", follow)
	}
	w := resolver{f: f, dir: RootIno}
	w.push(path)
	return w.walk(follow)
}

// resolver is the state of one path walk.
type resolver struct {
	f     *FS
	dir   uint64   // the directory the next component is looked up in
	rest  []string // components still to walk, the next one last
	links int      // symbolic links followed
}

// push puts the components of p in front of the rest of the walk. A
// trailing slash becomes a final "." component, which makes the component
// before it a directory on the way: followed if a link, and required to be
// a directory, as the kernel requires of "name/".
func (w *resolver) push(p string) {
	parts := strings.Split(p, "/")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts[len(parts)-1] = "."
	}
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] != "" {
			w.rest = append(w.rest, parts[i])
		}
	}
}

func (w *resolver) pop() string {
	c := w.rest[len(w.rest)-1]
	w.rest = w.rest[:len(w.rest)-1]
	return c
}

func (w *resolver) walk(follow FollowMode) (uint64, error) {
	for len(w.rest) > 0 {
		c := w.pop()
		ino, err := w.f.Lookup(w.dir, c)
		if err != nil {
			return 0, err
		}
		last := len(w.rest) == 0
		if c == "." || c == ".." || last && follow == NoFollow {
			w.dir = ino
			continue
		}
		in, err := w.f.inode(ino)
		if err != nil {
			return 0, err
		}
		if in.fileType() != syscall.S_IFLNK {
			// A file on the way fails at the next Lookup with ErrNotDir.
			w.dir = ino
			continue
		}
		if err := w.follow(ino); err != nil {
			return 0, err
		}
	}
	return w.dir, nil
}

// follow replaces the link ino by its target's components; an absolute
// target restarts from the root, a relative one from the link's directory
// (w.dir, unchanged).
func (w *resolver) follow(ino uint64) error {
	w.links++
	if w.links > maxSymlinks {
		return fmt.Errorf("ext4: inode %d: %w", ino, ErrLoop)
	}
	t, err := w.f.Readlink(ino)
	if err != nil {
		return err
	}
	switch {
	case t == "":
		return fmt.Errorf("ext4: inode %d: empty symbolic link: %w", ino, fs.ErrNotExist)
	case len(t) > maxTarget:
		return fmt.Errorf("ext4: inode %d: %w: symbolic link target of %d bytes", ino, ErrCorrupt, len(t))
	case t[0] == '/':
		w.dir = RootIno
	}
	w.push(t)
	return nil
}
