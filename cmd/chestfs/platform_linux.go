package main

import (
	"errors"
	"os"
	"syscall"
)

// mntDetach: lazy unmount, which succeeds while files are still open.
const mntDetach = syscall.MNT_DETACH

// checkFUSEDevice says, before any key is released, that a mount cannot
// happen for want of /dev/fuse.
func checkFUSEDevice() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("there is no /dev/fuse: the container needs the FUSE device " +
			"(docker/podman run --device /dev/fuse; Kubernetes: a FUSE device plugin)")
	}
	return nil
}
