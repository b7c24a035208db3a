package extract

import (
	"errors"
	"fmt"
	"os"

	"github.com/chestfs/chestfs/ext4"
	syscall "github.com/chestfs/chestfs/internal/sysabi"
)

// mknod: Windows has no device nodes, FIFOs or socket nodes.
func mknod(p string, mode uint32, dev int) error {
	return errors.New("device nodes, FIFOs and sockets cannot be created on Windows")
}

// meta applies what Windows can hold: the write bit (read-only attribute) and
// the times. Owners, xattrs and the other mode bits have no Windows
// counterpart and are reported as skipped. All failures are returned.
func (x *extractor) meta(p string, st ext4.Stat) error {
	if x.opts.SameOwner {
		x.skipped("owner", p)
	}
	if names, err := x.fsys.ListXattr(st.Ino); err == nil && len(names) > 0 {
		x.skipped("xattrs", p)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return nil
	}
	var errs []error
	if err := os.Chmod(p, os.FileMode(st.Mode&0o777)); err != nil {
		errs = append(errs, fmt.Errorf("chmod: %w", err))
	}
	if err := os.Chtimes(p, st.Atime, st.Mtime); err != nil {
		errs = append(errs, fmt.Errorf("times: %w", err))
	}
	return joinErrs(errs)
}
