//go:build linux || darwin

package pack

import "golang.org/x/sys/unix"

// xattrBlocks is 4096 when the file's extended attributes will not fit in
// the inode's free space (about 100 bytes in a 256-byte inode).
func xattrBlocks(path string) int64 {
	n, err := unix.Listxattr(path, nil)
	if err != nil || n <= 0 {
		return 0
	}
	names := make([]byte, n)
	n, err = unix.Listxattr(path, names)
	if err != nil {
		return 4096
	}
	total := 0
	start := 0
	for i := 0; i < n; i++ {
		if names[i] != 0 {
			continue
		}
		name := string(names[start:i])
		start = i + 1
		v, err := unix.Getxattr(path, name, nil)
		if err != nil {
			v = 4096
		}
		total += 16 + (len(name)+3)&^3 + (v+3)&^3
	}
	if total <= 96 {
		return 0
	}
	return roundUp(int64(total), 4096)
}
