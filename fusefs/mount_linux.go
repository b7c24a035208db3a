package fusefs

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The direct mount takes nosuid/nodev/ro as flags, not option strings.
const directMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY

// raiseReadAhead lifts the mount's readahead window (best effort: it needs
// write access to sysfs, which root has).
func raiseReadAhead(mnt string) {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(fmt.Sprintf("%d\n", readAheadKB)), 0); err != nil {
		slog.Debug("fusefs: cannot raise readahead", "path", p, "err", err)
	}
}
