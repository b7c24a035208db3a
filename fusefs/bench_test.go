package fusefs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/ext4"
	"github.com/chestfs/chestfs/xts"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// benchMB is the size of the file the read benchmarks read
// (CHESTFS_BENCH_MB, default 256).
func benchMB(b *testing.B) int {
	if s := os.Getenv("CHESTFS_BENCH_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("CHESTFS_BENCH_MB=%q", s)
		}
		return n
	}
	return 256
}

// encryptedFS builds an ext4 image holding one random file "big" of mb MiB
// (filled by the kernel through a loop mount), encrypts it as plain dm-crypt
// aes-xts-plain64 with a 512-bit key and 4096-byte sectors (the LUKS2
// sidecar's data segment, without the header), and opens it through
// luks.OpenPlain: the read path of a mounted LUKS2 image after unlock.
func encryptedFS(b *testing.B, mb int) *ext4.FS { return buildEncrypted(b, mb, 0) }

// encryptedFSDir is encryptedFS with a directory "many" of n empty files instead.
func encryptedFSDir(b *testing.B, n int) *ext4.FS { return buildEncrypted(b, 0, n) }

func buildEncrypted(b *testing.B, mb, files int) *ext4.FS {
	b.Helper()
	dir := b.TempDir()
	plain := filepath.Join(dir, "plain.img")
	run := func(name string, args ...string) {
		b.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	run("mkfs.ext4", "-q", "-F", "-b", "4096", "-N", strconv.Itoa(files+1024), plain, fmt.Sprintf("%dM", mb+mb/8+files/2000+32))
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	run("mount", "-o", "loop", plain, mnt)
	fill := func() error {
		if mb > 0 {
			if err := exec.Command("dd", "if=/dev/urandom", "of="+filepath.Join(mnt, "big"), "bs=1M",
				"count="+strconv.Itoa(mb), "status=none").Run(); err != nil {
				return fmt.Errorf("dd: %w", err)
			}
		}
		if files > 0 {
			d := filepath.Join(mnt, "many")
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			for i := range files {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%06d", i)), nil, 0o644); err != nil {
					return err
				}
			}
		}
		return nil
	}
	fillErr := fill()
	run("umount", mnt)
	if fillErr != nil {
		b.Fatal(fillErr)
	}

	key := make([]byte, 64)
	rand.Read(key)
	c, err := xts.New("aes-xts-plain64", key)
	if err != nil {
		b.Fatal(err)
	}
	in, err := os.Open(plain)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	encPath := filepath.Join(dir, "enc.img")
	out, err := os.Create(encPath)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			c.EncryptSectors(buf[:n], buf[:n], 4096, uint64(off/512))
			if _, err := out.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	os.Remove(plain)

	src, err := blockdev.OpenFile(encPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	vol, err := luks.OpenPlain(src, key, luks.PlainOptions{KeySize: 512, SectorSize: 4096})
	if err != nil {
		b.Fatal(err)
	}
	fsys, err := ext4.Open(vol, vol.Size())
	if err != nil {
		b.Fatalf("ext4.Open: %v", err)
	}
	return fsys
}

// BenchmarkMountReadLUKS reads a large file sequentially through a FUSE
// mount of an encrypted volume served in this process (so -cpuprofile sees
// the server), dropping the file's page cache first. The ciphertext image
// itself stays in the page cache: this measures the CPU path.
func BenchmarkMountReadLUKS(b *testing.B) {
	requireFUSE(b)
	fsys := encryptedFS(b, benchMB(b))
	mnt, _ := mountFUSE(b, fsys, Options{})
	if ra := os.Getenv("CHESTFS_BENCH_RA_KB"); ra != "" {
		// Experiments with the readahead window (read_ahead_kb of the mount's bdi).
		var st unix.Stat_t
		if err := unix.Stat(mnt, &st); err != nil {
			b.Fatal(err)
		}
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
		if err := os.WriteFile(p, []byte(ra), 0); err != nil {
			b.Fatal(err)
		}
	}
	p := filepath.Join(mnt, "big")
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		n, err := io.CopyBuffer(io.Discard, f, buf)
		f.Close()
		if err != nil || n != st.Size() {
			b.Fatalf("read %d of %d bytes: %v", n, st.Size(), err)
		}
	}
}

// BenchmarkRawReadLUKS calls the server's READ handler directly with
// kernel-sized requests (no FUSE round trip): the cost of ext4 + volume +
// xts alone. observe=on goes through the wrapper of Options.Observe with a
// counting observer, as a metrics-enabled mount does.
func BenchmarkRawReadLUKS(b *testing.B) {
	requireFUSE(b) // root, to build the image through a loop mount
	fsys := encryptedFS(b, benchMB(b))
	raw := newRawFS(fsys)
	var observed atomic.Int64
	observer := &tracedFS{rawFS: raw, observe: func(op string, d time.Duration, n int, err error) { observed.Add(int64(n)) }}
	ino, err := fsys.Lookup(ext4.RootIno, "big")
	if err != nil {
		b.Fatal(err)
	}
	st, err := fsys.Stat(ino)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{128 << 10, 1 << 20} {
		for _, observe := range []bool{false, true} {
			var r fuse.RawFileSystem = raw
			name := fmt.Sprintf("req=%dK/observe=off", size>>10)
			if observe {
				r, name = observer, fmt.Sprintf("req=%dK/observe=on", size>>10)
			}
			b.Run(name, func(b *testing.B) {
				buf := make([]byte, size)
				b.SetBytes(int64(st.Size))
				for i := 0; i < b.N; i++ {
					for off := uint64(0); off < st.Size; off += uint64(size) {
						res, code := r.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: ino}, Offset: off, Size: uint32(size)}, buf)
						if !code.Ok() || res.Size() == 0 {
							b.Fatalf("read at %d: %v", off, code)
						}
					}
				}
			})
		}
	}
	if observed.Load() == 0 {
		b.Error("the observer saw no bytes")
	}
}

// BenchmarkListLarge runs `ls -l` (a stat and the xattr probes of every
// entry) on a 100k-entry directory of an encrypted volume served in this
// process. The kernel keeps the attributes cached after the first listing;
// the xattr probes reach the server every time.
func BenchmarkListLarge(b *testing.B) {
	requireFUSE(b)
	fsys := encryptedFSDir(b, 100000)
	mnt, _ := mountFUSE(b, fsys, Options{})
	dir := filepath.Join(mnt, "many")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := exec.Command("ls", "-l", dir).Output()
		if err != nil {
			b.Fatal(err)
		}
		if n := bytes.Count(out, []byte("\n")); n != 100001 {
			b.Fatalf("ls -l printed %d lines", n)
		}
	}
}
