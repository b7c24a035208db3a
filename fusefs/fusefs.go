// Package fusefs serves an ext4.FS read-only through FUSE.
//
// It speaks go-fuse's raw protocol API: the FUSE node ID of every file is its
// ext4 inode number (the kernel's root node ID 1 stands for ext4.RootIno), so
// the server keeps no node tree in memory and st_ino matches the kernel's own
// ext4 driver. The image is immutable, so entries and attributes are cached by
// the kernel for a long time and file data stays in the page cache across
// opens.
package fusefs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configure a mount.
type Options struct {
	// AllowOther lets users other than the mounting one see the files
	// (mount option allow_other; needs user_allow_other in /etc/fuse.conf
	// when not root).
	AllowOther bool
	// Debug logs every FUSE request at slog's debug level: the operation,
	// node IDs, offsets and sizes, the result and the time taken; never
	// file data, names, link targets, directory entries or xattrs.
	Debug bool
	// UnsafeTraceContent turns on go-fuse's own request trace, which prints
	// names, link targets, directory entries and the first bytes of file
	// data: whoever reads the logs reads the image. For test images only.
	UnsafeTraceContent bool
	// FsName is the mount source shown in /proc/mounts and df; default "chestfs".
	FsName string
	// Name is the subtype: the type shows as "fuse.<Name>"; default "chestfs".
	Name string
	// Observe, when set, is called once per FUSE request after it is
	// answered, from the serving goroutines (concurrently): the operation
	// as the Debug trace names it ("lookup", "read", "getattr"...), the
	// time taken, the bytes of file data returned (reads only, else 0),
	// and nil or the syscall.Errno answered. For metrics; it must be fast.
	Observe func(op string, d time.Duration, n int, err error)
	// KeepXattrs answers GETXATTR from the image even when no inode has
	// an xattr. By default such an image says ENOSYS once, so that the
	// kernel stops asking (getxattr then fails with EOPNOTSUPP rather
	// than ENODATA).
	KeepXattrs bool
	// NoSiblingPush turns off pushing the next small files of a directory
	// into the kernel's page cache while a program reads them in turn
	// (see siblings.go).
	NoSiblingPush bool
}

const (
	// maxRead is the largest READ request the kernel sends (max_read,
	// MaxPages). 1 MiB is the kernel's default fuse max_pages_limit.
	maxRead = 1 << 20
	// readAheadKB is what the mount's backing device readahead is raised to;
	// the kernel starts FUSE mounts at 128 KiB and INIT can only lower it.
	readAheadKB = 1024
	// maxBackground bounds concurrent asynchronous (readahead) requests.
	maxBackground = 64
)

// directMount makes root mount with mount(2) and others (or root, should
// that fail) through fusermount3; tests turn it off to exercise fusermount3.
var directMount = true

// Server is a live mount.
type Server struct {
	srv        *fuse.Server
	raw        *rawFS
	mountpoint string
	done       chan struct{}
}

// Mount mounts fsys read-only at mountpoint and serves it in the background.
// It returns once the kernel answers requests on the mount point. As root it
// mounts directly; otherwise it falls back to fusermount3.
func Mount(fsys *ext4.FS, mountpoint string, opts Options) (*Server, error) {
	if fsys == nil {
		return nil, errors.New("fusefs: nil filesystem")
	}
	return mount(fsys, mountpoint, opts)
}

func mount(fsys filesystem, mountpoint string, opts Options) (*Server, error) {
	if opts.Name == "" {
		opts.Name = "chestfs"
	}
	if opts.FsName == "" {
		opts.FsName = "chestfs"
	}
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount point %s: %w", mountpoint, err)
	}
	if st, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("fusefs: mount point: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("fusefs: mount point %s is not a directory", abs)
	}

	mo := &fuse.MountOptions{
		AllowOther: opts.AllowOther,
		// default_permissions: the kernel checks access from our modes (and,
		// with EnableAcl, from the POSIX ACL xattrs) exactly as ext4 would.
		Options:       []string{"ro", "default_permissions"},
		FsName:        opts.FsName,
		Name:          opts.Name,
		Debug:         opts.UnsafeTraceContent,
		Logger:        slog.NewLogLogger(slog.Default().Handler(), slog.LevelInfo),
		MaxWrite:      maxRead,
		MaxReadAhead:  maxRead,
		MaxBackground: maxBackground,
		DirectMount:   directMount,
		// Data comes from memory: splicing would only add a pipe copy (and
		// 1 MiB replies exceed the default pipe size).
		DisableSplice: true,
		// The direct mount takes nosuid/nodev/ro as flags, not option strings.
		DirectMountFlags:     directMountFlags,
		EnableAcl:            true,
		EnableSymlinkCaching: true,
		// Like libfuse: READDIRPLUS for the first batch and when the caller
		// also stats the entries (ls -l), plain READDIR otherwise.
		ExtraCapabilities: fuse.CAP_READDIRPLUS_AUTO,
	}
	raw := newRawFS(fsys)
	raw.noPush = opts.NoSiblingPush
	var served fuse.RawFileSystem = raw
	if opts.Debug || opts.Observe != nil {
		served = &tracedFS{rawFS: raw, log: opts.Debug, observe: opts.Observe}
	}
	srv, err := fuse.NewServer(served, abs, mo)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", abs, err)
	}
	s := &Server{srv: srv, raw: raw, mountpoint: abs, done: make(chan struct{})}
	go func() {
		srv.Serve()
		close(s.done)
	}()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("fusefs: mount %s: %w", abs, err)
	}
	raiseReadAhead(abs)
	if !opts.KeepXattrs {
		go raw.scanXattrs()
	}
	return s, nil
}

// Mountpoint returns the absolute mount point.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Unmount detaches the mount and waits until the serve loop has stopped.
// It fails (and the mount stays) while files on it are open.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		return fmt.Errorf("fusefs: unmount %s: %w", s.mountpoint, err)
	}
	s.Wait()
	return nil
}

// Wait blocks until the mount is gone (unmounted by Unmount, fusermount3 -u
// or umount) and the server has stopped.
func (s *Server) Wait() {
	<-s.done
}
