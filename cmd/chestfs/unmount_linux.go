package main

import "syscall"

// mntDetach: lazy unmount, which succeeds while files are still open.
const mntDetach = syscall.MNT_DETACH
