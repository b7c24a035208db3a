package pack

import (
	"syscall"
	"time"
)

// statT is what os.FileInfo.Sys returns here.
type statT = syscall.Stat_t

func statTimes(st *statT) (mtime, atime *time.Time) {
	m, a := time.Unix(st.Mtim.Sec, st.Mtim.Nsec), time.Unix(st.Atim.Sec, st.Atim.Nsec)
	return &m, &a
}

// lseek whences for sparse files.
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// Where else mkfs.ext4 may be, and how to get it.
var osMkfsPaths []string

const mkfsHint = "install e2fsprogs"
