package fusefs

import "github.com/hanwen/go-fuse/v2/fuse"

// capNoOpendir is FUSE_NO_OPENDIR_SUPPORT: the kernel may skip OPENDIR.
const capNoOpendir = fuse.CAP_NO_OPENDIR_SUPPORT
