package fusefs

import "github.com/hanwen/go-fuse/v2/fuse"

// StatFs reports the superblock's counts, as the kernel's ext4 does for a
// read-only mount.
func (r *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	s := r.fs.Statfs()
	*out = fuse.StatfsOut{
		Blocks:  s.Blocks,
		Bfree:   s.BFree,
		Bavail:  s.BAvail,
		Files:   s.Files,
		Ffree:   s.FFree,
		Bsize:   s.BlockSize,
		NameLen: s.NameLen,
		Frsize:  s.BlockSize,
	}
	return fuse.OK
}
