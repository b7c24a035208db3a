package luks

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/chestfs/chestfs/blockdev"
)

const mib = 1 << 20

// TestSidecarRecipe builds the Azure sidecar's image (LUKS2, 4096-byte
// sectors, pbkdf2 with 1000 iterations, a 32-byte key file), fills the data
// area with data encrypted by OpenSSL under cryptsetup's volume key, and
// reads it back at random offsets.
func TestSidecarRecipe(t *testing.T) {
	im := newImage(t, 64*mib, "--type", "luks2", "--sector-size", "4096", "--cipher", "aes-xts-plain64",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	vk := im.volumeKey(t)
	// Known data at the start and at the end of the 48 MiB data area.
	plain := pattern(6*mib, 1)
	fillEncrypted(t, im.path, 16*mib, "aes-xts-plain64", vk, 4096, 0, plain)
	tail := pattern(mib, 11)
	fillEncrypted(t, im.path, 63*mib, "aes-xts-plain64", vk, 4096, 47*mib/512, tail)

	f := openFile(t, im.path)
	if !IsLUKS(f) {
		t.Fatal("IsLUKS = false")
	}
	v, err := Open(f, nil, im.key)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() != 48*mib || v.SectorSize() != 4096 || v.Offset() != 16*mib || v.Cipher() != "aes-xts-plain64" {
		t.Fatalf("volume: size %d sector %d offset %d cipher %s", v.Size(), v.SectorSize(), v.Offset(), v.Cipher())
	}
	h, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.VolumeKey(f, im.key)
	if err != nil || !bytes.Equal(got, vk) {
		t.Fatalf("VolumeKey differs from cryptsetup's (err %v)", err)
	}
	checkReads(t, v, plain, 1)

	// Reads at and past the end.
	buf := make([]byte, 10)
	if n, err := v.ReadAt(buf, v.Size()-4); n != 4 || err != io.EOF || !bytes.Equal(buf[:4], tail[len(tail)-4:]) {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	big := make([]byte, 3*mib)
	if n, err := v.ReadAt(big, v.Size()-mib-5); n != mib+5 || err != io.EOF || !bytes.Equal(big[5:n], tail) {
		t.Fatalf("large read across the end: %d, %v", n, err)
	}
	if n, err := v.ReadAt(buf, v.Size()); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	if _, err := v.ReadAt(buf, -1); err == nil {
		t.Fatal("negative offset accepted")
	}

	// Concurrent readers see the same bytes.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 300000)
			for i := range 20 {
				off := int64((g*7919 + i*104729) % (len(plain) - len(b)))
				if _, err := v.ReadAt(b, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, plain[off:off+int64(len(b))]) {
					errs <- errors.New("concurrent read differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestReencryptEncrypt lets cryptsetup itself encrypt a file with known
// content in place (reencrypt --encrypt, no dm-crypt needed).
func TestReencryptEncrypt(t *testing.T) {
	needTool(t, "cryptsetup")
	dir := t.TempDir()
	path, keyFile := filepath.Join(dir, "img"), filepath.Join(dir, "key")
	key := pattern(32, 7)
	os.WriteFile(keyFile, key, 0o600)
	plain := pattern(16*mib, 2)
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 32*mib); err != nil {
		t.Fatal(err)
	}
	run(t, "cryptsetup", "reencrypt", "--encrypt", "--batch-mode", "--type", "luks2", "--reduce-device-size", "16M",
		"--sector-size", "4096", "--cipher", "aes-xts-plain64", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", keyFile, path)
	f := openFile(t, path)
	v, err := Open(f, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() < int64(len(plain)) {
		t.Fatalf("volume size %d", v.Size())
	}
	checkReads(t, v, plain, 2)
}

func TestLUKS2Variants(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		spec   string
		sector int
	}{
		{"argon2id", []string{"--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4"}, "aes-xts-plain64", 4096},
		{"argon2i-512-aes128", []string{"--type", "luks2", "--pbkdf", "argon2i", "--pbkdf-memory", "16384", "--pbkdf-force-iterations", "4",
			"--sector-size", "512", "--key-size", "256"}, "aes-xts-plain64", 512},
		{"sha512", []string{"--type", "luks2", "--hash", "sha512", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "4096"}, "aes-xts-plain64", 4096},
		{"sha1-plain", []string{"--type", "luks2", "--hash", "sha1", "--cipher", "aes-xts-plain", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "2048"}, "aes-xts-plain", 2048},
		{"cbc-essiv", []string{"--type", "luks2", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}, "aes-cbc-essiv:sha256", 0},
		{"luks1-xts", []string{"--type", "luks1", "--cipher", "aes-xts-plain64", "--pbkdf-force-iterations", "1000"}, "aes-xts-plain64", 512},
		{"luks1-essiv", []string{"--type", "luks1", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256", "--hash", "sha1", "--pbkdf-force-iterations", "1000"}, "aes-cbc-essiv:sha256", 512},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im := newImage(t, 20*mib, c.args...)
			f := openFile(t, im.path)
			v, err := Open(f, nil, im.key)
			if err != nil {
				t.Fatal(err)
			}
			if c.sector != 0 && v.SectorSize() != c.sector {
				t.Fatalf("sector size %d, want %d", v.SectorSize(), c.sector)
			}
			if v.Cipher() != c.spec {
				t.Fatalf("cipher %q, want %q", v.Cipher(), c.spec)
			}
			vk := im.volumeKey(t)
			plain := pattern(int(min(v.Size(), 2*mib)), 3)
			fillEncrypted(t, im.path, v.Offset(), c.spec, vk, v.SectorSize(), 0, plain)
			checkReads(t, v, plain, 3)
			if _, err := Open(f, nil, []byte("wrong")); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("wrong key: %v", err)
			}
		})
	}
}

func TestSecondKeyslotAndPriority(t *testing.T) {
	im := newImage(t, 20*mib, "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	key2 := filepath.Join(im.dir, "key2")
	os.WriteFile(key2, []byte("second passphrase"), 0o600)
	run(t, "cryptsetup", "luksAddKey", "--batch-mode", "--key-file", im.keyFile, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", im.path, key2)
	f := openFile(t, im.path)
	vk := im.volumeKey(t)
	for _, pass := range [][]byte{im.key, []byte("second passphrase")} {
		h, err := ReadHeader(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.VolumeKey(f, pass)
		if err != nil || !bytes.Equal(got, vk) {
			t.Fatalf("keyslot unlock: %v", err)
		}
	}
	// An ignored keyslot is not tried (cryptsetup opens it only when named
	// with --key-slot, which chestfs has no use for).
	run(t, "cryptsetup", "config", "--priority", "ignore", "--key-slot", "1", im.path)
	run(t, "cryptsetup", "config", "--priority", "prefer", "--key-slot", "0", im.path)
	if _, err := Open(f, nil, []byte("second passphrase")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("ignored keyslot: %v", err)
	}
	if _, err := Open(f, nil, im.key); err != nil {
		t.Fatalf("preferred keyslot: %v", err)
	}
	h, _ := ReadHeader(f)
	var out bytes.Buffer
	h.WriteText(&out)
	if !bytes.Contains(out.Bytes(), []byte("Priority:   ignored")) || !bytes.Contains(out.Bytes(), []byte("Priority:   preferred")) {
		t.Fatalf("priorities not shown:\n%s", out.String())
	}
	// A removed keyslot no longer opens.
	run(t, "cryptsetup", "luksKillSlot", "--batch-mode", "--key-file", im.keyFile, im.path, "1")
	if _, err := Open(f, nil, []byte("second passphrase")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("killed keyslot: %v", err)
	}
}

func TestDetachedHeader(t *testing.T) {
	for _, typ := range []string{"luks2", "luks1"} {
		t.Run(typ, func(t *testing.T) {
			im := newImage(t, 2*mib, "--type", typ, "--header", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
			data, hdr := openFile(t, im.path), openFile(t, im.header)
			if IsLUKS(data) {
				t.Fatal("data file looks like LUKS")
			}
			v, err := Open(data, hdr, im.key)
			if err != nil {
				t.Fatal(err)
			}
			if v.Offset() != 0 || v.Size() != 2*mib {
				t.Fatalf("offset %d size %d", v.Offset(), v.Size())
			}
			plain := pattern(2*mib, 4)
			fillEncrypted(t, im.path, 0, v.Cipher(), im.volumeKey(t), v.SectorSize(), 0, plain)
			checkReads(t, v, plain, 4)
			if _, err := Open(data, nil, im.key); !errors.Is(err, ErrNotLUKS) {
				t.Fatalf("data without header: %v", err)
			}
		})
	}
}

func TestPlain(t *testing.T) {
	needTool(t, "node")
	cases := []struct {
		name string
		opts PlainOptions
		key  int // key bytes handed in
		use  int // key bytes used
	}{
		{"default", PlainOptions{}, 32, 32},
		{"xts512-offset-4k", PlainOptions{KeySize: 512, SectorSize: 4096, Offset: 2048}, 64, 64},
		{"truncated-key", PlainOptions{KeySize: 256, Offset: 1}, 64, 32},
		{"essiv-skip-size", PlainOptions{Cipher: "aes-cbc-essiv:sha256", Offset: 8, Skip: 100, Size: 2048}, 32, 32},
		{"xts-plain32", PlainOptions{Cipher: "aes-xts-plain", KeySize: 512, SectorSize: 1024, Skip: 1<<32 - 4}, 64, 64},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plain.img")
			if err := os.WriteFile(path, pattern(2*mib, 99), 0o600); err != nil {
				t.Fatal(err)
			}
			key := pattern(c.key, 5)
			f := openFile(t, path)
			v, err := OpenPlain(f, key, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			wantSize := int64(2*mib) - int64(c.opts.Offset)*512
			if c.opts.Size != 0 {
				wantSize = int64(c.opts.Size) * 512
			}
			if v.Size() != wantSize {
				t.Fatalf("size %d, want %d", v.Size(), wantSize)
			}
			spec := c.opts.Cipher
			if spec == "" {
				spec = "aes-xts-plain64"
			}
			plain := pattern(int(v.Size()), 6)
			fillEncrypted(t, path, int64(c.opts.Offset)*512, spec, key[:c.use], v.SectorSize(), c.opts.Skip, plain)
			checkReads(t, v, plain, 6)
		})
	}
	f := openFile(t, writeTemp(t, make([]byte, 8192)))
	for _, bad := range []struct {
		key  []byte
		opts PlainOptions
	}{
		{make([]byte, 16), PlainOptions{}},
		{make([]byte, 32), PlainOptions{SectorSize: 1000}},
		{make([]byte, 32), PlainOptions{KeySize: 255}},
		{make([]byte, 32), PlainOptions{Cipher: "serpent-xts-plain64"}},
		{make([]byte, 32), PlainOptions{Offset: 100}},
		{make([]byte, 32), PlainOptions{Size: 100}},
		{make([]byte, 32), PlainOptions{Size: 3, SectorSize: 4096}},
	} {
		if _, err := OpenPlain(f, bad.key, bad.opts); err == nil {
			t.Errorf("OpenPlain(%+v) accepted", bad.opts)
		}
	}
}

func writeTemp(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkVolumeRead(b *testing.B) {
	im := newImage(b, 32*mib, "--type", "luks2", "--sector-size", "4096", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	data, err := os.ReadFile(im.path)
	if err != nil {
		b.Fatal(err)
	}
	v, err := Open(bytesSource(data), nil, im.key)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, mib)
	b.SetBytes(mib)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		off := int64(i%int(v.Size()/mib)) * mib
		if _, err := v.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
}

// runRecorder records the run ends a volume passes to its source.
type runRecorder struct {
	blockdev.Source
	ends []int64
}

func (r *runRecorder) ReadAtRun(p []byte, off, end int64) (int, error) {
	r.ends = append(r.ends, end)
	return r.ReadAt(p, off)
}

// A read's run end reaches the source moved by the data offset and rounded
// up to a whole sector; plain ReadAt passes none.
func TestVolumePassesRunEnd(t *testing.T) {
	rec := &runRecorder{Source: blockdev.Bytes(make([]byte, 1<<20))}
	v, err := OpenPlain(rec, make([]byte, 64), PlainOptions{KeySize: 512, SectorSize: 4096, Offset: 16})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := v.ReadAtRun(buf, 8192, 10000); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadAt(buf[:100], 50); err != nil {
		t.Fatal(err)
	}
	if want := []int64{16*512 + 12288, 0}; !slices.Equal(rec.ends, want) {
		t.Errorf("run ends passed on %v, want %v", rec.ends, want)
	}
}
