package main

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/blockdev/verity"
	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/skr"
)

// Exit statuses: scripts tell failures apart by these (README, "Exit status").
const (
	exitFailure   = 1  // anything else
	exitUsage     = 2  // bad command line
	exitKey       = 3  // wrong key, or key release refused
	exitNotFound  = 4  // no such source, blob, key or path in the image
	exitIO        = 5  // I/O or network failure, timeout
	exitCorrupt   = 6  // not LUKS/ext4, damaged header or filesystem, integrity check failed
	exitMountFail = 32 // the FUSE mount could not be made (as mount(8))
)

// usageError marks a bad command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// mountError marks a failure of the FUSE mount itself.
type mountError struct{ err error }

func (e mountError) Error() string { return e.err.Error() }
func (e mountError) Unwrap() error { return e.err }

// exitCode picks the exit status for err.
func exitCode(err error) int {
	var ec cli.ExitCoder
	var ue usageError
	var me mountError
	var ne net.Error
	switch {
	case errors.As(err, &ec) && ec.ExitCode() != 0:
		return ec.ExitCode()
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "usage:"):
		return exitUsage
	case errors.As(err, &me):
		return exitMountFail
	case errors.Is(err, luks.ErrWrongKey), errors.Is(err, skr.ErrForbidden), errors.Is(err, skr.ErrUnauthorized):
		return exitKey
	case errors.Is(err, verity.ErrMismatch), errors.Is(err, verity.ErrFormat), errors.Is(err, luks.ErrCorrupt),
		errors.Is(err, luks.ErrNotLUKS), errors.Is(err, ext4.ErrCorrupt), errors.Is(err, ext4.ErrNotExt4):
		return exitCorrupt
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, blobsrc.ErrNotFound), errors.Is(err, skr.ErrNotFound):
		return exitNotFound
	case errors.Is(err, syscall.EIO), errors.Is(err, blobsrc.ErrTimeout), errors.Is(err, cache.ErrTimeout),
		errors.Is(err, skr.ErrDNS), errors.Is(err, skr.ErrTLS), errors.As(err, &ne), errors.Is(err, os.ErrDeadlineExceeded):
		return exitIO
	}
	return exitFailure
}
