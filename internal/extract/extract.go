// Package extract copies a whole ext4 tree onto the local filesystem,
// preserving what the kernel would show: modes, times, symlinks, hard links,
// xattrs, sparse files, and, when asked, owners, device nodes and set-id bits.
//
// The image is untrusted. As tar does, what would hand out privileges on the
// local machine (owners, device nodes, setuid/setgid bits, file
// capabilities) is recreated only when asked, even for root; each directory
// inode is entered once and depth is bounded, so that a crafted directory
// loop ends with an error instead of filling the disk.
package extract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/internal/progress"
	syscall "github.com/chestfs/chestfs/internal/sysabi" // ext4 modes: Linux values on every host
)

// Options choose what is preserved beyond content, modes and times. The
// zero value is safe for untrusted images, also as root: files belong to
// the extracting user, device nodes and sockets are skipped, and setuid and
// setgid bits are cleared.
type Options struct {
	// SameOwner sets uids/gids (tar --same-owner) and writes security.* and
	// trusted.* xattrs (except security.capability): needs root.
	SameOwner bool
	// Devices creates character and block device nodes (needs root) and
	// socket nodes. FIFOs are always created.
	Devices bool
	// PreserveSetID keeps setuid and setgid bits and security.capability
	// xattrs (tar --preserve-permissions for set-id bits).
	PreserveSetID bool
	// Report is called for each entry that could not be extracted (as
	// tar, extraction goes on with the next one). path is the entry's
	// path inside the image, raw bytes that may not be printable; err is
	// an *EntryError whose Error() is one printable line naming the path
	// escaped. Nil: each is logged with slog.Warn.
	Report func(path string, err error)
	// Progress receives progress (internal/progress): bytes written and
	// entries, against an estimate of the data from the superblock; a bar
	// if it is a terminal, a line every 5 s otherwise; a *progress.Printer
	// is used as it is; nil is quiet.
	Progress io.Writer
}

// Result is what Extract wrote.
type Result struct {
	Entries int   // files, directories, links, nodes created
	Bytes   int64 // file data written (holes not counted)
}

// EntryError is one entry that could not be extracted.
type EntryError struct {
	Path string // inside the image, raw
	Err  error
}

// Error is one printable line: the path quoted and the cause's text with
// anything unprintable escaped (a symlink target of NUL bytes must not
// reach a terminal raw), cut to a bounded length.
func (e *EntryError) Error() string {
	return "extract: " + quoteName(e.Path) + ": " + printable(cause(e.Err))
}

func (e *EntryError) Unwrap() error { return e.Err }

// IncompleteError is what Tree returns when some entries could not be
// extracted (each was reported); it unwraps to the first one's cause.
type IncompleteError struct {
	Failed int         // entries not extracted
	First  *EntryError // the first of them
}

func (e *IncompleteError) Error() string {
	what := "entries"
	if e.Failed == 1 {
		what = "entry"
	}
	return fmt.Sprintf("extract: %d %s could not be extracted (first: %s)", e.Failed, what,
		strings.TrimPrefix(e.First.Error(), "extract: "))
}

func (e *IncompleteError) Unwrap() error { return e.First }

// maxLine bounds the text of one reported cause.
const maxLine = 512

// quoteName quotes a path as strconv.Quote does, cut to about maxLine
// bytes of output.
func quoteName(p string) string {
	q, cut := quoteCut(p)
	if cut {
		return q + "..."
	}
	return q
}

// printable escapes what strconv.Quote escapes, without the quotes, cut
// to about maxLine bytes of output.
func printable(s string) string {
	q, cut := quoteCut(s)
	q = strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
	if cut {
		q += "..."
	}
	return q
}

// quoteCut quotes the longest prefix of s (halving) whose quoted form
// fits maxLine bytes.
func quoteCut(s string) (string, bool) {
	n := len(s)
	q := strconv.Quote(s)
	for len(q) > maxLine {
		n /= 2
		q = strconv.Quote(s[:n])
	}
	return q, n < len(s)
}

// cause describes err without the paths and link targets that the os
// package puts in its messages (raw bytes from the image): the operation
// and the errno, with the rest of the chain's own text.
func cause(err error) string {
	if m, ok := err.(*multiError); ok {
		return m.Error()
	}
	var le *os.LinkError
	var pe *os.PathError
	switch {
	case errors.As(err, &le):
		return le.Op + ": " + le.Err.Error()
	case errors.As(err, &pe):
		return pe.Op + ": " + pe.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "extract: ")
}

// MaxDepth bounds directory nesting: deeper trees end with an error. At
// 1024 levels of one-letter names the path stays within PATH_MAX (4096),
// so the bound, not ENAMETOOLONG, is what stops a deep tree.
const MaxDepth = 1024

// ErrLoop means a directory inode was reached a second time: a directory
// hard link, which a crafted image can point at its own ancestor.
var ErrLoop = errors.New("directory reached twice (directory hard link or loop)")

// ErrTooDeep means directories nest deeper than MaxDepth.
var ErrTooDeep = fmt.Errorf("directories nest deeper than %d levels", MaxDepth)

type extractor struct {
	ctx    context.Context
	fsys   *ext4.FS
	opts   Options
	links  map[uint64]string // first path of each inode with nlink > 1
	dirs   map[uint64]string // path of each directory entered
	depth  int
	warned map[string]bool
	buf    []byte
	n      int
	bytes  int64
	task   *progress.Task
	failed int
	first  *EntryError
}

// fail reports an entry that could not be extracted; rel is its path in
// the image.
func (x *extractor) fail(rel string, err error) {
	e := &EntryError{Path: rel, Err: err}
	x.failed++
	if x.first == nil {
		x.first = e
	}
	if x.opts.Report != nil {
		x.opts.Report(rel, e)
		return
	}
	slog.Warn(e.Error())
}

// Tree is Extract returning the number of entries written.
func Tree(ctx context.Context, fsys *ext4.FS, dest string, opts Options) (int, error) {
	r, err := Extract(ctx, fsys, dest, opts)
	return r.Entries, err
}

// Extract extracts the whole filesystem into dest (created if missing,
// must be empty if it exists). An entry that cannot be extracted (a read
// error, or a write error on the destination) is reported through
// opts.Report and skipped, a directory with its subtree; the error at the
// end is then an *IncompleteError.
func Extract(ctx context.Context, fsys *ext4.FS, dest string, opts Options) (Result, error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return Result{}, err
	}
	if ents, err := os.ReadDir(dest); err != nil {
		return Result{}, err
	} else if len(ents) > 0 {
		return Result{}, fmt.Errorf("extract: %s is not empty", dest)
	}
	x := &extractor{ctx: ctx, fsys: fsys, opts: opts, links: map[uint64]string{}, dirs: map[uint64]string{},
		buf: make([]byte, 1<<20)}
	st, err := fsys.Stat(ext4.RootIno)
	if err != nil {
		return Result{}, err
	}
	prog := progress.For(opts.Progress, "chestfs extract")
	defer prog.Flush()
	x.task = prog.Start("extracting", dataEstimate(fsys)).Items("entries")
	defer x.task.Stop() // after a cancellation; nothing after Done
	x.dirs[ext4.RootIno] = dest
	if err := x.dir(ext4.RootIno, dest, "/"); err != nil {
		return x.result(), err
	}
	if err := x.meta(dest, st); err != nil {
		x.fail("/", err)
	}
	x.task.Done()
	if x.failed > 0 {
		return x.result(), &IncompleteError{Failed: x.failed, First: x.first}
	}
	return x.result(), nil
}

func (x *extractor) result() Result { return Result{Entries: x.n, Bytes: x.bytes} }

// created counts an entry made.
func (x *extractor) created() {
	x.n++
	x.task.AddItems(1)
}

// dataEstimate is about the file data in fsys, for progress: the blocks
// in use, as statfs(2) counts them (the journal, inode tables and other
// metadata left out).
func dataEstimate(fsys *ext4.FS) int64 {
	s := fsys.Statfs()
	return int64(s.Blocks-s.BFree) * int64(s.BlockSize)
}

// dir extracts the entries of directory ino into dst; rel is its path in
// the image. Only a cancelled context ends it early.
func (x *extractor) dir(ino uint64, dst, rel string) error {
	if x.depth >= MaxDepth {
		x.fail(rel, ErrTooDeep)
		return nil
	}
	x.depth++
	defer func() { x.depth-- }()
	ents, err := x.fsys.ReadDir(ino)
	if err != nil {
		x.fail(rel, err)
		return nil
	}
	for _, e := range ents {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		erel := path.Join(rel, e.Name)
		if e.Name == "" || strings.ContainsRune(e.Name, '/') || e.Name == "." || e.Name == ".." {
			x.fail(path.Join(rel, e.Name), fmt.Errorf("unsafe entry name %q", e.Name))
			continue
		}
		if err := x.entry(e.Ino, filepath.Join(dst, e.Name), erel); err != nil {
			return err
		}
	}
	return nil
}

// entry extracts one entry (a directory with its subtree); its own
// failures are reported, only a cancelled context is returned.
func (x *extractor) entry(ino uint64, p, rel string) error {
	st, err := x.fsys.Stat(ino)
	if err != nil {
		x.fail(rel, err)
		return nil
	}
	typ := st.Mode & syscall.S_IFMT
	if typ == syscall.S_IFDIR {
		return x.subdir(ino, p, rel, st)
	}
	if st.Nlink > 1 {
		if first, ok := x.links[ino]; ok {
			if err := os.Link(first, p); err != nil {
				x.fail(rel, err)
			} else {
				x.created()
			}
			return nil
		}
	}
	created, err := x.create(ino, p, rel, st)
	if err != nil {
		x.fail(rel, err)
		return nil
	}
	if !created {
		return nil
	}
	x.created()
	if st.Nlink > 1 {
		x.links[ino] = p
	}
	if err := x.meta(p, st); err != nil {
		x.fail(rel, err)
	}
	return nil
}

// subdir creates directory p and extracts its subtree, then its metadata
// (last: a read-only mode would stop its own filling).
func (x *extractor) subdir(ino uint64, p, rel string, st ext4.Stat) error {
	if first, ok := x.dirs[ino]; ok {
		// Checked before Mkdir, so that a loop leaves no empty directory.
		x.fail(rel, fmt.Errorf("inode %d: %w: already extracted as %s", ino, ErrLoop, quoteName(first)))
		return nil
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		x.fail(rel, err)
		return nil
	}
	x.dirs[ino] = p
	x.created()
	if err := x.dir(ino, p, rel); err != nil {
		return err
	}
	if err := x.meta(p, st); err != nil {
		x.fail(rel, err)
	}
	return nil
}

// create makes a non-directory entry; false when it is skipped on purpose.
func (x *extractor) create(ino uint64, p, rel string, st ext4.Stat) (bool, error) {
	typ := st.Mode & syscall.S_IFMT
	switch typ {
	case syscall.S_IFREG:
		return true, x.file(ino, p, st.Size)
	case syscall.S_IFLNK:
		target, err := x.fsys.Readlink(ino)
		if err != nil {
			return false, err
		}
		if target == "" {
			return false, errors.New("empty symbolic link target")
		}
		return true, os.Symlink(target, p)
	case syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
		if typ != syscall.S_IFIFO && !x.opts.Devices {
			x.skipped("device node or socket", rel)
			return false, nil
		}
		// Created 0600; meta sets the final mode, set-id bits filtered.
		if err := mknod(p, typ|0o600, int(st.Rdev)); err != nil {
			return false, &os.PathError{Op: "mknod", Path: p, Err: err}
		}
		return true, nil
	}
	return false, fmt.Errorf("unknown file type %#o", typ)
}

// file copies content, seeking over all-zero blocks so sparse files stay sparse.
func (x *extractor) file(ino uint64, p string, size uint64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	zero := make([]byte, 4096)
	for off := uint64(0); off < size; {
		n := uint64(len(x.buf))
		if size-off < n {
			n = size - off
		}
		chunk := x.buf[:n]
		got, err := x.fsys.ReadAt(ino, chunk, int64(off))
		if uint64(got) != n {
			if err == nil {
				err = errors.New("short read")
			}
			return err
		}
		var written int64
		for i := 0; i < len(chunk); i += len(zero) {
			end := min(i+len(zero), len(chunk))
			if bytes.Equal(chunk[i:end], zero[:end-i]) {
				continue
			}
			if _, err := f.WriteAt(chunk[i:end], int64(off)+int64(i)); err != nil {
				return err
			}
			written += int64(end - i)
		}
		x.bytes += written
		x.task.Add(written)
		off += n
	}
	if err := f.Truncate(int64(size)); err != nil {
		return err
	}
	return f.Close()
}

// skipped notes, once per kind, what was left out for want of an option.
func (x *extractor) skipped(what, p string) {
	if x.warned == nil {
		x.warned = map[string]bool{}
	}
	if !x.warned[what] {
		x.warned[what] = true
		slog.Debug("extract: skipped (not asked to preserve it)", "what", what, "first", quoteName(p))
	}
}

// xattrAllowed says whether xattr name may be written under the options:
// file capabilities are privileges like setuid bits, and the other
// security.* and trusted.* names belong with owners (and need root).
func (x *extractor) xattrAllowed(name string) bool {
	switch {
	case name == "security.capability":
		return x.opts.PreserveSetID
	case strings.HasPrefix(name, "security."), strings.HasPrefix(name, "trusted."):
		return x.opts.SameOwner
	}
	return true
}

// joinErrs joins errors into one whose text stays on one line.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return &multiError{errs}
}

type multiError struct{ errs []error }

func (m *multiError) Error() string {
	parts := make([]string, len(m.errs))
	for i, e := range m.errs {
		parts[i] = cause(e)
	}
	return strings.Join(parts, "; ")
}

func (m *multiError) Unwrap() []error { return m.errs }
