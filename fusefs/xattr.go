package fusefs

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Extended attributes: GETXATTR and LISTXATTR, through a name cache.

// scanXattrs sets noXattrs when the filesystem can say that no inode has an
// xattr. It runs in the background after the mount is up: until it ends,
// GETXATTR is answered from the image as usual.
func (r *rawFS) scanXattrs() {
	s, ok := r.fs.(interface{ NoXattrs() (bool, error) })
	if !ok {
		return
	}
	none, err := s.NoXattrs()
	if err != nil {
		slog.Debug("fusefs: xattr scan", "err", err)
		return
	}
	r.noXattrs.Store(none)
}

// maxXattrCache bounds the xattr name cache (about 40 bytes an inode
// without xattrs); when full it starts over.
const maxXattrCache = 1 << 18

// copyOut implements the xattr size protocol: an empty buffer asks for the
// size, a short one gets ERANGE with the size needed.
func copyOut(dest, data []byte) (uint32, fuse.Status) {
	if len(dest) == 0 || len(dest) < len(data) {
		return uint32(len(data)), fuse.ERANGE
	}
	return uint32(copy(dest, data)), fuse.OK
}

// xattrList returns ino's xattr names, through the cache.
func (r *rawFS) xattrList(ino uint64) ([]string, error) {
	r.xattrMu.Lock()
	names, ok := r.xattrNames[ino]
	r.xattrMu.Unlock()
	if ok {
		return names, nil
	}
	names, err := r.fs.ListXattr(ino)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{} // cached as "none", distinct from a miss
	}
	r.xattrMu.Lock()
	if len(r.xattrNames) >= maxXattrCache {
		clear(r.xattrNames)
	}
	r.xattrNames[ino] = names
	r.xattrMu.Unlock()
	return names, nil
}

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if r.noXattrs.Load() {
		// The image has none at all: ENOSYS makes the kernel stop asking
		// (getxattr then fails with EOPNOTSUPP, as on a filesystem without
		// xattr support, and ACL checks fall back to the mode bits), which
		// saves ls -l two requests per entry, cold or warm.
		return 0, fuse.ENOSYS
	}
	ino := inoOf(h.NodeId)
	// A name the inode does not list is answered without reading it again.
	// Should listing fail, GetXattr below reports why.
	if names, err := r.xattrList(ino); err == nil && !slices.Contains(names, attr) {
		return 0, fuse.ENODATA
	}
	data, err := r.fs.GetXattr(ino, attr)
	if err != nil {
		return 0, r.status("getxattr", ino, err)
	}
	if len(data) == 0 {
		return 0, fuse.OK
	}
	return copyOut(dest, data)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	ino := inoOf(h.NodeId)
	names, err := r.xattrList(ino)
	if err != nil {
		return 0, r.status("listxattr", ino, err)
	}
	var b []byte
	for _, n := range names {
		// As ext4 does, list trusted.* only to the privileged.
		if h.Uid != 0 && strings.HasPrefix(n, "trusted.") {
			continue
		}
		b = append(b, n...)
		b = append(b, 0)
	}
	if len(b) == 0 {
		return 0, fuse.OK
	}
	return copyOut(dest, b)
}
