package main

import "golang.org/x/sys/unix"

// mntDetach: macOS has no lazy unmount; a forced one is the nearest (open
// files on the mount then fail instead of staying usable).
const mntDetach = unix.MNT_FORCE

// checkFUSEDevice: macFUSE and FUSE-T have no /dev/fuse; go-fuse finds them itself.
func checkFUSEDevice() error { return nil }
