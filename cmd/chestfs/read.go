package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/extract"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list a directory of the image, ls -la style (no FUSE needed)",
		ArgsUsage: "SOURCE [PATH]",
		Flags:     openFlags(),
		Action:    lsCmd,
	}
}

func catCommand() *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "write a file of the image to standard output (no FUSE needed)",
		ArgsUsage: "SOURCE PATH",
		Flags:     openFlags(),
		Action:    catCmd,
	}
}

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:      "extract",
		Usage:     "copy the whole tree out of the image (sparse files stay sparse; owners, devices and set-id bits only when asked)",
		ArgsUsage: "SOURCE DESTDIR",
		Flags: append(openFlags(),
			&cli.BoolFlag{Name: "same-owner", Category: "Extract", Usage: "set owners and security.*/trusted.* xattrs as in the image (root)"},
			&cli.BoolFlag{Name: "devices", Category: "Extract", Usage: "create device nodes (root)"},
			&cli.BoolFlag{Name: "preserve-setid", Category: "Extract", Usage: "keep setuid/setgid bits and file capabilities"},
			&cli.BoolFlag{Name: "preserve", Category: "Extract", Usage: "all three of --same-owner, --devices, --preserve-setid"},
			quietFlag(),
		),
		Action: extractCmd,
	}
}

// notInImage is a path the image does not hold.
type notInImage struct{ path string }

func (e notInImage) Error() string {
	return e.path + ": no such file or directory (does not exist in the image)"
}
func (e notInImage) Unwrap() error { return fs.ErrNotExist }

// resolve is ext4's path resolver with errors that name the path, not inodes.
func resolve(fsys *ext4.FS, p string, follow ext4.FollowMode) (uint64, error) {
	ino, err := fsys.Resolve(p, follow)
	switch {
	case err == nil:
		return ino, nil
	case errors.Is(err, fs.ErrNotExist):
		return 0, notInImage{p}
	case errors.Is(err, ext4.ErrNotDir):
		return 0, fmt.Errorf("%s: a component of the path is not a directory", p)
	case errors.Is(err, ext4.ErrLoop):
		return 0, fmt.Errorf("%s: %w", p, ext4.ErrLoop)
	}
	return 0, fmt.Errorf("%s: %w", p, err)
}

func lsCmd(c *cli.Context) error {
	return withFS(c, []string{"SOURCE", "[PATH]"}, ls)
}

func ls(a []string, fsys *ext4.FS) error {
	p := "/"
	if len(a) > 1 {
		p = a[1]
	}
	ino, err := resolve(fsys, p, ext4.NoFollow)
	if err != nil {
		return err
	}
	st, err := fsys.Stat(ino)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return lsLine(w, fsys, st, path.Base(p))
	}
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	if err := lsLine(w, fsys, st, "."); err != nil {
		return err
	}
	parent, err := fsys.Lookup(ino, "..")
	if err != nil {
		parent = ino
	}
	if pst, err := fsys.Stat(parent); err == nil {
		lsLine(w, fsys, pst, "..")
	}
	for _, e := range ents {
		est, err := fsys.Stat(e.Ino)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chestfs: %s: %v\n", e.Name, err)
			continue
		}
		if err := lsLine(w, fsys, est, e.Name); err != nil {
			return err
		}
	}
	return nil
}

// lsLine prints one entry as `ls -la --time-style=long-iso` would, with numeric owners.
func lsLine(w io.Writer, fsys *ext4.FS, st ext4.Stat, name string) error {
	size := fmt.Sprint(st.Size)
	if t := st.Mode & syscall.S_IFMT; t == syscall.S_IFCHR || t == syscall.S_IFBLK {
		size = fmt.Sprintf("%d, %d", devMajor(uint64(st.Rdev)), devMinor(uint64(st.Rdev)))
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		if target, err := fsys.Readlink(st.Ino); err == nil {
			name += " -> " + target
		}
	}
	_, err := fmt.Fprintf(w, "%s %3d %5d %5d %8s %s %s\n", modeString(st.Mode), st.Nlink, st.Uid, st.Gid, size,
		st.Mtime.Local().Format("2006-01-02 15:04"), name)
	return err
}

// modeString renders st_mode like ls(1), including setuid/setgid/sticky.
func modeString(m uint32) string {
	b := []byte("?rwxrwxrwx")
	switch m & syscall.S_IFMT {
	case syscall.S_IFREG:
		b[0] = '-'
	case syscall.S_IFDIR:
		b[0] = 'd'
	case syscall.S_IFLNK:
		b[0] = 'l'
	case syscall.S_IFCHR:
		b[0] = 'c'
	case syscall.S_IFBLK:
		b[0] = 'b'
	case syscall.S_IFIFO:
		b[0] = 'p'
	case syscall.S_IFSOCK:
		b[0] = 's'
	}
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	special := func(pos int, bit uint32, set, unset byte) {
		if m&bit != 0 {
			if b[pos] == '-' {
				b[pos] = unset
			} else {
				b[pos] = set
			}
		}
	}
	special(3, syscall.S_ISUID, 's', 'S')
	special(6, syscall.S_ISGID, 's', 'S')
	special(9, syscall.S_ISVTX, 't', 'T')
	return string(b)
}

// withFS checks the arguments, opens the filesystem of the first one (the
// source) and runs fn on it.
func withFS(c *cli.Context, usage []string, fn func(a []string, fsys *ext4.FS) error) error {
	a, err := args(c, usage...)
	if err != nil {
		return err
	}
	cfg, err := openConfigFrom(c, a[0])
	if err != nil {
		return err
	}
	o, err := open(c.Context, cfg, wantFS)
	if err != nil {
		return err
	}
	defer o.Close()
	return fn(a, o.fs)
}

func catCmd(c *cli.Context) error {
	return withFS(c, []string{"SOURCE", "PATH"}, cat)
}

func cat(a []string, fsys *ext4.FS) error {
	ino, err := resolve(fsys, a[1], ext4.Follow)
	if err != nil {
		return err
	}
	st, err := fsys.Stat(ino)
	if err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return fmt.Errorf("%s: is a directory", a[1])
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("%s: not a regular file", a[1])
	}
	r := io.NewSectionReader(inodeReader{fsys, ino}, 0, int64(st.Size))
	if _, err := io.CopyBuffer(os.Stdout, r, make([]byte, 1<<20)); err != nil && !errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%s: %w", a[1], err)
	}
	return nil
}

// inodeReader adapts one inode of an ext4.FS to io.ReaderAt.
type inodeReader struct {
	fsys *ext4.FS
	ino  uint64
}

func (r inodeReader) ReadAt(p []byte, off int64) (int, error) { return r.fsys.ReadAt(r.ino, p, off) }

func extractCmd(c *cli.Context) error {
	return withFS(c, []string{"SOURCE", "DESTDIR"}, func(a []string, fsys *ext4.FS) error {
		all := c.Bool("preserve")
		opts := extract.Options{
			SameOwner:     all || c.Bool("same-owner"),
			Devices:       all || c.Bool("devices"),
			PreserveSetID: all || c.Bool("preserve-setid"),
		}
		prog := progressFor(c, "chestfs extract")
		opts.Progress = prog
		start := time.Now()
		res, err := extract.Extract(c.Context, fsys, a[1], opts)
		prog.Flush()
		if err == nil || res.Entries > 0 {
			prog.Summary(fmt.Sprintf("extracted %d entries to %s", res.Entries, a[1]), res.Bytes, time.Since(start))
		}
		return err
	})
}
