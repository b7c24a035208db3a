package pack

import (
	"syscall"
	"time"
)

// statT is what os.FileInfo.Sys returns here.
type statT = syscall.Stat_t

func statTimes(st *statT) (mtime, atime *time.Time) {
	m, a := time.Unix(st.Mtimespec.Sec, st.Mtimespec.Nsec), time.Unix(st.Atimespec.Sec, st.Atimespec.Nsec)
	return &m, &a
}

// lseek whences for sparse files: macOS numbers them the other way round from Linux.
const (
	seekData = 4 // SEEK_DATA
	seekHole = 3 // SEEK_HOLE
)

// Homebrew's e2fsprogs is keg-only: its mkfs.ext4 is not on PATH.
var osMkfsPaths = []string{"/opt/homebrew/opt/e2fsprogs/sbin/mkfs.ext4", "/usr/local/opt/e2fsprogs/sbin/mkfs.ext4"}

const mkfsHint = "brew install e2fsprogs"
