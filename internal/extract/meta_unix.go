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
// A failure does not stop the later steps; all failures are returned.
func (x *extractor) meta(p string, st ext4.Stat) error {
	var errs []error
	if x.opts.SameOwner {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, x.xattrs(p, st.Ino)...)
	if st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		mode := st.Mode & 0o7777
		if !x.opts.PreserveSetID && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			mode &^= unix.S_ISUID | unix.S_ISGID
			x.skipped("setuid/setgid bit", p)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			errs = append(errs, fmt.Errorf("chmod: %w", err))
		}
	}
	ts := []unix.Timespec{
		{Sec: st.Atime.Unix(), Nsec: int64(st.Atime.Nanosecond())},
		{Sec: st.Mtime.Unix(), Nsec: int64(st.Mtime.Nanosecond())},
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		errs = append(errs, fmt.Errorf("times: %w", err))
	}
	return joinErrs(errs)
}

// xattrs copies the xattrs the options allow; filesystems without xattr
// support (ENOTSUP) are not an error.
func (x *extractor) xattrs(p string, ino uint64) []error {
	names, err := x.fsys.ListXattr(ino)
	if err != nil {
		return []error{fmt.Errorf("xattrs: %w", err)}
	}
	var errs []error
	for _, name := range names {
		if !x.xattrAllowed(name) {
			x.skipped("xattr "+name, p)
			continue
		}
		v, err := x.fsys.GetXattr(ino, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("xattr %s: %w", name, err))
			continue
		}
		if err := unix.Lsetxattr(p, name, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			errs = append(errs, fmt.Errorf("set xattr %s (%d bytes): %w", name, len(v), err))
		}
	}
	return errs
}
