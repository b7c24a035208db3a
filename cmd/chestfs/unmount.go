//go:build !windows

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
)

func unmountCommand() *cli.Command {
	return &cli.Command{
		Name:      "unmount",
		Usage:     "unmount a chestfs mount (the serving process then exits 0); -z detaches a busy or dead one",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "lazy", Aliases: []string{"z"}, Usage: "detach now, even while files are open or the server is gone"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "MOUNTPOINT")
			if err != nil {
				return err
			}
			mp, err := filepath.Abs(a[0])
			if err != nil {
				return err
			}
			if !isMountPoint(mp) {
				return fmt.Errorf("%s is not mounted", mp)
			}
			return unmount(mp, c.Bool("lazy"))
		},
	}
}

// unmount unmounts mp: with umount2 where we may (root, or the owner of the
// mount namespace), else through fusermount3.
func unmount(mp string, lazy bool) error {
	flags := 0
	if lazy {
		flags = mntDetach
	}
	err := syscall.Unmount(mp, flags)
	if err == nil || !errors.Is(err, syscall.EPERM) {
		if err != nil {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
		return nil
	}
	args := []string{"-u", mp}
	if lazy {
		args = []string{"-u", "-z", mp}
	}
	if out, err := exec.Command("fusermount3", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 %v: %s", args, oneLine(errors.New(string(out))))
	}
	return nil
}

// clearDeadMount detaches a FUSE mount at mp whose server is gone (after a
// SIGKILL or an OOM kill, reads fail with ENOTCONN): it reports whether it
// did. A live mount is left alone.
func clearDeadMount(mp string) bool {
	_, err := os.ReadDir(mp)
	if !errors.Is(err, syscall.ENOTCONN) {
		return false
	}
	if err := unmount(mp, true); err != nil {
		slog.Warn("a dead FUSE mount is in the way and could not be cleared", "mountpoint", mp, "err", err,
			"fix", "fusermount3 -u -z "+mp)
		return false
	}
	slog.Warn("cleared a dead FUSE mount left by an earlier server", "mountpoint", mp)
	return true
}
