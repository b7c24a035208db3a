//go:build !windows

package extract

import (
	"errors"
	"fmt"
	"os"

	"github.com/chestfs/chestfs/ext4"
	syscall "github.com/chestfs/chestfs/internal/sysabi"
	"golang.org/x/sys/unix"
)

// mknod makes a device node, FIFO or socket node.
func mknod(p string, mode uint32, dev int) error { return unix.Mknod(p, mode, dev) }

// meta applies owner, xattrs, mode and times, in that order: chown clears
// setuid bits and file capabilities, so both come after it; times last.
func (x *extractor) meta(p string, st ext4.Stat) error {
	typ := st.Mode & syscall.S_IFMT
	if x.opts.SameOwner {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	names, err := x.fsys.ListXattr(st.Ino)
	if err != nil {
		return fmt.Errorf("extract: %s: xattrs: %w", p, err)
	}
	for _, name := range names {
		if !x.xattrAllowed(name) {
			x.skipped("xattr "+name, p)
			continue
		}
		v, err := x.fsys.GetXattr(st.Ino, name)
		if err != nil {
			return fmt.Errorf("extract: %s: xattr %s: %w", p, name, err)
		}
		if err := unix.Lsetxattr(p, name, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("extract: %s: set xattr %s: %w", p, name, err)
		}
	}
	if typ != syscall.S_IFLNK {
		mode := st.Mode & 0o7777
		if !x.opts.PreserveSetID && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			mode &^= unix.S_ISUID | unix.S_ISGID
			x.skipped("setuid/setgid bit", p)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	ts := []unix.Timespec{
		{Sec: st.Atime.Unix(), Nsec: int64(st.Atime.Nanosecond())},
		{Sec: st.Mtime.Unix(), Nsec: int64(st.Mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("extract: %s: times: %w", p, err)
	}
	return nil
}
