// Package pack creates a LUKS2-encrypted ext4 image from a directory without
// privileges and without dm-crypt: `chestfs pack --key-file F DIR IMAGE`.
//
// The ext4 file system is built by e2fsprogs (`mkfs.ext4 -d DIR -b 4096`,
// which runs as an ordinary user) into a sparse temporary file beside IMAGE;
// the LUKS2 header is written in process and the ext4 data is encrypted in
// process (1 MiB at a time, on all cores) into a temporary file that is
// fsynced and renamed to IMAGE at the end. A failure or a cancelled context
// leaves neither IMAGE nor a temporary file.
//
// The result is what `cryptsetup luksFormat --type luks2 --sector-size 4096
// --cipher aes-xts-plain64 --key-size 512` on a file of the same size, then
// copying the file system in, would give: two 16 KiB headers (sha256
// checksums), one keyslot (argon2id by default, or pbkdf2-sha256; AF split
// with 4000 stripes; area at 32 KiB), a pbkdf2-sha256 digest, and one
// segment aes-xts-plain64 at 16 MiB with 4096-byte sectors and size
// "dynamic". The keyslot KDF costs are fixed, not benchmarked: see
// DefaultArgon2Time and DefaultArgon2MemoryKiB.
//
// Ownership: mkfs.ext4 -d copies owner, mode, times, symlinks, hard links,
// extended attributes, device nodes and holes from DIR (atime and mtime
// get their nanoseconds here, which e2fsprogs before 1.47.1 drops; ctime is
// the packing time). Run as root, the image therefore has DIR's owners and device nodes;
// run as a user, it has the owners that user sees. Options.Owner maps every
// inode to one UID:GID. The root directory gets DIR's mode, owner and mtime
// (mkfs.ext4 1.47 itself would not copy them).
//
// For the CLI (`chestfs pack`), the options map naturally to flags:
//
//	--key-file F          Options.Key = the file's bytes, exactly (as cryptsetup --key-file)
//	--new-key F           WriteNewKey(F): 32 random bytes, mode 0600, F must not exist; then use them as the key
//	--size SIZE           Options.Size = ParseSize(SIZE): the whole image, header included (e.g. 64M like the sidecar)
//	--headroom H          Options.Headroom = H, e.g. "20%+16M" (the default) when no --size
//	--pbkdf argon2id|argon2i|pbkdf2, --iterations N, --pbkdf-memory KiB, --pbkdf-parallel N
//	                      Options.PBKDF, Iterations, MemoryKiB, Parallel (the sidecar's recipe: --pbkdf pbkdf2 --iterations 1000)
//	--owner UID:GID       Options.Owner = ParseOwner(...)
//	--label L             Options.Label
//	--force               Options.Overwrite (otherwise an existing IMAGE is an error wrapping fs.ErrExist)
//	-q, --quiet           Options.Progress = nil; otherwise os.Stderr or a *progress.Printer
//	                      (a bar on a terminal, a line every 5 s elsewhere)
//
// and the context should be cancelled on SIGINT/SIGTERM.
package pack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/blockdev/verity"
	"github.com/chestfs/chestfs/internal/progress"
	"github.com/chestfs/chestfs/xts"
)

// Default keyslot KDF costs. They are fixed rather than benchmarked, so an
// image unlocks in about the same time everywhere (a fraction of a second in
// cryptsetup and in chestfs): argon2id with RFC 9106's second recommended
// setting (64 MiB, 4 lanes) and 4 passes, cryptsetup's minimum for argon2.
// For a keyfile of 32 random bytes the KDF cost hardly matters; for a human
// passphrase, raise MemoryKiB (cryptsetup itself uses up to 1 GiB).
const (
	DefaultArgon2Time      = 4
	DefaultArgon2MemoryKiB = 64 * 1024
	DefaultArgon2Parallel  = defaultParallel
	DefaultPBKDF2Iter      = 600000  // OWASP's 2023 figure for PBKDF2-HMAC-SHA256
	DigestIterations       = 1000    // the volume key is 512 random bits: cryptsetup's minimum suffices
	MaxKeySize             = 8 << 20 // cryptsetup's default keyfile size limit
	minExt4Size            = 1 << 20
	minAutoExt4Size        = 8 << 20
	chunkSize              = 1 << 20
)

// HeaderSize is the space before the encrypted ext4 in an image: both LUKS2
// header copies and the keyslots area (cryptsetup's default data offset).
const HeaderSize = dataOffset

// Options says what to pack and how.
type Options struct {
	Dir   string // source directory
	Image string // output file; written under a temporary name and renamed at the end
	Key   []byte // the LUKS passphrase (keyfile bytes, as cryptsetup --key-file reads them)

	// Size of the whole image in bytes, LUKS header (16 MiB) included; a
	// multiple of 4096. 0 sizes it from DIR plus Headroom.
	Size int64
	// Headroom when Size is 0, e.g. "20%+16M" (the default, ""), "50%", "100M".
	Headroom string

	// PBKDF of the keyslot: "argon2id" (default), "argon2i" or "pbkdf2".
	PBKDF string
	// Iterations: argon2 passes (default 4, at least 4) or pbkdf2-sha256
	// iterations (default 600000, at least 1000; the Azure encfs sidecar's
	// images use pbkdf2 with 1000).
	Iterations int
	MemoryKiB  int // argon2 memory in KiB (default 65536; 32 .. 4 GiB)
	Parallel   int // argon2 lanes (default 4; 1 .. 4)

	Owner *[2]uint32 // if set, every inode gets this UID, GID
	Label string     // LUKS2 label (at most 47 bytes)

	// Progress receives progress (internal/progress): a bar with bytes,
	// rate and ETA if it is a terminal, a line every 5 s otherwise; a
	// *progress.Printer is used as it is (its mode, prefix, quiet); nil is
	// quiet.
	Progress io.Writer
	// Overwrite allows replacing an existing IMAGE; otherwise Pack fails
	// with an error wrapping fs.ErrExist.
	Overwrite bool
	// TempDir holds the intermediate ext4 file (mode 0600, sparse, as
	// large as the file system); default the directory of IMAGE. It is
	// plaintext: where DIR is secret, put it on tmpfs or an encrypted disk.
	TempDir string
	// Mkfs is the mkfs.ext4 program; default found in PATH, /usr/sbin, /sbin.
	Mkfs string
	// Verity appends a dm-verity hash tree over the encrypted image (LUKS
	// header included; veritysetup's --hash-offset layout) and gives the
	// LUKS2 data segment a fixed size, so that cryptsetup and the kernel
	// see the same volume as without the tree. The root hash is in Result.
	Verity bool
}

// Result is what Pack made.
type Result struct {
	// Size of the image in bytes, the tree included.
	Size int64
	// UUID of the LUKS2 header (as cryptsetup luksUUID prints it).
	UUID string
	// VerityRoot is the tree's root hash (nil without Options.Verity).
	VerityRoot []byte
	// Verity is the tree's parameters (nil without Options.Verity).
	Verity *verity.Params
}

// ErrNoSpace is wrapped when DIR does not fit the requested Size.
var ErrNoSpace = errors.New("pack: contents do not fit the image size")

// test hooks
var (
	afterChunkHook func()
	afterMkfsHook  func()
)

// Pack builds IMAGE from DIR as described in the package comment. On any
// failure, including ctx being cancelled, neither IMAGE nor a temporary
// file is left behind.
func Pack(ctx context.Context, opts Options) (*Result, error) {
	job, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	prog := progress.For(opts.Progress, "chestfs pack")
	defer prog.Flush()

	ext4File, err := os.CreateTemp(job.tmpDir, ".chestfs-pack-*.ext4")
	if err != nil {
		return nil, fmt.Errorf("pack: temporary file: %w", err)
	}
	ext4Path := ext4File.Name()
	defer os.Remove(ext4Path)
	ext4File.Close()

	ext4Size, err := job.buildExt4(ctx, ext4Path, prog)
	if err != nil {
		return nil, err
	}
	if err := fixInodes(ctx, ext4Path, ext4Size, job.dir, job.dirInfo, opts.Owner); err != nil {
		return nil, err
	}

	volumeKey := randBytes(volumeKeySize)
	defer clear(volumeKey)
	prog.Step("writing LUKS2 header")
	segmentSize := "dynamic"
	if opts.Verity {
		segmentSize = strconv.FormatInt(ext4Size, 10)
	}
	hdr, uuid, err := luksHeader(opts.Key, volumeKey, job.kdf, opts.Label, segmentSize)
	if err != nil {
		return nil, err
	}
	img := imageJob{uuid: uuid, path: opts.Image, overwrite: opts.Overwrite, hdr: hdr, ext4Path: ext4Path, ext4Size: ext4Size,
		volumeKey: volumeKey, verity: opts.Verity}
	return img.write(ctx, prog)
}

// job is a validated Options with what Pack derived from it.
type job struct {
	opts     Options
	kdf      kdfParams
	headroom Headroom
	dir      string // DIR with symlinks resolved
	dirInfo  os.FileInfo
	mkfs     string
	tmpDir   string
}

// prepare checks opts before any work is done.
func prepare(opts Options) (*job, error) {
	kdf, err := kdfFromOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	j := &job{opts: opts, kdf: kdf, tmpDir: opts.TempDir}
	if j.headroom, err = ParseHeadroom(opts.Headroom); err != nil {
		return nil, err
	}
	if j.dir, j.dirInfo, err = sourceDir(opts.Dir); err != nil {
		return nil, err
	}
	if !opts.Overwrite {
		if _, err := os.Lstat(opts.Image); err == nil {
			return nil, fmt.Errorf("pack: %s: %w", opts.Image, fs.ErrExist)
		}
	}
	if j.mkfs, err = findMkfs(opts.Mkfs); err != nil {
		return nil, err
	}
	if j.tmpDir == "" {
		j.tmpDir = filepath.Dir(opts.Image)
	}
	return j, nil
}

// checkOptions checks the key, label, image path and size.
func checkOptions(opts Options) error {
	if len(opts.Key) == 0 {
		return errors.New("pack: empty key")
	}
	if len(opts.Key) > MaxKeySize {
		return fmt.Errorf("pack: key longer than %d bytes", MaxKeySize)
	}
	if len(opts.Label) > luks.MaxLabelLen || strings.IndexByte(opts.Label, 0) >= 0 {
		return fmt.Errorf("pack: label must be at most %d bytes without NUL", luks.MaxLabelLen)
	}
	if opts.Image == "" {
		return errors.New("pack: no image path")
	}
	if opts.Size != 0 && (opts.Size%dataSectorSize != 0 || opts.Size < dataOffset+minExt4Size) {
		return fmt.Errorf("pack: image size %d must be a multiple of 4096 and at least %d", opts.Size, dataOffset+minExt4Size)
	}
	return nil
}

// sourceDir resolves DIR's symlinks (the walk must see what mkfs.ext4
// sees) and checks that it is a directory.
func sourceDir(d string) (string, os.FileInfo, error) {
	dir, err := filepath.EvalSymlinks(d)
	if err != nil {
		return "", nil, fmt.Errorf("pack: source directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", nil, fmt.Errorf("pack: source directory: %w", err)
	}
	if !fi.IsDir() {
		return "", nil, fmt.Errorf("pack: source %s is not a directory", d)
	}
	return dir, fi, nil
}

// buildExt4 runs mkfs.ext4 into path and returns the file system's size:
// Options.Size less the header, or DIR's estimate plus headroom, grown by
// half while it falls short (at most 5 times).
func (j *job) buildExt4(ctx context.Context, path string, prog *progress.Printer) (int64, error) {
	size := j.opts.Size - dataOffset
	var inodes int64
	if j.opts.Size == 0 {
		prog.Step("sizing " + j.opts.Dir)
		est, err := estimate(ctx, j.dir)
		if err != nil {
			return 0, err
		}
		size, inodes = est.fsSize(j.headroom)
	}
	for attempt := 0; ; attempt++ {
		prog.Step(fmt.Sprintf("building ext4 (%d MiB)", size>>20))
		err := runMkfs(ctx, j.mkfs, j.dir, path, size, inodes)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoSpace) || j.opts.Size != 0 || attempt >= 5 {
			return 0, err
		}
		size = roundUp(size+size/2, 1<<20)
		if inodes > 0 {
			inodes += inodes / 2
		}
		slog.Debug("pack: ext4 too small, retrying", "size", size)
	}
	if afterMkfsHook != nil {
		afterMkfsHook()
	}
	return size, ctx.Err()
}

func kdfFromOptions(o Options) (kdfParams, error) {
	k := kdfParams{Type: o.PBKDF, DigestIter: DigestIterations}
	if k.Type == "" {
		k.Type = "argon2id"
	}
	switch k.Type {
	case "argon2id", "argon2i":
		it, mem, par := o.Iterations, o.MemoryKiB, o.Parallel
		if it == 0 {
			it = DefaultArgon2Time
		}
		if mem == 0 {
			mem = DefaultArgon2MemoryKiB
		}
		if par == 0 {
			par = DefaultArgon2Parallel
		}
		// cryptsetup's limits (pbkdf.c): time >= 4, 32 KiB <= memory <= 4 GiB, 1..4 threads.
		if it < 4 || it > 1<<20 { // 1<<20: the most blockdev/luks unlocks
			return k, fmt.Errorf("pack: argon2 iterations %d out of range 4..%d", it, 1<<20)
		}
		if par < 1 || par > 4 {
			return k, fmt.Errorf("pack: argon2 parallel %d out of range 1..4", par)
		}
		if mem < 32 || mem > 4*1024*1024 || mem < 8*par {
			return k, fmt.Errorf("pack: argon2 memory %d KiB out of range 32..4194304", mem)
		}
		k.Time, k.MemoryKiB, k.Parallel = uint32(it), uint32(mem), uint8(par)
	case "pbkdf2":
		it := o.Iterations
		if it == 0 {
			it = DefaultPBKDF2Iter
		}
		if it < 1000 || it > 1<<31-1 {
			return k, fmt.Errorf("pack: pbkdf2 iterations %d out of range 1000..%d", it, 1<<31-1)
		}
		if o.MemoryKiB != 0 || o.Parallel != 0 {
			return k, errors.New("pack: memory and parallel apply to argon2 only")
		}
		k.Time = uint32(it)
	default:
		return k, fmt.Errorf("pack: unknown pbkdf %q (want argon2id, argon2i or pbkdf2)", o.PBKDF)
	}
	return k, nil
}

func findMkfs(p string) (string, error) {
	if p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	// Debian and others keep mkfs.ext4 in /usr/sbin, outside a user's PATH.
	for _, p := range append([]string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/local/sbin/mkfs.ext4"}, osMkfsPaths...) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("pack: mkfs.ext4 not found (" + mkfsHint + ")")
}

// runMkfs formats path (resized to size) with DIR's contents.
func runMkfs(ctx context.Context, mkfs, dir, path string, size, inodes int64) error {
	if err := os.Truncate(path, 0); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if err := os.Truncate(path, size); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", dir}
	if inodes > 0 {
		args = append(args, "-N", strconv.FormatInt(inodes, 10))
	}
	args = append(args, path)
	cmd := exec.CommandContext(ctx, mkfs, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	slog.Debug("pack: mkfs", "args", args)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := mkfsMessage(out.String(), mkfs)
		if strings.Contains(out.String(), "Could not allocate") || strings.Contains(out.String(), "No space left") {
			return fmt.Errorf("%w: mkfs.ext4: %s", ErrNoSpace, msg)
		}
		return fmt.Errorf("pack: mkfs.ext4: %s (%v)", msg, err)
	}
	return nil
}

// mkfsMessage is the last line of mkfs's output, its summary, without the
// "mkfs.ext4: " that mkfs starts it with (the caller adds its own).
func mkfsMessage(out, mkfs string) string {
	msg := strings.TrimSpace(out)
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = strings.TrimSpace(msg[i+1:])
	}
	for _, name := range []string{filepath.Base(mkfs), "mkfs.ext4", "mke2fs"} {
		if m, ok := strings.CutPrefix(msg, name+": "); ok {
			return m
		}
	}
	if msg == "" {
		return "no output"
	}
	return msg
}

// writeImage writes header and encrypted ext4 into a temporary file beside
// image and renames it into place.
// imageJob is the image to write: the LUKS2 header, the ext4 to encrypt
// behind it, and optionally the verity tree after both.
type imageJob struct {
	uuid      string
	path      string
	overwrite bool
	hdr       []byte
	ext4Path  string
	ext4Size  int64
	volumeKey []byte
	verity    bool
}

// write writes the image under a temporary name and publishes it.
func (j imageJob) write(ctx context.Context, prog *progress.Printer) (res *Result, err error) {
	image, overwrite, hdr, ext4Size := j.path, j.overwrite, j.hdr, j.ext4Size
	dir, base := filepath.Split(image)
	if dir == "" {
		dir = "."
	}
	var out *os.File
	for range 100 {
		tmp := filepath.Join(dir, "."+base+".tmp-"+fmt.Sprintf("%x", randBytes(6)))
		out, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pack: create image: %w", err)
	}
	tmp := out.Name()
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	src, err := os.Open(j.ext4Path)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	defer src.Close()
	if _, err := out.WriteAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("pack: write image: %w", err)
	}
	task := prog.Start("encrypting", ext4Size)
	defer task.Stop() // after a failure; nothing after Done
	if err := encryptStream(ctx, src, out, ext4Size, j.volumeKey, task); err != nil {
		return nil, err
	}
	task.Done()
	res = &Result{Size: dataOffset + ext4Size, UUID: j.uuid}
	if j.verity {
		if err := appendVerity(out, res, prog); err != nil {
			return nil, err
		}
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("pack: sync image: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("pack: close image: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := publish(tmp, image, overwrite); err != nil {
		return nil, err
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return res, nil
}

// appendVerity writes a dm-verity tree over the image's res.Size bytes right
// after them (veritysetup format --hash-offset=SIZE --data-blocks=SIZE/4096).
func appendVerity(f *os.File, res *Result, prog *progress.Printer) error {
	prog.Step("writing the dm-verity hash tree")
	off := verity.AppendedHashOffset(res.Size, verityBlockSize)
	p, root, err := verity.Format(f, f, verity.FormatOptions{HashOffset: off, DataBlocks: uint64(off / verityBlockSize)})
	if err != nil {
		return fmt.Errorf("pack: verity: %w", err)
	}
	l, err := p.Layout()
	if err != nil {
		return fmt.Errorf("pack: verity: %w", err)
	}
	res.Size, res.VerityRoot, res.Verity = l.HashDeviceSize, root, p
	return nil
}

// publish moves tmp to image; without overwrite, an existing image is never
// replaced (link(2) fails atomically; rename is the fallback where the file
// system has no hard links).
func publish(tmp, image string, overwrite bool) error {
	if overwrite {
		if err := os.Rename(tmp, image); err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		return nil
	}
	err := os.Link(tmp, image)
	if err == nil {
		os.Remove(tmp)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pack: %s: %w", image, fs.ErrExist)
	}
	if _, serr := os.Lstat(image); serr == nil {
		return fmt.Errorf("pack: %s: %w", image, fs.ErrExist)
	}
	if err := os.Rename(tmp, image); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return nil
}

// encryptStream encrypts n bytes of src into dst at dataOffset, 1 MiB at a
// time on several cores; IV = byte offset within the segment / 512.
func encryptStream(ctx context.Context, src io.ReaderAt, dst io.WriterAt, n int64, volumeKey []byte, task *progress.Task) error {
	c, err := xts.New(cipherSpec, volumeKey)
	if err != nil {
		return fmt.Errorf("pack: data cipher: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := (n + chunkSize - 1) / chunkSize
	workers := int64(min(runtime.GOMAXPROCS(0), 8))
	if workers > chunks {
		workers = max(chunks, 1)
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunkSize)
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= chunks {
					return
				}
				off := i * chunkSize
				b := buf[:min(chunkSize, n-off)]
				if _, err := src.ReadAt(b, off); err != nil {
					fail(fmt.Errorf("pack: read ext4 at %d: %w", off, err))
					return
				}
				c.EncryptSectors(b, b, dataSectorSize, uint64(off/512))
				if _, err := dst.WriteAt(b, dataOffset+off); err != nil {
					fail(fmt.Errorf("pack: write image: %w", err))
					return
				}
				task.Add(int64(len(b)))
				if afterChunkHook != nil {
					afterChunkHook()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// verityBlockSize is the data and hash block size of pack's trees, veritysetup's default.
const verityBlockSize = 4096

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }
