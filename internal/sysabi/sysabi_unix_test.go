//go:build linux || darwin

package sysabi

import (
	"syscall"
	"testing"
)

// TestMatchesSyscall: the constants are the host's where the host is Linux
// or macOS, so ext4 behaves exactly as it did with package syscall.
func TestMatchesSyscall(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"S_IFMT", S_IFMT, syscall.S_IFMT}, {"S_IFSOCK", S_IFSOCK, syscall.S_IFSOCK},
		{"S_IFLNK", S_IFLNK, syscall.S_IFLNK}, {"S_IFREG", S_IFREG, syscall.S_IFREG},
		{"S_IFBLK", S_IFBLK, syscall.S_IFBLK}, {"S_IFDIR", S_IFDIR, syscall.S_IFDIR},
		{"S_IFCHR", S_IFCHR, syscall.S_IFCHR}, {"S_IFIFO", S_IFIFO, syscall.S_IFIFO},
		{"S_ISUID", S_ISUID, syscall.S_ISUID}, {"S_ISGID", S_ISGID, syscall.S_ISGID},
		{"S_ISVTX", S_ISVTX, syscall.S_ISVTX},
		{"DT_UNKNOWN", DT_UNKNOWN, syscall.DT_UNKNOWN}, {"DT_FIFO", DT_FIFO, syscall.DT_FIFO},
		{"DT_CHR", DT_CHR, syscall.DT_CHR}, {"DT_DIR", DT_DIR, syscall.DT_DIR},
		{"DT_BLK", DT_BLK, syscall.DT_BLK}, {"DT_REG", DT_REG, syscall.DT_REG},
		{"DT_LNK", DT_LNK, syscall.DT_LNK}, {"DT_SOCK", DT_SOCK, syscall.DT_SOCK},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, syscall has %#x", c.name, c.got, c.want)
		}
	}
}
