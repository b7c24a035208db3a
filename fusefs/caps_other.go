//go:build !linux

package fusefs

// capNoOpendir: macFUSE and FUSE-T do not offer FUSE_NO_OPENDIR_SUPPORT
// (go-fuse defines it for Linux and FreeBSD only), so every directory is
// opened.
const capNoOpendir = 0
