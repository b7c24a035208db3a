package main

import (
	"fmt"
	"strings"
	"syscall"

	"github.com/chestfs/chestfs/ext4"
)

// maxSymlinkHops bounds symlink resolution as the kernel does (ELOOP after 40).
const maxSymlinkHops = 40

// resolve walks an absolute or root-relative path to an inode. With follow, a
// symlink in the last component is followed too.
func resolve(fsys *ext4.FS, p string, follow bool) (uint64, error) {
	hops := 0
	var walk func(start uint64, p string, follow bool) (uint64, error)
	walk = func(start uint64, p string, follow bool) (uint64, error) {
		if strings.HasPrefix(p, "/") {
			start = ext4.RootIno
		}
		parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
		dir := start
		stack := []uint64{ext4.RootIno}
		if start != ext4.RootIno {
			stack = append(stack, start)
		}
		for i, name := range parts {
			switch name {
			case ".":
				continue
			case "..":
				if len(stack) > 1 {
					stack = stack[:len(stack)-1]
				}
				dir = stack[len(stack)-1]
				continue
			}
			ino, err := fsys.Lookup(dir, name)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", p, err)
			}
			last := i == len(parts)-1
			if !last || follow {
				st, err := fsys.Stat(ino)
				if err != nil {
					return 0, err
				}
				if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
					if hops++; hops > maxSymlinkHops {
						return 0, fmt.Errorf("%s: too many levels of symbolic links", p)
					}
					target, err := fsys.Readlink(ino)
					if err != nil {
						return 0, err
					}
					ino, err = walk(dir, target, true)
					if err != nil {
						return 0, err
					}
				}
			}
			dir = ino
			stack = append(stack, ino)
		}
		return dir, nil
	}
	return walk(ext4.RootIno, p, follow)
}
