package pack

import (
	"time"
)

// statT stands in for the Unix stat structure: os.FileInfo.Sys never returns
// it on Windows, so hard links are not recognised and owners and times come
// from the defaults (pack runs mkfs.ext4, which Windows has only under WSL).
type statT struct {
	Nlink    uint64
	Dev, Ino uint64
	Blocks   int64
	Uid, Gid uint32
}

func statTimes(*statT) (mtime, atime *time.Time) { return nil, nil }

// xattrBlocks is 0: Windows files have no POSIX xattrs.
func xattrBlocks(string) int64 { return 0 }

// Never used: st is nil on Windows, so files count at their full size.
const (
	seekData = 3
	seekHole = 4
)

var osMkfsPaths []string

const mkfsHint = "Windows has no mkfs.ext4: run chestfs pack under WSL"
