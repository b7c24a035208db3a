//go:build linux

package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Harden makes this process undumpable (prctl PR_SET_DUMPABLE 0: other
// processes of the same user can no longer ptrace it or read
// /proc/PID/mem, environ and the like; only CAP_SYS_PTRACE can) and sets
// the core file size limit to 0. Call it first thing in main, before any
// secret is read. It survives until execve of a set-id program.
func Harden() error {
	var errs []error
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("secret: prctl(PR_SET_DUMPABLE, 0): %w", err))
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		errs = append(errs, fmt.Errorf("secret: setrlimit(RLIMIT_CORE, 0): %w", err))
	}
	return errors.Join(errs...)
}

// Dumpable reports the process's PR_GET_DUMPABLE value (0 once hardened).
func Dumpable() (int, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v, err
}

var mlockOnce sync.Once

func (b *Buffer) alloc(n int) error {
	page := os.Getpagesize()
	size := (n + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("secret: mmap %d bytes: %w", size, err)
	}
	// Best effort: a small RLIMIT_MEMLOCK (64 KiB on older systems) must
	// not stop the program; the memory is still kept out of core dumps.
	if err := unix.Mlock(mem); err != nil {
		mlockOnce.Do(func() {
			slog.Debug("secret: mlock refused; key memory may be swapped", "err", err)
		})
	}
	if err := unix.Madvise(mem, unix.MADV_DONTDUMP); err != nil {
		unix.Munmap(mem)
		return fmt.Errorf("secret: madvise(MADV_DONTDUMP): %w", err)
	}
	b.mem, b.mapped = mem, true
	return nil
}

func (b *Buffer) free() {
	if !b.mapped {
		return
	}
	unix.Munlock(b.mem)
	unix.Munmap(b.mem)
}
